"""Rate limits: fixed windows aligned to the clock, so every container agrees on them.

`RateLimit("60/minute", key="api_key")` is a FastAPI dependency. Counted in this process
(`memory`), in Redis (`redis`: INCR, atomic, holds across containers) or in a
`modal.Dict` (`modal-dict`: holds across the app's containers, no server to run).
"""

import hashlib
import os
import time
from typing import Any, Literal, Protocol

from fastapi import Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from endpointgen.runtime import http

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
        self.counts: dict[str, int] = {}

    async def hit(self, key: str, now: float) -> tuple[bool, int, int]:
        window = int(now // self.seconds)
        if window != self.window:
            self.window, self.counts = window, {}
        reset = seconds_left(window, self.seconds, now)
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

    A Dict has no atomic increment, so each admitted request claims one of the window's
    `limit` numbered slots with an insert-if-absent put: a slot is won once, so at most
    `limit` requests pass per window. Claimed slots always form a prefix, so a binary
    search over `contains` finds the first free slot in O(log limit) reads.
    """

    def __init__(self, store: Any, scope: str, limit: int, seconds: int) -> None:
        self.store = store
        self.scope = scope
        self.limit = limit
        self.seconds = seconds

    async def hit(self, key: str, now: float) -> tuple[bool, int, int]:
        window = int(now // self.seconds)
        base = f"{self.scope}:{window}:{key}"
        reset = seconds_left(window, self.seconds, now)
        low = 0
        while True:
            high = self.limit
            while low < high:
                middle = (low + high) // 2
                if await call(self.store.contains, f"{base}:{middle}"):
                    low = middle + 1
                else:
                    high = middle
            if low >= self.limit:
                return False, 0, reset
            if await call(self.store.put, f"{base}:{low}", 1, skip_if_exists=True):
                return True, self.limit - low - 1, reset
            low += 1  # another container won this slot: search again above it


async def call(method: Any, *args: Any, **kwargs: Any) -> Any:
    """Modal's blocking methods have an `.aio` twin for use on the event loop."""
    aio = getattr(method, "aio", None)
    return await (aio(*args, **kwargs) if aio is not None else method(*args, **kwargs))


def client_address(request: Request) -> str:
    # The ASGI client address: Modal sets it to the caller's address. X-Forwarded-For
    # is never trusted, since any client can write it.
    return request.client.host if request.client else "unknown"


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
        self.key = key
        self.window = new_window(storage, app, scope, self.limit, self.seconds, url_env)
        http.documents(self, documented)

    async def __call__(self, request: Request) -> None:
        credential = getattr(request.state, "credential", None)
        if self.key == "api_key" and credential is not None:
            who = str(credential)
        else:
            who = hashlib.sha256(client_address(request).encode()).hexdigest()
        if self.window is None:
            raise HTTPException(503, "rate limit storage is not configured")
        try:
            allowed, remaining, reset = await self.window.hit(who, time.time())
        except Exception as exc:
            http.log.error("rate limit storage failed: %s", exc)
            raise HTTPException(503, "rate limit storage unavailable") from None
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(reset)
            raise HTTPException(429, "rate limit exceeded", headers)
        request.state.response_headers = headers


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
