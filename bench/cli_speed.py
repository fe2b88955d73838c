"""CLI start-up: `endpointgen validate specs/*.yaml` and `build specs/gpt2.yaml` against
importing the libraries they use.

The baseline is the issue's: `python -c "from pydantic import BaseModel; import yaml,
jinja2, typer"`, the floor any CLI that defines pydantic models with those libraries
pays. Each command runs in RUNS pairs, the baseline then the command, so that drift
(cache, frequency, a neighbour's load) hits both runs of a pair alike. The row is the
median pair by its ratio: its two times, so that the table's ratio is that pair's. Every
pair's ratio, and each run's CPU time, are in the details.
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
    SPECS,
    Result,
    bench_env,
    endpointgen_args,
    endpointgen_cmd,
    median,
)

RUNS = 7  # pairs
AT_MOST = 1.3
HEAVY = ("torch", "transformers", "modal", "fastapi", "uvicorn", "rich")
BUILT = "specs/gpt2.yaml"
BASELINE = "from pydantic import BaseModel; import yaml, jinja2, typer"
# Under `validate` (reported, no target): the baseline, plus validating the specs with the
# spec language's pydantic models (their classes and validator, and the plugin lookup that
# pydantic's first validator of any model does), each spec read with libyaml; none of the
# command line, the rule checks, the plan or the templates. No pydantic plugins, as the CLI.
FLOOR = (
    "import os, sys; os.environ.setdefault('PYDANTIC_DISABLE_PLUGINS', '__all__'); "
    "from pydantic import BaseModel; import yaml, jinja2, typer; "
    "from endpointgen.compiler import loader; from endpointgen.spec import parse; "
    "[parse(loader.load(path)) for path in sys.argv[1:]]"
)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cli_env() -> dict[str, str]:
    """The benchmarks' environment, with .pyc files written: an installed CLI has them,
    and a run that compiled its sources each time would time the compiler."""
    env = bench_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one fresh process, which must succeed."""
    cpu = children_cpu()
    began = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=cli_env(), capture_output=True, check=True)
    return 1000 * (time.perf_counter() - began), 1000 * (children_cpu() - cpu)


def heavy_imports(args: list[str]) -> list[str]:
    """The HEAVY packages that `python ARGS` imports, from `-X importtime`."""
    done = subprocess.run(
        [PYTHON, "-X", "importtime", *args],
        cwd=ROOT,
        env=cli_env(),
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


def paired(name: str, cmd: list[str], baseline: list[str], target: bool = True) -> Result:
    """RUNS pairs, baseline then command; the median pair by its ratio. Without `target`,
    a row for information."""
    timed(baseline)  # warm the file cache and .pyc files
    timed(cmd)
    pairs = []
    for _ in range(RUNS):
        base_ms, base_cpu = timed(baseline)
        ms, cpu = timed(cmd)
        pairs.append((ms / base_ms, ms, base_ms, cpu, base_cpu))
    ratio, ms, base_ms, _, _ = sorted(pairs)[len(pairs) // 2]
    details = {
        "pair_ratios": [round(p[0], 2) for p in pairs],
        "runs_ms": [round(p[1], 1) for p in pairs],
        "baseline_runs_ms": [round(p[2], 1) for p in pairs],
        "cpu_ratio": round(median([p[3] / p[4] for p in pairs]), 2),
        "cpu_ms": round(median([p[3] for p in pairs]), 1),
        "baseline_cpu_ms": round(median([p[4] for p in pairs]), 1),
    }
    if not target:
        return Result(name, ms, base_ms, "ms", "", None, details=details)
    return Result(
        name, ms, base_ms, "ms", f"ratio <= {AT_MOST:g}", ratio <= AT_MOST, details=details
    )


def run(logs: Path) -> list[Result]:
    specs = sorted(str(p.relative_to(ROOT)) for p in SPECS.glob("*.yaml"))
    baseline = [PYTHON, "-c", BASELINE]
    cli = endpointgen_cmd()
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as out:
        commands = {
            "validate": ["validate", *specs],
            "build": ["build", BUILT, "-o", out],
        }
        results = [
            paired(f"cli-{name}", [*cli, *args], baseline) for name, args in commands.items()
        ]
        floor = [PYTHON, "-c", FLOOR, *specs]
        results.append(paired("cli-validate-floor", floor, baseline, target=False))
        imports = {
            name: heavy_imports([*endpointgen_args(), *args]) for name, args in commands.items()
        }
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
