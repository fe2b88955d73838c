"""One WebSocket connection once accepted (`Connection`): its limits (message size, idle
time, lifetime, a check on each message), its sends, and the close codes it ends with;
and the handshake's own checks: the `Origin` a browser sends, and the subprotocols a
client offers.

The close codes (RFC 6455, section 7.4; docs/spec.md, WebSockets):

- 1000 normal: the handler's answers ended, or the connection sat idle past its limit;
- 1001 going away: the connection reached its lifetime (reconnect);
- 1008 policy: missing or invalid credentials, an origin not allowed, a bad ticket;
- 1009 too big: a message over the route's `max_bytes`;
- 1011 internal error: the handler failed (the reason carries the connection's id);
- 1013 try again later: the rate limit is spent (the reason says when to retry), or the
  model is not ready;
- 4000 + status: a handler's exception the spec's `errors:` maps (4422 for a 422).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from fastapi import WebSocket
from fastapi.encoders import jsonable_encoder
from starlette.exceptions import HTTPException
from starlette.types import Scope

from endpointgen.runtime.http.ids import IDS
from endpointgen.runtime.http.logs import log
from endpointgen.runtime.http.settings import settings_of

NORMAL = 1000
GOING_AWAY = 1001
POLICY = 1008
TOO_BIG = 1009
INTERNAL = 1011
TRY_LATER = 1013
MAPPED = 4000  # plus the status a spec's `errors:` gives an exception

MARKER = "endpointgen"  # the subprotocol answered when a client offers it with a credential
MAX_REASON = 123  # bytes of a close frame's reason (RFC 6455: 125 less the code)
STUCK = 5.0  # seconds a close waits on a send to a client that reads nothing

Message = str | bytes  # what a client sends: text or binary
Admit = Callable[[], Awaitable[tuple[int, str] | None]]  # a message's check: a close or None


def reason(text: str) -> str:
    """`text`, cut to what a close frame carries."""
    raw = text.encode()
    return text if len(raw) <= MAX_REASON else raw[:MAX_REASON].decode(errors="ignore")


def refusal(exc: HTTPException) -> tuple[int, str]:
    """The close code and reason for a guard's refusal: 1013 for a spent rate limit (with
    when to retry) and for a model or storage not ready, 1008 for anything else."""
    if exc.status_code == 429:
        retry = (exc.headers or {}).get("Retry-After", "1")
        return TRY_LATER, f"rate limit exceeded; retry in {retry} s"
    if exc.status_code == 503:
        return TRY_LATER, str(exc.detail)
    return POLICY, str(exc.detail)


def header(scope: Scope, name: bytes) -> list[str]:
    return [value.decode("latin-1") for key, value in scope["headers"] if key == name]


def offered(scope: Scope) -> list[str]:
    """The subprotocols the client offers: the server's parse, else the headers'."""
    found = scope.get("subprotocols")
    if found is not None:
        return [str(p) for p in found]
    values = header(scope, b"sec-websocket-protocol")
    return [p.strip() for value in values for p in value.split(",") if p.strip()]


def origin_allowed(websocket: WebSocket) -> bool:
    """Whether a browser on the page at `Origin` may connect. Browsers send `Origin` on
    every WebSocket handshake, and no CORS rule stops a page from opening one, so this
    is the check: with the spec's `cors`, its `origins`; without, only the app's own
    (the same rule a browser applies to its HTTP routes). No `Origin`: not a browser."""
    origins = header(websocket.scope, b"origin")
    if not origins:
        return True
    if len(origins) > 1:
        return False
    origin = origins[0]
    cors = settings_of(websocket.app).cors
    if cors is not None:
        return bool(cors.allow_all_origins or cors.is_allowed_origin(origin=origin))
    hosts = header(websocket.scope, b"host")
    return len(hosts) == 1 and origin.partition("://")[2].lower() == hosts[0].lower()


async def refuse(websocket: WebSocket, code: int, why: str, subprotocol: str | None) -> None:
    """Accept, then close at once with `code`: a browser learns a close code only from
    an accepted connection (a refused handshake is a bare 1006 to its scripts)."""
    try:
        await websocket.accept(subprotocol=subprotocol)
        await websocket.close(code, reason(why))
    except Exception:  # the client left during the handshake
        pass
    log.info(
        {"message": "websocket refused", "path": websocket.scope.get("path", ""),
         "code": code, "reason": why}
    )  # fmt: skip


def encoded(value: Any) -> Message:
    """What a value is sent as: text as a text message, bytes as a binary one, anything
    else as JSON text (`ValueError` for what JSON cannot carry: NaN, infinities)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return json.dumps(jsonable_encoder(value), allow_nan=False)


