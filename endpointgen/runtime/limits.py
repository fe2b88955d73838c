"""Rate limits: fixed windows aligned to the clock, so every container agrees on them.

`RateLimit("60/minute", key="api_key")` is a FastAPI dependency. Counted in this process
(`memory`), in Redis (`redis`: INCR, atomic, holds across containers) or in a
`modal.Dict` (`modal-dict`: holds across the app's containers, no server to run).
"""

import asyncio
import hashlib
import ipaddress
import os
import time
from collections.abc import Awaitable
from typing import Any, Literal, NoReturn, Protocol

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from endpointgen.runtime import http
from endpointgen.runtime.metrics import METRICS

__all__ = ["DictWindow", "FixedWindow", "RateLimit", "RedisWindow"]

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
Storage = Literal["memory", "redis", "modal-dict"]


class Window(Protocol):
    async def hit(self, key: str, now: float) -> tuple[bool, int, int]:
        """(allowed, remaining, seconds until the window resets)."""
        ...


def parse(rate: str) -> tuple[int, int]:
    """`"60/minute"` -> (60, 60): requests allowed, window in seconds."""
    amount, unit = rate.split("/")
    return int(amount), UNITS[unit.strip().rstrip("s")]


def seconds_left(window: int, seconds: int, now: float) -> int:
    return max(1, int((window + 1) * seconds - now + 0.999))


