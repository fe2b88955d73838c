"""Run the benchmarks; print each as a ratio against a baseline from the same run.

Usage: python bench/run.py [NAME ...]   (names: see BENCHMARKS; none means all)

Prints a summary table, writes bench/results/latest.json, and keeps the servers' logs
in bench/results/logs/. Exits 1 when a benchmark could not run; a missed target is a
FAIL in the table, not an error (pass --strict to exit 1 on those too).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import build_throughput
import cli_speed
import embeddings
import generate
import memory
import openai_embed
import overhead
import policy
import soak
import streaming
import tasks
from harness import BENCH, Result, busy_fraction

BENCHMARKS: dict[str, Callable[[Path], list[Result]]] = {
    "cli": cli_speed.run,
    "build": build_throughput.run,
    "embeddings": embeddings.run,
    "overhead": overhead.run,
    "policy": policy.run,
    "streaming": streaming.run,
    "memory": memory.run,
    "openai": openai_embed.run,
    "soak": soak.run,
    "generate": generate.run,
    "tasks": tasks.run,
}
RESULTS = BENCH / "results"
BUSY = 0.15  # CPU share taken by others above which a run is flagged as skewed


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    digits = 2 if abs(value) < 100 else 1 if abs(value) < 10_000 else 0
    return f"{value:,.{digits}f}{' ' + unit if unit else ''}"


def status(result: Result) -> str:
    return "INFO" if result.passed is None else "PASS" if result.passed else "FAIL"


def table(results: list[Result], errors: dict[str, str]) -> str:
    header = ("name", "measured", "baseline", "ratio", "target", "status")
    rows = [
        (
            r.name,
            fmt(r.measured, r.unit),
            fmt(r.baseline, r.unit),
            fmt(r.ratio),
            r.target or "-",
            status(r),
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


def main(argv: list[str]) -> int:
    strict = "--strict" in argv
    names = [a for a in argv if not a.startswith("--")] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        known = ", ".join(BENCHMARKS)
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {known}")
        return 2
    logs = RESULTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    errors: dict[str, str] = {}
    runs: dict[str, Any] = {}
    began = time.perf_counter()
    for name in names:
        busy = busy_fraction()
        note = ""
        if busy is not None and busy > BUSY:
            note = f" (other work keeps the CPUs {busy:.0%} busy: figures will be skewed)"
        print(f"[{name}] running...{note}", flush=True)
        started = time.perf_counter()
        try:
            found = BENCHMARKS[name](logs)
        except Exception as exc:
            errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"[{name}] ERROR\n{traceback.format_exc()}", flush=True)
            found = []
        seconds = time.perf_counter() - started
        runs[name] = {
            "seconds": round(seconds, 1),
            "other_cpu_busy_before": None if busy is None else round(busy, 2),
        }
        for r in found:
            figures = f"{fmt(r.measured, r.unit)} vs {fmt(r.baseline, r.unit)}"
            print(f"[{name}] {r.name}: {figures} -> {status(r)}")
        results.extend(found)
    total = time.perf_counter() - began
    print()
    print(table(results, errors))
    print(f"\n{len(names)} benchmark(s) in {total:.0f}s")
    skewed = [n for n, r in runs.items() if (r["other_cpu_busy_before"] or 0) > BUSY]
    if skewed:
        print(
            f"NOTE: other processes were using the CPUs before {', '.join(skewed)}; "
            "those figures are not comparable with a quiet run (see runs in the JSON)."
        )
    report = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(total, 1),
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
                "status": status(r),
                "details": r.details,
            }
            for r in results
        ],
        "errors": errors,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results: {RESULTS / 'latest.json'}")
    if errors:
        return 1
    return 1 if strict and any(r.passed is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
