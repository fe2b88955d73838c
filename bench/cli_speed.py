"""CLI start-up: `endpointgen validate/build` against importing the libraries they use.

The baseline is the issue's: `python -c "from pydantic import BaseModel; import yaml,
jinja2, typer"`, the floor any CLI that defines pydantic models with those libraries
pays. A second one is reported in the details: `import pydantic, yaml, jinja2, typer`,
where `import pydantic` alone is lazy and loads almost none of it. Runs are interleaved
so drift (cache, frequency) hits all alike; each run's CPU time is kept too.
"""

from __future__ import annotations

import resource
import subprocess
import tempfile
import time
from pathlib import Path

from harness import (
    PYTHON,
    ROOT,
    Result,
    bench_env,
    endpointgen_args,
    endpointgen_cmd,
    median,
    ratio_result,
)

RUNS = 15
HEAVY = ("torch", "transformers", "modal", "fastapi", "uvicorn")
SPEC = "specs/gpt2.yaml"
BASELINE = "import pydantic, yaml, jinja2, typer"
WITH_BASEMODEL = "from pydantic import BaseModel; import yaml, jinja2, typer"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one fresh process, which must succeed."""
    cpu = children_cpu()
    began = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=bench_env(), capture_output=True, check=True)
    return time.perf_counter() - began, children_cpu() - cpu


def heavy_imports(args: list[str]) -> list[str]:
    """The HEAVY packages that `python ARGS` imports, from `-X importtime`."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", *args],
        cwd=ROOT,
        env=bench_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    found = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            module = line.rsplit("|", 1)[1].strip().split(".")[0]
            if module in HEAVY:
                found.add(module)
    return sorted(found)


def run(logs: Path) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as out:
        cli = endpointgen_cmd()
        commands = {
            "baseline": [PYTHON, "-c", BASELINE],
            "basemodel": [PYTHON, "-c", WITH_BASEMODEL],
            "validate": [*cli, "validate", SPEC],
            "build": [*cli, "build", SPEC, "-o", out],
        }
        for cmd in commands.values():  # warm the file cache and .pyc files
            timed(cmd)
        wall: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(RUNS):
            for name, cmd in commands.items():
                seconds, used = timed(cmd)
                wall[name].append(1000 * seconds)
                cpu[name].append(1000 * used)
        args = endpointgen_args()
        imports = {
            "validate": heavy_imports([*args, "validate", SPEC]),
            "build": heavy_imports([*args, "build", SPEC, "-o", out]),
        }
    results = []
    for name in ("validate", "build"):
        ms = median(wall[name])
        details = {
            "runs_ms": [round(t, 1) for t in wall[name]],
            "baseline_runs_ms": [round(t, 1) for t in wall["basemodel"]],
            "cpu_ms": round(median(cpu[name]), 1),
            "baseline_cpu_ms": round(median(cpu["basemodel"]), 1),
            "cpu_ratio": round(median(cpu[name]) / median(cpu["basemodel"]), 2),
            "lazy_pydantic_baseline_ms": round(median(wall["baseline"]), 1),
            "ratio_vs_lazy_pydantic_baseline": round(ms / median(wall["baseline"]), 2),
        }
        results.append(
            ratio_result(
                f"cli-{name}",
                ms,
                median(wall["basemodel"]),
                "ms",
                at_most=1.5,
                details=details,
            )
        )
    heavy = sorted({m for found in imports.values() for m in found})
    results.append(
        Result(
            "cli-heavy-imports",
            float(len(heavy)),
            None,
            "modules",
            "== 0",
            not heavy,
            details={"per_command": imports, "checked": list(HEAVY)},
        )
    )
    return results
