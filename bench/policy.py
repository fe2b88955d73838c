"""Traffic policy costs: auth + CORS + rate limit on a trivial route, and many client keys.

`policy-overhead`: a constant `respond` route served with api_key auth, CORS and a
memory rate limit (high enough that every request passes) against the same route
with none of them; rounds alternate, as in overhead.py.

`ratelimit-10k-keys` / `seed-limiter-10k-keys`: the generated app's limiter (its
`FixedWindow`, imported from a built module) hit by 10,000 distinct keys against one
key, in-process; and the same for the seed's limiter (a list of timestamps per client,
cleaned on every request), the baseline the issue names.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from harness import Result, free_port, loadgen, ratio_result, serve_spec, sized, write_spec

from endpointgen.compiler import pipeline

CONNECTIONS = 64
ROUNDS = sized(4, 1)
ROUND_SECONDS = 2.5
WARMUP = 0.5
# Each round: a timed window of load; in a smoke run two requests per connection instead
# (a short window on a busy machine can end before any answer).
LOAD: dict[str, Any] = sized({"duration": ROUND_SECONDS, "warmup": WARMUP}, {"per_connection": 2})
KEY = "bench-key"
ORIGIN = "https://bench.example"
HITS = sized(100_000, 2_000)
MANY = sized(10_000, 100)


def route_spec(name: str, policy: bool, metrics: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": name,
        "routes": [
            {"path": "/hello", "action": "respond", "response": "Hello, World!"},
            {"path": "/health", "action": "health"},
        ],
    }
    if policy:
        spec["auth"] = {"mode": "api_key"}
        spec["cors"] = {"origins": [ORIGIN]}
        spec["rate_limit"] = {"limit": "100000000/minute", "key": "api_key"}
    if metrics:
        spec["metrics"] = {"enabled": True}
    return spec


def hammer(port: int) -> dict[str, Any]:
    return loadgen(
        {
            "mode": "load",
            "host": "127.0.0.1",
            "port": port,
            "method": "GET",
            "path": "/hello",
            "headers": {"X-API-Key": KEY, "Origin": ORIGIN},
            "connections": CONNECTIONS,
            **LOAD,
        }
    )


def policy_overhead(logs: Path) -> list[Result]:
    """The policy route against the same route without policy, and with /metrics on
    against off; all three servers take turns, round after round."""
    names = {"policy": (True, False), "plain": (False, False), "metrics": (True, True)}
    ok = dict.fromkeys(names, 0)
    seconds = dict.fromkeys(names, 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-policy-") as folder, ExitStack() as stack:
        servers = {}
        for name, (policy, metrics) in names.items():
            spec = write_spec(Path(folder) / name, route_spec(f"bench-{name}", policy, metrics))
            port = free_port()
            servers[name] = stack.enter_context(serve_spec(spec, port, logs / f"{name}.log"))
        for _ in range(ROUNDS):
            for name, server in servers.items():
                result = hammer(server.port)
                if result["errors"] or set(result["statuses"]) != {"200"}:
                    raise RuntimeError(f"{name}: {result['statuses']}, {result['errors']}")
                ok[name] += result["ok"]
                seconds[name] += result["elapsed_s"]
    rate = {name: ok[name] / seconds[name] for name in names}
    return [
        ratio_result(
            "policy-overhead",
            rate["policy"],
            rate["plain"],
            "req/s",
            at_least=0.85,
            details={
                "policy": "api_key auth + CORS + memory rate limit",
                "connections": CONNECTIONS,
            },
        ),
        ratio_result(
            "metrics-overhead",
            rate["metrics"],
            rate["policy"],
            "req/s",
            at_least=0.95,
            details={"metrics": "the policy route with `metrics: {enabled: true}` vs off"},
        ),
    ]


def built_limiter() -> Any:
    """The window class the built module's rate limit counts with, as the app runs it."""
    from endpointgen.runtime import limits

    folder = Path(tempfile.mkdtemp(prefix="bench-limiter-"))
    built = pipeline.build(write_spec(folder, route_spec("bench-limiter", True)), folder)
    assert "limits.RateLimit(" in built.source and "storage=" not in built.source
    return limits.FixedWindow


def ours(keys: list[str]) -> float:
    window = built_limiter()(limit=10**9, seconds=60)

    async def run() -> float:
        started = time.perf_counter()
        for i in range(HITS):
            await window.hit(keys[i % len(keys)], time.time())
        return HITS / (time.perf_counter() - started)

    return asyncio.run(run())


def seeds(keys: list[str], limit: int = 100) -> float:
    """The seed document's limiter: a list of timestamps per client, cleaned each time."""
    request_counts: defaultdict[str, list[datetime]] = defaultdict(list)

    def check(client: str) -> bool:
        now = datetime.now()
        minute_ago = now - timedelta(minutes=1)
        request_counts[client] = [t for t in request_counts[client] if t > minute_ago]
        if len(request_counts[client]) >= limit:
            return False
        request_counts[client].append(now)
        return True

    started = time.perf_counter()
    for i in range(HITS):
        check(keys[i % len(keys)])
    return HITS / (time.perf_counter() - started)


def run(logs: Path) -> list[Result]:
    many = [f"client-{i}" for i in range(MANY)]
    one = ["client-0"]
    return [
        *policy_overhead(logs),
        ratio_result(
            "ratelimit-10k-keys",
            ours(many),
            ours(one),
            "hits/s",
            at_least=0.90,
            details={"keys": MANY, "hits": HITS, "limiter": "generated FixedWindow"},
        ),
        ratio_result(
            "seed-limiter-10k-keys",
            seeds(many),
            seeds(one),
            "hits/s",
            details={"keys": MANY, "hits": HITS, "limiter": "the seed's list per client"},
        ),
    ]
