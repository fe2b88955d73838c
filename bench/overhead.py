"""Route overhead: the generated app's `health` against FastAPI's hello world.

Both are served by uvicorn with the same settings (see hello_app.py) and loaded by the
same client. Rounds alternate between the two so a noisy neighbour hits both alike,
and the servers' own CPU time per request is reported too: unlike requests/s, it
barely moves when something else on the machine takes CPU.
"""

from __future__ import annotations

import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness import (
    BENCH,
    PYTHON,
    Result,
    cpu_seconds,
    free_port,
    loadgen,
    ratio_result,
    serve_spec,
    serving,
    sized,
    write_spec,
)

CONNECTIONS = 64
ROUNDS = sized(4, 1)
ROUND_SECONDS = 2.5
WARMUP = 0.5
# Each round: a timed window of load; in a smoke run two requests per connection instead
# (a short window on a busy machine can end before any answer).
LOAD: dict[str, Any] = sized({"duration": ROUND_SECONDS, "warmup": WARMUP}, {"per_connection": 2})

HELLO_SPEC: dict[str, Any] = {
    "name": "bench-hello",
    "description": "route overhead benchmark: health only, no model",
    "auth": {"mode": "none"},
    "routes": [{"path": "/health", "method": "GET", "action": "health"}],
}


def hammer(port: int, pid: int) -> tuple[dict[str, Any], float]:
    """One round of load, and the server's CPU seconds during it (warm-up included)."""
    used = cpu_seconds(pid)
    result = loadgen(
        {
            "mode": "load",
            "host": "127.0.0.1",
            "port": port,
            "method": "GET",
            "path": "/health",
            "connections": CONNECTIONS,
            **LOAD,
        }
    )
    return result, cpu_seconds(pid) - used


def run(logs: Path) -> list[Result]:
    names = ("generated", "hello")
    ok = dict.fromkeys(names, 0)
    seconds = dict.fromkeys(names, 0.0)
    cpu_us: dict[str, list[float]] = {name: [] for name in names}
    rps: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="bench-hello-") as folder, ExitStack() as stack:
        spec = write_spec(Path(folder), HELLO_SPEC)
        port = free_port()
        generated = serve_spec(spec, port, logs / "hello-generated.log")
        servers = {"generated": stack.enter_context(generated)}
        port = free_port()
        hello = serving([PYTHON, str(BENCH / "hello_app.py"), str(port)], port, logs / "hello.log")
        servers["hello"] = stack.enter_context(hello)
        for _ in range(ROUNDS):
            for name, server in servers.items():
                result, cpu = hammer(server.port, server.pid)
                if result["errors"] or set(result["statuses"]) != {"200"}:
                    raise RuntimeError(f"{name}: {result['statuses']}, {result['errors']}")
                ok[name] += result["ok"]
                seconds[name] += result["elapsed_s"]
                rps[name].append(round(result["rps"]))
                # The CPU window includes the warm-up, so divide by every request sent.
                sent = result["ok"] * (ROUND_SECONDS + WARMUP) / ROUND_SECONDS
                cpu_us[name].append(round(1e6 * cpu / sent, 1))
    cpu = {name: sum(cpu_us[name]) / ROUNDS for name in names}
    return [
        ratio_result(
            "health-overhead",
            ok["generated"] / seconds["generated"],
            ok["hello"] / seconds["hello"],
            "req/s",
            at_least=0.90,
            details={
                "connections": CONNECTIONS,
                "seconds_each": ROUNDS * ROUND_SECONDS,
                "rps_per_round": rps,
                "server_cpu_us_per_request": cpu,
                "server_cpu_us_per_round": cpu_us,
                "cpu_ratio_hello_over_generated": round(cpu["hello"] / cpu["generated"], 3),
                "baseline": "FastAPI hello world, same uvicorn settings",
            },
        )
    ]
