"""`/v1/embeddings` (OpenAI-compatible) against the plain `embed` route.

One app serves both routes on the same model and batching, so the only difference is
the route: OpenAI's request and response shapes, and its token counting. Rounds
alternate between the two paths; 32 connections, one short sentence per request.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from harness import (
    API_KEY,
    SENTENCES,
    Result,
    embed_spec,
    free_port,
    loadgen,
    ratio_result,
    serve_spec,
    sized,
    write_spec,
)

CONNECTIONS = 32
ROUNDS = sized(3, 1)
ROUND_SECONDS = 4.0
WARMUP = 1.0
# Each round: a timed window of load; in a smoke run two requests per connection instead
# (a short window on a busy machine can end before any answer).
LOAD: dict[str, Any] = sized({"duration": ROUND_SECONDS, "warmup": WARMUP}, {"per_connection": 2})


def spec() -> dict[str, Any]:
    data = embed_spec(32, 5)
    data["name"] = "bench-openai-embed"
    data["auth"] = {"mode": "bearer"}  # OpenAI clients send Authorization: Bearer
    data["routes"] = [
        {"path": "/embed", "method": "POST", "action": "embed"},
        {"path": "/v1", "action": "openai"},
        {"path": "/health", "action": "health"},
    ]
    return data


def hammer(port: int, path: str) -> dict[str, Any]:
    if path == "/embed":
        bodies = [{"texts": [s]} for s in SENTENCES]
    else:
        bodies = [{"input": [s], "model": "all-MiniLM-L6-v2"} for s in SENTENCES]
    result = loadgen(
        {
            "mode": "load",
            "host": "127.0.0.1",
            "port": port,
            "method": "POST",
            "path": path,
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "bodies": bodies,
            "connections": CONNECTIONS,
            **LOAD,
        }
    )
    if result["ok"] == 0 or result["errors"] or set(result["statuses"]) != {"200"}:
        raise RuntimeError(f"{path}: {result['statuses']}, {result['errors']}")
    return result


def run(logs: Path) -> list[Result]:
    ok = {"/v1/embeddings": 0, "/embed": 0}
    seconds = dict.fromkeys(ok, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-openai-") as folder:
        path = write_spec(Path(folder), spec())
        port = free_port()
        with serve_spec(path, port, logs / "openai-embed.log") as server:
            for _ in range(ROUNDS):
                for route in ok:
                    result = hammer(server.port, route)
                    ok[route] += result["ok"]
                    seconds[route] += result["elapsed_s"]
    return [
        ratio_result(
            "openai-embeddings",
            ok["/v1/embeddings"] / seconds["/v1/embeddings"],
            ok["/embed"] / seconds["/embed"],
            "req/s",
            at_least=0.90,
            details={"connections": CONNECTIONS, "batching": "32 / 5 ms"},
        )
    ]
