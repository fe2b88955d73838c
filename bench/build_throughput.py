"""Build throughput: many specs through `endpointgen.compiler.pipeline.build` in one process.

This is what a monorepo's `endpointgen build specs/*.yaml --check` in CI pays per spec.
The baseline is the floor of the same job: parse the YAML and write the module's bytes.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from harness import Result, load_spec, median, sized, write_spec

COUNT = sized(500, 10)
TARGET_MS = 10.0


def variants(count: int) -> list[dict[str, Any]]:
    """Alternating gpt2 and minilm specs, each with its own name and route paths."""
    bases = [load_spec("gpt2.yaml"), load_spec("minilm.yaml")]
    out = []
    for i in range(count):
        spec = copy.deepcopy(bases[i % 2])
        spec["name"] = f"{spec['name']}-v{i}"
        for route in spec["routes"]:
            if route["action"] != "health":
                route["path"] = f"/v{i}{route['path']}"
        if i % 5 == 0:
            spec["description"] = f"variant {i}: {spec.get('description', '')}"
        out.append(spec)
    return out


def run(logs: Path) -> list[Result]:
    from endpointgen.compiler import pipeline

    with tempfile.TemporaryDirectory(prefix="bench-build-") as folder:
        root = Path(folder)
        paths = [
            write_spec(root / "specs", spec, f"spec{i:03d}.yaml")
            for i, spec in enumerate(variants(COUNT))
        ]
        out = root / "out"
        out.mkdir()
        build_s, floor_s = [], []
        for path in paths:
            began = time.perf_counter()
            built = pipeline.build(path, out)
            built.path.write_text(built.source, encoding="utf-8")
            build_s.append(time.perf_counter() - began)
            began = time.perf_counter()
            yaml.safe_load(path.read_text(encoding="utf-8"))
            (out / "floor.py").write_text(built.source, encoding="utf-8")
            floor_s.append(time.perf_counter() - began)
        written = len(list(out.glob("*.py"))) - 1
    measured = 1000 * median(build_s)
    return [
        Result(
            "build-per-spec",
            measured,
            1000 * median(floor_s),
            "ms",
            f"<= {TARGET_MS:g} ms",
            measured <= TARGET_MS,
            details={
                "specs": COUNT,
                "modules_written": written,
                "first_ms": round(1000 * build_s[0], 2),
                "p90_ms": round(1000 * sorted(build_s)[int(0.9 * COUNT)], 2),
                "total_s": round(sum(build_s), 2),
                "baseline": "yaml.safe_load of the spec + writing the module's bytes",
            },
        )
    ]
