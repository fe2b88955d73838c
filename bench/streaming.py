"""Streaming: is the first SSE `token` as quick as a whole one-token generation?

A GPT-2 shaped tiny model (tests/models.py) keeps the model's share small, so what is
measured is the app's path to the first byte: the worker thread, the queue, the SSE
framing. Streamed and plain requests alternate on one connection.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import (
    API_KEY,
    ROOT,
    Result,
    free_port,
    load_spec,
    loadgen,
    ratio_result,
    run_worker,
    serve_spec,
    sized,
    write_spec,
)

REQUESTS = sized(40, 4)
WARMUP = sized(5, 1)
PROMPT = "The quick brown fox"


def make_tiny_gpt2(path: Path) -> Path:
    """tests/models.py's model maker, loaded by file so bench/ needs no test package.

    Runs in a worker process (`python bench/streaming.py PATH`), so the harness itself
    never imports torch.
    """
    spec = importlib.util.spec_from_file_location("bench_test_models", ROOT / "tests/models.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made: Path = module.make_tiny_gpt2(path)
    return made


def stream_spec(model_dir: Path) -> dict[str, Any]:
    """specs/gpt2.yaml on the tiny model, without its rate limit."""
    spec = load_spec("gpt2.yaml")
    spec["name"] = "bench-stream"
    spec["model"]["id"] = str(model_dir)
    spec.pop("rate_limit", None)
    return spec


def run(logs: Path) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as folder:
        model = Path(run_worker("streaming.py", str(Path(folder) / "tiny-gpt2"))["path"])
        spec = write_spec(Path(folder), stream_spec(model))
        port = free_port()
        body = {"prompt": PROMPT, "temperature": 0}
        config = {
            "mode": "ttft",
            "host": "127.0.0.1",
            "port": port,
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "stream_path": "/generate/stream",
            "plain_path": "/generate",
            "stream_body": {**body, "max_tokens": 16},
            "plain_body": {**body, "max_tokens": 1},
        }
        with serve_spec(spec, port, logs / "stream.log"):
            loadgen({**config, "n": WARMUP})  # warm-up
            result = loadgen({**config, "n": REQUESTS})
    return [
        ratio_result(
            "stream-first-token",
            result["ttft_ms"],
            result["plain_ms"],
            "ms",
            at_most=1.2,
            details={
                "requests": REQUESTS,
                "streams_without_token": result["streams_without_token"],
                # Lower quartiles move less than medians when other work takes the CPU.
                "p25_ms": {
                    "ttft": round(sorted(result["ttft_all_ms"])[REQUESTS // 4], 2),
                    "plain": round(sorted(result["plain_all_ms"])[REQUESTS // 4], 2),
                },
                "ttft_ms_sorted": sorted(round(t, 2) for t in result["ttft_all_ms"]),
                "plain_ms_sorted": sorted(round(t, 2) for t in result["plain_all_ms"]),
                "baseline": "POST /generate with max_tokens=1, whole response",
            },
        )
    ]


if __name__ == "__main__":
    print(json.dumps({"path": str(make_tiny_gpt2(Path(sys.argv[1])))}))
