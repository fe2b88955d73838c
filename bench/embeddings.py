"""Embeddings: does dynamic batching pay, and how close does HTTP get to the bare model?

Three measurements, taken in alternating rounds so a noisy neighbour hits all alike,
and never two at once, so none competes with another for the cores:
  1. the built module's Embedder called in-process with batches of 32 (the ceiling);
  2. the app served with batching {max_batch_size: 32, wait_ms: 5};
  3. the same app with batching {max_batch_size: 1, wait_ms: 0} (one text per call).
The clients of 2 and 3 are 32 connections each sending one short sentence per request.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    PYTHON,
    ROOT,
    Result,
    auth_headers,
    bench_env,
    embed_bodies,
    embed_spec,
    free_port,
    loadgen,
    ratio_result,
    serve_spec,
    sized,
    stop,
    write_spec,
)

CONNECTIONS = 32
ROUNDS = sized(3, 1)
ROUND_SECONDS = 5.0  # 15 s of load for each served app
WARMUP = 1.0
# Each round: a timed window of load; in a smoke run two requests per connection instead
# (a short window on a busy machine can end before any answer).
LOAD: dict[str, Any] = sized({"duration": ROUND_SECONDS, "warmup": WARMUP}, {"per_connection": 2})
INPROCESS_SECONDS = sized(4.0, 0.2)


class InProcess:
    """The embed_inprocess.py worker: asks it for one timed measurement at a time."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def measure(self, batch: int, seconds: float) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{batch} {seconds}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the in-process embedder worker died")
        result: dict[str, Any] = json.loads(line)
        return result


@contextmanager
def in_process_worker(log: Path) -> Iterator[InProcess]:
    with log.open("w") as err:
        process = subprocess.Popen(
            [PYTHON, str(BENCH / "embed_inprocess.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=bench_env(),
            cwd=ROOT,
        )
    try:
        assert process.stdout is not None
        if process.stdout.readline().strip() != "ready":
            raise RuntimeError(f"in-process embedder failed, see {log}")
        yield InProcess(process)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        stop(process)


def hammer(port: int, **options: Any) -> dict[str, Any]:
    config = {
        "mode": "load",
        "host": "127.0.0.1",
        "port": port,
        "method": "POST",
        "path": "/embed",
        "headers": auth_headers(),
        "bodies": embed_bodies(),
        "connections": CONNECTIONS,
        **LOAD,
    }
    result = loadgen(config | options)
    if result["ok"] == 0 or result["errors"] or set(result["statuses"]) != {"200"}:
        raise RuntimeError(f"embed requests failed: {result['statuses']}")
    return result


def run(logs: Path) -> list[Result]:
    served: dict[str, list[dict[str, Any]]] = {"batched": [], "single": []}
    model32: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-embed-") as folder, ExitStack() as stack:
        ports = {}
        for name, (size, wait) in {"batched": (32, 5), "single": (1, 0)}.items():
            spec = write_spec(Path(folder) / name, embed_spec(size, wait))
            ports[name] = free_port()
            stack.enter_context(serve_spec(spec, ports[name], logs / f"embed-{name}.log"))
            # Every sentence once: a shape's first model call is slow, and no figure's.
            hammer(ports[name], connections=4, per_connection=8, warmup=0)
        model = stack.enter_context(in_process_worker(logs / "embed-inprocess.log"))
        model1 = model.measure(1, INPROCESS_SECONDS)
        for _ in range(ROUNDS):
            model32.append(model.measure(32, INPROCESS_SECONDS)["texts_per_s"])
            for name, port in ports.items():
                served[name].append(hammer(port))

    def rps(name: str) -> float:
        rounds = served[name]
        return sum(r["ok"] for r in rounds) / sum(r["elapsed_s"] for r in rounds)

    ceiling = sum(model32) / len(model32)
    shared = {
        "torch_threads": model1["torch_threads"],
        "connections": CONNECTIONS,
        "seconds_each": ROUNDS * ROUND_SECONDS,
    }
    return [
        ratio_result(
            "embed-batching",
            rps("batched"),
            rps("single"),
            "req/s",
            at_least=2.5,
            details={
                **shared,
                "rps_per_round": {n: [round(r["rps"], 1) for r in served[n]] for n in served},
                "p50_ms_per_round": {
                    n: [round(r["latency_ms"]["p50"], 1) for r in served[n]] for n in served
                },
                # What the model itself gains from batches of 32 over single texts here:
                # the served ratio cannot beat it by much.
                "inprocess_gain_32_over_1": round(ceiling / model1["texts_per_s"], 2),
                "inprocess_texts_per_s_batch_1": round(model1["texts_per_s"], 1),
                "baseline": "the same app with max_batch_size 1, wait_ms 0",
            },
        ),
        ratio_result(
            "embed-served-vs-inprocess",
            rps("batched"),
            ceiling,
            "texts/s",
            at_least=0.70,
            details={
                **shared,
                "inprocess_texts_per_s_per_round": [round(t, 1) for t in model32],
                "baseline": "the module's Embedder called directly, batches of 32",
            },
        ),
    ]