class FixedWindow:
    """At most `limit` hits per key in each `seconds`-long window, in this process.

    O(1) per request: one dict holds the current window's counts and is dropped whole
    when the window ends. Requests are counted on the event loop, one at a time, so the
    count is exact under any concurrency.
    """

    def __init__(self, limit: int, seconds: int) -> None:
        self.limit = limit
        self.seconds = seconds
        self.window = -1
        self.ends = 0.0  # when the current window ends, in seconds since the epoch
        self.counts: dict[str, int] = {}

    async def hit(self, key: str, now: float) -> tuple[bool, int, int]:
        return self.count(key, now)

    def count(self, key: str, now: float) -> tuple[bool, int, int]:
        """`hit`, without a coroutine: what `RateLimit` calls on the event loop."""
        window = int(now // self.seconds)
        if window != self.window:
            self.window, self.counts = window, {}
            self.ends = (window + 1) * self.seconds
        reset = int(self.ends - now + 0.999) or 1  # as seconds_left: at least 1
        used = self.counts.get(key, 0)
        if used >= self.limit:
            return False, 0, reset
        self.counts[key] = used + 1
        return True, self.limit - used - 1, reset


class RedisWindow:
    """Fixed windows counted in Redis; INCR is atomic, so the limit holds cluster-wide."""

    def __init__(self, url: str, prefix: str, limit: int, seconds: int) -> None:
        import redis.asyncio as redis

        self.client: Any = redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self.prefix = prefix
        self.limit = limit
        self.seconds = seconds

    async def hit(self, key: str, now: float) -> tuple[bool, int, int]:
        window = int(now // self.seconds)
        name = f"{self.prefix}:{window}:{key}"
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.incr(name)
            pipe.expire(name, self.seconds + 1)
            used, _ = await pipe.execute()
        reset = seconds_left(window, self.seconds, now)
        if used > self.limit:
            return False, 0, reset
        return True, self.limit - int(used), reset


class DictWindow:
    """Fixed windows in a `modal.Dict`, shared by every container of the app.

    A Dict has no atomic increment; its one atomic step is the insert-if-absent `put`,
    which a key wins once. So each window's `limit` is cut into at most `CHUNKS` numbered
    chunks, and a container claims a whole chunk with that `put` and then admits from it
    locally, with no Dict call, until it is spent. A chunk is won once, so at most
    `limit` requests pass per window in all containers together.

    Cost on a request's path: no Dict call while the container's chunk lasts, and at
    most 2 `put`s when it claims the next one. Requests of this
    container that arrive during a claim wait for it rather than race it. If both
    `put`s lose, the request gets 429 with `Retry-After: 1`: the window is not spent,
    this container only learned that others took those chunks.

    The price of claiming in chunks: a chunk one container holds cannot serve requests
    that reach another, so when a key's traffic moves between containers, up to
    (containers - 1) x (chunk - 1) requests of a window can be refused early. Never
    more than `limit` are admitted.

    No key outlives its window by long: each container pops the chunks it won once
    their window has passed (off the request path, on a timer and on the next window's
    first request).
    """

    CHUNKS = 16

    def __init__(self, store: Any, scope: str, limit: int, seconds: int) -> None:
        self.store = store
        self.scope = scope
        self.limit = limit
        self.seconds = seconds
        self.chunk = -(-limit // self.CHUNKS)
        self.chunks = -(-limit // self.chunk)
        self.window = -1
        self.leases: dict[str, Lease] = {}
        self.won: list[tuple[int, str]] = []  # (window, key) of chunks this container holds
        self.sweeping: set[asyncio.Task[None]] = set()
        self.timer = -1  # the window whose sweep timer is set

    async def hit(self, key: str, now: float) -> tuple[bool, int, int]:
        window = int(now // self.seconds)
        reset = seconds_left(window, self.seconds, now)
        if window != self.window:
            self.window, self.leases = window, {}
            self.sweep_soon(0, now)
        lease = self.leases.setdefault(key, Lease())
        while lease.next >= lease.end and lease.claiming is not None:
            await asyncio.shield(lease.claiming)  # this container is claiming already
        if lease.next >= lease.end:
            if lease.lowest(self.chunks) is None:
                return False, 0, reset
            claim = asyncio.get_running_loop().create_future()
            lease.claiming = claim
            try:
                won = await self.claim(f"{self.scope}:{window}:{key}", lease)
            finally:
                lease.claiming = None
                claim.set_result(None)
            if won is None:
                exhausted = lease.lowest(self.chunks) is None
                return False, 0, reset if exhausted else 1
            self.won.append((window, won))
            self.sweep_soon(reset + 1, None)
        slot = lease.next
        lease.next += 1
        return True, self.limit - slot - 1, reset

    async def claim(self, base: str, lease: "Lease") -> str | None:
        """Claim a chunk with at most 2 `put`s; the lease then spans it.

        Containers claim upwards, so the chunks above the highest one known to be taken
        are the likely free ones: the first `put` tries the lowest of them, the second
        jumps halfway up the rest, which finds the top of a window that other
        containers have been filling in a few requests. Once none above can be free,
        the chunks below are tried downwards from there: holes left by jumps lie just
        under the chunks that jumped.
        """
        for attempt in range(2):
            top = max(lease.taken, default=-1)
            free = [n for n in range(top + 1, self.chunks)]
            free = free or [n for n in range(top, -1, -1) if n not in lease.taken]
            if not free:
                return None
            number = free[len(free) // 2] if attempt else free[0]
            lease.taken.add(number)
            name = f"{base}:{number}"
            if await call(self.store.put, name, 1, skip_if_exists=True):
                lease.next = number * self.chunk
                lease.end = min(self.limit, lease.next + self.chunk)
                return name
        return None

    def sweep_soon(self, delay: float, now: float | None) -> None:
        """Pop the chunks of ended windows after `delay` seconds, off the request path.

        `now=None` reads the clock when the timer fires. One timer per window.
        """
        if not self.won or (delay and self.timer == self.window):
            return
        loop = asyncio.get_running_loop()

        def start() -> None:
            task = loop.create_task(self.sweep(time.time() if now is None else now))
            self.sweeping.add(task)
            task.add_done_callback(self.sweeping.discard)

        if delay:
            self.timer = self.window
            loop.call_later(delay, start)
        else:
            start()

    async def sweep(self, now: float) -> None:
        current = int(now // self.seconds)
        ended = [name for window, name in self.won if window < current]
        self.won = [(window, name) for window, name in self.won if window >= current]
        for name in ended:
            try:
                await call(self.store.pop, name, None)
            except Exception as exc:  # the Dict drops idle keys itself after 7 days
                http.log.warning("could not remove rate limit key %s: %s", name, exc)


class Lease:
    """One key's window in one container: the slots left in its chunk, and the chunks it
    knows are taken."""

    def __init__(self) -> None:
        self.next = 0
        self.end = 0
        self.taken: set[int] = set()
        self.claiming: asyncio.Future[None] | None = None

    def lowest(self, chunks: int) -> int | None:
        """The lowest chunk not known to be taken; None when all are."""
        return next((n for n in range(chunks) if n not in self.taken), None)


async def call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """Modal's blocking methods have an `.aio` twin for use on the event loop."""
    aio = getattr(method, "aio", None)
    return await (aio(*args, **kwargs) if aio is not None else method(*args, **kwargs))


def client_address(request: Request) -> str:
    """Who a `key: ip` limit counts: the ASGI client address, which Modal sets to the
    caller's (X-Forwarded-For is never trusted: any client can write it). An IPv6 client
    counts as its /64, since one host commonly holds a whole /64 to rotate through."""
    client = request.scope.get("client")
    host = client[0] if client else "unknown"
    if ":" in host:
        try:
            address = ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            return host
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return host


class RateLimit:
    """At most `rate` requests per key and window; the rest get 429 with `Retry-After`.

    `key="ip"` counts per client address, and is listed before auth so guessing keys is
    throttled too; `key="api_key"` counts per credential, after the auth guard has found
    it. Routes that share one `RateLimit` share its windows. Answers carry
    `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.
    """

    def __init__(
        self,
        rate: str,
        key: Literal["ip", "api_key"] = "ip",
        storage: Storage = "memory",
        *,
        app: str = "",
        scope: str = "app",
        url_env: str = "REDIS_URL",
    ) -> None:
        self.limit, self.seconds = parse(rate)
        self.limit_header = str(self.limit).encode()
        self.key = key
        self.window = new_window(storage, app, scope, self.limit, self.seconds, url_env)
        # In memory, counting is a plain call: no coroutine, no storage to fail.
        self.local = self.window.count if isinstance(self.window, FixedWindow) else None
        http.documents(self, documented)

    def __call__(self, request: Request) -> Awaitable[None] | None:
        """Counted at once in memory; elsewhere, the awaitable that counts."""
        state = request.scope.setdefault("state", {})
        credential = state.get("credential")
        if self.key == "api_key" and credential is not None:
            who = str(credential)
        else:
            who = address_key(client_address(request))
        if self.local is None:
            return self.counted(request, state, who)
        allowed, remaining, reset = self.local(who, time.time())
        if not allowed:
            self.refuse(request, reset)
        self.granted(state, remaining, reset)
        return None

    async def counted(self, request: Request, state: dict[str, Any], who: str) -> None:
        if self.window is None:
            raise HTTPException(503, "rate limit storage is not configured")
        try:
            allowed, remaining, reset = await self.window.hit(who, time.time())
        except Exception as exc:
            http.log.error("rate limit storage failed: %s", exc)
            raise HTTPException(503, "rate limit storage unavailable") from None
        if not allowed:
            self.refuse(request, reset)
        self.granted(state, remaining, reset)

    def granted(self, state: dict[str, Any], remaining: int, reset: int) -> None:
        # Added to the answer by http.RequestContext, as raw header pairs.
        state["response_headers"] = [
            (b"ratelimit-limit", self.limit_header),
            (b"ratelimit-remaining", b"%d" % remaining),
            (b"ratelimit-reset", b"%d" % reset),
        ]

    def refuse(self, request: Request, reset: int) -> NoReturn:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(reset),
            "Retry-After": str(reset),
        }
        route = request.scope.get("route")
        METRICS.rate_limited(getattr(route, "path", "unmatched"))
        raise HTTPException(429, "rate limit exceeded", headers)


_addresses: dict[str, str] = {}


def address_key(address: str) -> str:
    """What a limit by address counts by: a digest, so no raw address reaches Redis or
    a Dict. Digests of recent addresses are kept (at most 10,000)."""
    found = _addresses.get(address)
    if found is None:
        if len(_addresses) >= 10_000:
            _addresses.clear()
        found = _addresses[address] = hashlib.sha256(address.encode()).hexdigest()
    return found


def new_window(
    storage: Storage, app: str, scope: str, limit: int, seconds: int, url_env: str
) -> Window | None:
    if storage == "redis":
        url = os.environ.get(url_env, "")
        if not url:
            http.log.error("%s is not set: rate-limited routes answer 503", url_env)
            return None
        return RedisWindow(url, f"endpointgen:{app}:{scope}", limit, seconds)
    if storage == "modal-dict":
        import modal

        if not modal.is_local():
            store = modal.Dict.from_name(f"{app}-rate-limits", create_if_missing=True)
            return DictWindow(store, scope, limit, seconds)
        http.log.info("outside Modal, modal-dict rate limits are counted in memory")
    return FixedWindow(limit, seconds)


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "schema": {"type": "integer"}}


HEADERS = {
    "RateLimit-Limit": _header("Requests allowed per window"),
    "RateLimit-Remaining": _header("Requests left in this window"),
    "RateLimit-Reset": _header("Seconds until the window resets"),
}


def documented(route: APIRoute) -> dict[int, dict[str, Any]]:
    retry = {"Retry-After": _header("Seconds to wait"), **HEADERS}
    return {
        200: {"headers": HEADERS},
        429: {"error": "Rate limit exceeded", "headers": retry},
        503: {"error": "Rate limit storage unavailable"},
    }
