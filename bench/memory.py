"""Memory: does the embeddings server's RSS keep growing with requests?

RSS is read after a short warm-up (first-request allocations are not a leak), then
after every 2,500 of 10,000 requests from 32 connections: a leak climbs steadily,
allocator noise does not.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from harness import (
    Result,
    auth_headers,
    embed_bodies,
    embed_spec,
    free_port,
    loadgen,
    rss_kib,
    serve_spec,
    sized,
    write_spec,
)

REQUESTS = sized(10_000, 200)
STEPS = sized(4, 2)
WARMUP_REQUESTS = sized(320, 32)
CONNECTIONS = 32
MAX_SECONDS = 180.0  # a cap, should the machine be far slower than planned for
MIB = 1024  # KiB per MiB


def run(logs: Path) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as folder:
        spec = write_spec(Path(folder), embed_spec(32, 5))
        port = free_port()
        base = {
            "mode": "load",
            "host": "127.0.0.1",
            "port": port,
            "method": "POST",
            "path": "/embed",
            "headers": auth_headers(),
            "bodies": embed_bodies(),
            "connections": CONNECTIONS,
        }
        with serve_spec(spec, port, logs / "memory.log") as server:
            at_start = rss_kib(server.pid)
            loadgen({**base, "requests": WARMUP_REQUESTS, "duration": MAX_SECONDS})
            before = rss_kib(server.pid)
            steps: list[float] = []
            statuses: dict[str, int] = {}
            done, seconds = 0, 0.0
            for _ in range(STEPS):
                left = MAX_SECONDS - seconds
                load = loadgen({**base, "requests": REQUESTS // STEPS, "duration": left})
                steps.append(round(rss_kib(server.pid) / MIB, 1))
                done += load["ok"]
                seconds += load["elapsed_s"]
                for code, count in load["statuses"].items():
                    statuses[code] = statuses.get(code, 0) + count
                if seconds >= MAX_SECONDS:
                    break
            after = rss_kib(server.pid)
    return [
        Result(
            "embed-rss",
            after / MIB,
            before / MIB,
            "MiB",
            "",
            None,
            details={
                "growth_mib": round((after - before) / MIB, 1),
                "rss_at_start_mib": round(at_start / MIB, 1),
                f"rss_mib_every_{REQUESTS // STEPS}": steps,
                "requests": done,
                "statuses": statuses,
                "rps": round(done / seconds, 1),
                "baseline": f"RSS after {WARMUP_REQUESTS} warm-up requests",
            },
        )
    ]