class Connection:
    """An accepted WebSocket, run to its end by `run`: a reader takes the client's
    messages (each within `max_bytes`, each passed by `admit`), a watchdog ends the
    connection when it sits idle or reaches its lifetime, and the route's `work` reads
    the messages (`messages()`) and sends its answers (`send`). Whichever ends first
    ends the others; the connection is closed once, with the first code given."""

    def __init__(
        self,
        websocket: WebSocket,
        *,
        max_bytes: int,
        idle_timeout: float,
        max_lifetime: float,
        admit: Admit | None = None,
    ) -> None:
        self.websocket = websocket
        self.id = IDS.next()[0]
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.admit = admit
        self.started = self.last = time.monotonic()
        self.busy = 0  # work under way (a generation): the connection is not idle
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue(maxsize=8)
        self.sending = asyncio.Lock()
        self.code: int | None = None  # how it closed; set once
        self.why = ""
        self.received = self.sent = 0

    @property
    def open(self) -> bool:
        return self.code is None

    async def messages(self) -> AsyncIterator[Message]:
        """The client's messages, as they pass the checks, until the connection ends."""
        while True:
            message = await self.inbox.get()
            if message is None:
                return
            yield message

    async def send(self, value: Any) -> bool:
        """Send one message (see `encoded`); False once the connection has closed."""
        message = encoded(value)
        async with self.sending:
            if not self.open:
                return False
            try:
                if isinstance(message, str):
                    await self.websocket.send_text(message)
                else:
                    await self.websocket.send_bytes(message)
            except Exception:  # the client is gone
                self.ended(1006, "the client went away")
                return False
        self.sent += 1
        self.last = time.monotonic()
        # A send to a client that keeps up completes without waiting: give the loop a
        # turn, or a handler that yields without pause would starve the watchdog, the
        # reader and every other connection.
        await asyncio.sleep(0)
        return True

    async def close(self, code: int, why: str = "") -> None:
        """Close with `code`, unless the connection has closed already. A send stuck on
        a client that reads nothing holds it up for at most `STUCK` seconds."""
        if not self.open:
            return
        held = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STUCK):
                held = await self.sending.acquire()
        try:
            if not self.open:
                return
            self.ended(code, why)
            with contextlib.suppress(Exception):  # gone already, or stuck: it ends anyway
                async with asyncio.timeout(STUCK):
                    await self.websocket.close(code, reason(why))
        finally:
            if held:
                self.sending.release()

    def ended(self, code: int, why: str) -> None:
        if self.code is None:
            self.code, self.why = code, why
            with contextlib.suppress(asyncio.QueueFull):
                self.inbox.put_nowait(None)  # `messages()` ends

    async def run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` with the reader and the watchdog until one of them ends."""
        tasks = [asyncio.ensure_future(t) for t in (self._read(), self._watch(), work)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
            failed = [o for o in outcomes if isinstance(o, Exception)]
            for exc in failed:
                log.error("websocket %s failed", self.id, exc_info=exc)
            if failed:
                await self.close(INTERNAL, f"internal error (connection {self.id})")
            await self.close(NORMAL)
            log.info(
                {"message": "websocket closed", "request_id": self.id,
                 "path": self.websocket.scope.get("path", ""), "code": self.code,
                 "reason": self.why, "received": self.received, "sent": self.sent,
                 "seconds": round(time.monotonic() - self.started, 3)}
            )  # fmt: skip

    async def _read(self) -> None:
        while self.open:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                self.ended(int(message.get("code") or 1005), "the client closed")
                return
            if message["type"] != "websocket.receive":
                continue
            text = message.get("text")
            data: Message = text if text is not None else bytes(message.get("bytes") or b"")
            size = len(data) if isinstance(data, bytes) else len(data.encode())
            if size > self.max_bytes:
                await self.close(TOO_BIG, f"a message is at most {self.max_bytes} bytes")
                return
            self.received += 1
            self.last = time.monotonic()
            refused = await self.admit() if self.admit is not None else None
            if refused is not None:
                await self.close(*refused)
                return
            await self.inbox.put(data)

    async def _watch(self) -> None:
        ends = self.started + self.max_lifetime
        while True:
            now = time.monotonic()
            if now >= ends:
                await self.close(GOING_AWAY, f"connection lifetime of {self.max_lifetime:g} s")
                return
            idle_ends = self.last + self.idle_timeout
            if not self.busy and now >= idle_ends:
                await self.close(NORMAL, f"idle for {self.idle_timeout:g} s")
                return
            wake = ends if self.busy else min(ends, idle_ends)
            await asyncio.sleep(max(0.01, min(wake - now, self.idle_timeout)))
