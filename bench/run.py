"""Run the benchmarks; print each as a ratio against a baseline from the same run.

Usage: python bench/run.py [--strict] [NAME ...]   (names: see BENCHMARKS; none means all)
       python bench/run.py --smoke [--jobs=N] [NAME ...]

Prints a summary table, writes bench/results/latest.json, and keeps the servers' logs
in bench/results/logs/. Exits 1 when a benchmark could not run; a missed target is a
FAIL in the table, not an error (pass --strict to exit 1 on those too).

`--smoke` runs every benchmark at a tiny size (BENCH_SMOKE=1, see harness.sized), and
the standalone scripts as far as this machine allows (SMOKE_SCRIPTS), N at a time
(default: 2 to 4, by the CPUs): what CI runs, so that none of them rots. It exits 1 if
any of them raised; its figures are printed but not judged, and go to
bench/results/smoke.json.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import BENCH, PYTHON, ROOT, SMOKE_ENV, Result, bench_env, busy_fraction

# name -> the module whose run(logs) measures it; imported when it runs, so that a smoke
# run's BENCH_SMOKE is set first, and a module that fails to import is that one's error.
BENCHMARKS: dict[str, str] = {
    "cli": "cli_speed",
    "build": "build_throughput",
    "embeddings": "embeddings",
    "overhead": "overhead",
    "policy": "policy",
    "streaming": "streaming",
    "memory": "memory",
    "openai": "openai_embed",
    "soak": "soak",
    "generate": "generate",
    "tasks": "tasks",
}
# A smoke run's sizes for modules that do not size themselves with harness.sized; a name
# here that the module no longer has is an error.
SMOKE_SIZES: dict[str, dict[str, Any]] = {"cli_speed": {"RUNS": 1}}
RESULTS = BENCH / "results"
BUSY = 0.15  # CPU share taken by others above which a run is flagged as skewed
SMOKE_TIMEOUT = 300.0  # seconds a standalone script may take in a smoke run
# A smoke run's benchmarks side by side (--jobs=N), the longest first.
SMOKE_JOBS = max(2, min(4, os.cpu_count() or 1))
SMOKE_FIRST = ("tasks", "embeddings", "generate")


def script(*args: str) -> Callable[[Path], list[Result]]:
    """A standalone bench/ script as one step of a smoke run: it must exit 0."""

    def run(logs: Path) -> list[Result]:
        done = subprocess.run(
            [PYTHON, str(BENCH / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=SMOKE_TIMEOUT,
            env=bench_env(),
            cwd=ROOT,
            check=False,
        )
        output = (done.stdout + done.stderr).strip()
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} exited {done.returncode}:\n{output[-3000:]}")
        for line in done.stdout.strip().splitlines()[-3:]:
            print(f"  {line}", flush=True)
        return []

    return run


# The standalone scripts, which a benchmark run leaves out: how a smoke run runs each.
SMOKE_SCRIPTS: dict[str, Callable[[Path], list[Result]]] = {
    "gpu_generate": script("gpu_generate.py", "--smoke"),
}
# bench/ files that the benchmarks run or import, not benchmarks themselves.
HELPERS = {"run", "harness", "loadgen", "hello_app", "embed_inprocess"}


def unlisted() -> list[str]:
    """bench/*.py files that a smoke run would not run: a new benchmark goes in
    BENCHMARKS or SMOKE_SCRIPTS, or it is not checked and can rot."""
    known = {*BENCHMARKS.values(), *SMOKE_SCRIPTS, *HELPERS}
    return sorted(f"bench/{p.name}" for p in BENCH.glob("*.py") if p.stem not in known)


def cpu_seconds() -> float:
    """CPU time of this process and of the children it has waited for: what a benchmark
    cost, whatever else ran on the machine meanwhile."""
    used = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in used)


def benchmark(name: str) -> Callable[[Path], list[Result]]:
    """The function that runs `name`, its module sized for a smoke run if this is one."""
    if name in SMOKE_SCRIPTS:
        return SMOKE_SCRIPTS[name]
    module = importlib.import_module(BENCHMARKS[name])
    if os.environ.get(SMOKE_ENV) == "1":
        for attr, value in SMOKE_SIZES.get(module.__name__, {}).items():
            if not hasattr(module, attr):
                raise RuntimeError(f"{module.__name__}.{attr} is gone: see SMOKE_SIZES in run.py")
            setattr(module, attr, value)
    run: Callable[[Path], list[Result]] = module.run
    return run


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    digits = 2 if abs(value) < 100 else 1 if abs(value) < 10_000 else 0
    return f"{value:,.{digits}f}{' ' + unit if unit else ''}"


def status(result: Result, judged: bool = True) -> str:
    if not judged:
        return "RAN"  # a smoke run's figures mean nothing
    return "INFO" if result.passed is None else "PASS" if result.passed else "FAIL"


def table(results: list[Result], errors: dict[str, str], judged: bool = True) -> str:
    header = ("name", "measured", "baseline", "ratio", "target", "status")
    rows = [
        (
            r.name,
            fmt(r.measured, r.unit),
            fmt(r.baseline, r.unit),
            fmt(r.ratio),
            r.target or "-",
            status(r, judged),
        )
        for r in results
    ]
    rows += [(name, "-", "-", "-", "-", "ERROR") for name in errors]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), line]
    for row in rows:
        cells = [
            c.ljust(w) if i in (0, 4, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells))
    return "\n".join(out)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE"),
    }


def measure(name: str, logs: Path, smoke: bool, alone: bool) -> tuple[list[Result], dict[str, Any]]:
    """Run one benchmark; its rows, and how the run went (an `error` when it raised)."""
    # A smoke run's figures are not compared, so it skips the second this takes.
    busy = None if smoke else busy_fraction()
    note = ""
    if busy is not None and busy > BUSY:
        note = f" (other work keeps the CPUs {busy:.0%} busy: figures will be skewed)"
    print(f"[{name}] running...{note}", flush=True)
    started, cpu = time.perf_counter(), cpu_seconds()
    run: dict[str, Any] = {}
    try:
        found = benchmark(name)(logs)
    except Exception as exc:
        run["error"] = f"{type(exc).__name__}: {exc}"
        print(f"[{name}] ERROR\n{traceback.format_exc()}", flush=True)
        found = []
    seconds = time.perf_counter() - started
    run["seconds"] = round(seconds, 1)
    if alone:  # with benchmarks side by side, this process's CPU time is all of theirs
        run["cpu_seconds"] = round(cpu_seconds() - cpu, 1)
    run["other_cpu_busy_before"] = None if busy is None else round(busy, 2)
    for r in found:
        figures = f"{fmt(r.measured, r.unit)} vs {fmt(r.baseline, r.unit)}"
        print(f"[{name}] {r.name}: {figures} -> {status(r, not smoke)}", flush=True)
    if smoke:
        used = f" ({run['cpu_seconds']:.1f}s of CPU)" if alone else ""
        verdict = "ERROR" if "error" in run else "ran"
        print(f"[{name}] {verdict} in {seconds:.1f}s{used}", flush=True)
    return found, run


def main(argv: list[str]) -> int:
    options = dict(a.removeprefix("--").partition("=")[::2] for a in argv if a.startswith("--"))
    wrong = sorted(set(options) - {"strict", "smoke", "jobs"})
    asked = options.get("jobs") or str(SMOKE_JOBS)
    if "jobs" in options and "smoke" not in options:
        wrong.append("jobs (a smoke run's; a benchmark run measures one at a time)")
    if not asked.isdigit() or int(asked) < 1:
        wrong.append(f"jobs={asked} (a number of benchmarks at once, 1 or more)")
    if wrong:
        print(f"unknown or wrong option(s): {', '.join(wrong)}")
        return 2
    smoke = "smoke" in options
    strict = "strict" in options and not smoke
    if smoke:
        os.environ[SMOKE_ENV] = "1"  # before any benchmark is imported; workers inherit it
        # One torch thread per process: with benchmarks side by side (and CI's own work),
        # torch's default of one per core has its threads spin against each other, and a
        # smoke run's few model calls took seconds each.
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    known = [*BENCHMARKS, *(SMOKE_SCRIPTS if smoke else [])]
    names = [a for a in argv if not a.startswith("--")] or known
    unknown = [n for n in names if n not in known]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
        return 2
    jobs = min(int(asked), len(names)) if smoke else 1
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    began, cpu = time.perf_counter(), cpu_seconds()
    if jobs == 1:
        done = {name: measure(name, logs, smoke, alone=True) for name in names}
    else:  # a smoke run: figures that mean nothing, so benchmarks may share the CPUs
        with ThreadPoolExecutor(jobs) as pool:
            order = [*SMOKE_FIRST, *names]
            first = sorted(names, key=order.index)
            futures = {n: pool.submit(measure, n, logs, smoke, False) for n in first}
            done = {name: futures[name].result() for name in names}
    results = [r for name in names for r in done[name][0]]
    runs = {name: done[name][1] for name in names}
    errors = {name: run.pop("error") for name, run in runs.items() if "error" in run}
    if smoke and unlisted():
        errors["unlisted"] = f"in no smoke run: {', '.join(unlisted())} (see BENCHMARKS in run.py)"
        print(f"[unlisted] ERROR: {errors['unlisted']}", flush=True)
    total, used = time.perf_counter() - began, cpu_seconds() - cpu
    print()
    print(table(results, errors, judged=not smoke))
    if smoke:
        print(
            f"\n{len(names)} smoke run(s), {jobs} at a time, in {total:.0f}s ({used:.0f}s of CPU)"
        )
        print("smoke: figures at a tiny size, not judged; an ERROR fails the run")
    else:
        print(f"\n{len(names)} benchmark(s) in {total:.0f}s")
    skewed = [n for n, r in runs.items() if (r["other_cpu_busy_before"] or 0) > BUSY]
    if skewed:
        print(
            f"NOTE: other processes were using the CPUs before {', '.join(skewed)}; "
            "those figures are not comparable with a quiet run (see runs in the JSON)."
        )
    report = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": smoke,
        "seconds": round(total, 1),
        "cpu_seconds": round(used, 1),
        "jobs": jobs,
        "machine": machine(),
        "runs": runs,
        "results": [
            {
                "name": r.name,
                "measured": r.measured,
                "baseline": r.baseline,
                "ratio": r.ratio,
                "unit": r.unit,
                "target": r.target,
                "status": status(r, not smoke),
                "details": r.details,
            }
            for r in results
        ],
        "errors": errors,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / ("smoke.json" if smoke else "latest.json")
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results: {out}")
    if errors:
        return 1
    return 1 if strict and any(r.passed is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
