"""WebSocket routes: `Socket`, one per route, checks a connection as the route's HTTP
guards check a request (the same auth guard, the same rate limit), then runs it: a
`generate` route's generations (`Socket.generate`), or your handler (`Socket.relay`).

Credentials, for browsers (which cannot set headers on a WebSocket): besides the header
the app's auth reads, a client may offer the subprotocols `endpointgen` and
`auth.<credential, base64url>`, or `endpointgen` and `ticket.<ticket>`, a ticket the
route's `POST <path>/ticket` gave (`Socket.ticket`). Never the query string: URLs are
written to access logs, proxies' logs and browser history. The server answers with the
subprotocol `endpointgen`, never echoing the credential.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import inspect
import json
import os
import time
from collections.abc import Callable, Sequence
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

from fastapi import Request, WebSocket
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.types import Scope

from endpointgen.runtime import auth, defaults, http
from endpointgen.runtime.http import websocket as ws
from endpointgen.runtime.http.ids import IDS
from endpointgen.runtime.limits import RateLimit

if TYPE_CHECKING:
    from endpointgen.runtime.tasks import Model

__all__ = ["IDLE_TIMEOUT", "MAX_LIFETIME", "TICKET_SECONDS", "Socket"]

IDLE_TIMEOUT = defaults.SOCKET_IDLE  # seconds a connection may sit with no message
MAX_LIFETIME = defaults.MODAL_TIMEOUT  # seconds a connection may last: Modal's default
TICKET_SECONDS = 30  # a ticket is good for one connection within this long
AUTH_PREFIX, TICKET_PREFIX = "auth.", "ticket."


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Socket:
    """A WebSocket route's checks and limits. `checks` are the route's guards, in the
    order its HTTP twin would run them: each runs once on the handshake, and each rate
    limit among them again on every message. `max_bytes` bounds a message, `idle_timeout`
    the seconds with no message either way (a generation under way counts as activity),
    `max_lifetime` the connection."""

    def __init__(
        self,
        path: str,
        *checks: http.Check,
        max_bytes: int = http.DEFAULT_MAX_BYTES,
        idle_timeout: float = IDLE_TIMEOUT,
        max_lifetime: float = MAX_LIFETIME,
    ) -> None:
        self.path = path
        self.checks = checks
        self.auth = next((c for c in checks if auth.presented(c) is not None), None)
        self.presented = auth.presented(self.auth)
        self.limits = [c for c in checks if isinstance(c, RateLimit)]
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.max_lifetime = max_lifetime
        self.redeemed: dict[str, float] = {}  # tickets' nonces, until they expire

    # --- the handshake ---

    async def opened(self, websocket: WebSocket) -> ws.Connection | None:
        """The connection, accepted, once the origin, the credential and every check have
        passed; None when refused (closed with its code)."""
        scope = websocket.scope
        offered = ws.offered(scope)
        answer = ws.MARKER if ws.MARKER in offered else None
        if not ws.origin_allowed(websocket):
            await ws.refuse(websocket, ws.POLICY, "origin not allowed", answer)
            return None
        sent = [p for p in offered if p.startswith((AUTH_PREFIX, TICKET_PREFIX))]
        problem = None
        if len(sent) > 1:
            problem = "offer one credential subprotocol"
        elif sent and answer is None:
            problem = f"offer the subprotocol {ws.MARKER} with the credential"
        # What the route's guards read, as they read a request: its headers, its client,
        # its state (shared with the connection's, where the credential's digest lands).
        scope.setdefault("state", {})
        checked: Scope = {**scope, "type": "http", "method": "GET"}
        ticketed = False
        if sent and problem is None:
            kind, _, value = sent[0].partition(".")
            if kind + "." == TICKET_PREFIX:
                credential = self.redeem(value, str(websocket.app.title))
                if credential is None:
                    problem = "invalid or expired ticket"
                else:
                    scope.setdefault("state", {})["credential"] = credential
                ticketed = True
            else:
                checked, problem = self.carried(checked, value)
        if problem is not None:
            await ws.refuse(websocket, ws.POLICY, problem, answer)
            return None
        request = Request(checked)
        for check in self.checks:
            if ticketed and check is self.auth:
                continue
            try:
                await http.run_check(check, request)
            except HTTPException as exc:
                await ws.refuse(websocket, *ws.refusal(exc), answer)
                return None
        try:
            await websocket.accept(subprotocol=answer)
        except Exception:  # the client left during the handshake
            return None
        return ws.Connection(
            websocket,
            max_bytes=self.max_bytes,
            idle_timeout=self.idle_timeout,
            max_lifetime=self.max_lifetime,
            admit=self.admitting(request) if self.limits else None,
        )

    def carried(self, scope: Scope, value: str) -> tuple[Scope, str | None]:
        """The scope the auth guard reads, with the subprotocol's credential in its
        header (replacing any the client sent there), or why it cannot be."""
        if self.presented is None:
            return scope, None  # a route without auth: nothing to check it against
        try:
            credential = unb64(value).decode()
        except (binascii.Error, ValueError):
            return scope, "the auth subprotocol is not base64url"
        name = self.presented.header
        headers = [(k, v) for k, v in scope["headers"] if k != name]
        presented = (self.presented.prefix + credential).encode("latin-1", "replace")
        return {**scope, "headers": [*headers, (name, presented)]}, None

    def admitting(self, request: Request) -> ws.Admit:
        """Each message counted by the route's rate limits, as a request would be."""

        async def admit() -> tuple[int, str] | None:
            for limit in self.limits:
                try:
                    await http.run_check(limit, request)
                except HTTPException as exc:
                    return ws.refusal(exc)
            return None

        return admit

    # --- tickets ---

    def ticket(self, request: Request) -> dict[str, Any]:
        """A ticket for one connection to this route of this app within `TICKET_SECONDS`,
        for the caller the route's auth has just let through: a page can connect without
        ever holding the long-lived key, which stays with your backend. Signed with a key
        derived from the auth's own secret, so any container of the app takes it."""
        secret = self.presented.secret if self.presented is not None else None
        credential = getattr(request.state, "credential", None)
        if secret is None or credential is None:
            raise HTTPException(503, "tickets need the app's auth to hold a secret")
        expires = int(time.time()) + TICKET_SECONDS
        app = str(request.app.title)
        payload = json.dumps([app, self.path, str(credential), expires, os.urandom(12).hex()])
        body = b64(payload.encode())
        ticket = f"{body}.{b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())}"
        return {
            "ticket": ticket,
            "protocols": [ws.MARKER, TICKET_PREFIX + ticket],
            "expires_in": TICKET_SECONDS,
        }

    def redeem(self, ticket: str, app: str) -> str | None:
        """The credential (its digest) a ticket was given for, once: None when it is
        forged, for another app or route, expired or used."""
        secret = self.presented.secret if self.presented is not None else None
        body, _, signature = ticket.partition(".")
        if secret is None or not body:
            return None
        wanted = b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())
        if not hmac.compare_digest(wanted.encode(), signature.encode("utf-8", "replace")):
            return None
        try:
            given, path, credential, expires, nonce = json.loads(unb64(body))
        except (ValueError, TypeError, binascii.Error):
            return None
        now = time.time()
        self.redeemed = {n: e for n, e in self.redeemed.items() if e >= now}
        if (given, path) != (app, self.path) or expires < now or nonce in self.redeemed:
            return None
        self.redeemed[nonce] = expires
        return str(credential)

    # --- what the routes run ---

    async def generate(
        self, websocket: WebSocket, model: Model, max_tokens: int, max_chars: int
    ) -> None:
        """Generations, one at a time: each JSON text message is a generate request
        (`type` "generate", or none) answered by `{"event": "token", "text"}` messages,
        then `{"event": "done", ...the totals}`; `{"type": "cancel"}` stops the one under
        way (`{"event": "cancelled"}`). A malformed request, or one over the route's
        ceilings, gets `{"event": "error", "error", "detail"?}` and the connection stays."""
        connection = await self.opened(websocket)
        if connection is not None:
            await connection.run(Generations(connection, model, max_tokens, max_chars).run())

    async def relay(
        self, websocket: WebSocket, handler: Callable[..., Any], model: Any = None
    ) -> None:
        """Your handler: an async generator function given the client's messages (an
        async iterator of `str` for text, `bytes` for binary) and, when it takes a
        second argument, the model; each value it yields is sent (text, bytes, or
        anything else as JSON). When it returns, the connection closes normally."""
        connection = await self.opened(websocket)
        if connection is not None:
            await connection.run(relayed(connection, handler, model))


async def relayed(connection: ws.Connection, handler: Callable[..., Any], model: Any) -> None:
    """The handler's answers, sent as it yields them; its exception closes the connection
    with the spec's mapped code (`errors:`), else 1011."""
    if not inspect.isasyncgenfunction(handler):
        http.log.error("websocket handler %s is not an async generator", handler.__name__)
        await connection.close(ws.INTERNAL, "the handler is not an async generator function")
        return
    takes_model = len(inspect.signature(handler).parameters) > 1
    messages = connection.messages()
    answers = handler(messages, model) if takes_model else handler(messages)
    try:
        async for answer in answers:
            try:
                sent = await connection.send(answer)
            except ValueError:
                http.log.error("websocket %s: an answer JSON cannot carry", connection.id)
                await connection.close(ws.INTERNAL, "the handler answered what JSON cannot carry")
                return
            if not sent:
                return
    except Exception as exc:
        mapped = http.settings_of(connection.websocket.app).mapped(exc)
        if mapped is not None:
            await connection.close(ws.MAPPED + mapped[0], mapped[1])
            return
        http.log.exception("websocket %s: the handler failed", connection.id)
        await connection.close(ws.INTERNAL, f"internal error (connection {connection.id})")
    finally:
        await answers.aclose()


class Generations:
    """A `generate` route's connection: its requests, one at a time. A request is over
    for the client once its last event is sent (`done`, `cancelled` or `error`): the next
    may come at once, while the last one's stream is still being closed."""

    def __init__(
        self, connection: ws.Connection, model: Model, max_tokens: int, max_chars: int
    ) -> None:
        self.connection = connection
        self.model = model
        self.max_tokens, self.max_chars = max_tokens, max_chars
        self.running: asyncio.Task[None] | None = None  # the request under way
        self.request_id = ""
        self.tasks: set[asyncio.Task[None]] = set()  # each request's, until it has closed

    async def run(self) -> None:
        try:
            async for message in self.connection.messages():
                await self.take(message)
        finally:
            await self.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def take(self, message: ws.Message) -> None:
        """One message from the client: a request (with an id of its own, which its
        answers carry), or a cancel."""
        rid = IDS.next()[0]
        if isinstance(message, bytes):
            await self.error(rid, "send each request as a JSON text message")
            return
        try:
            value = http.parse_body(message.encode("utf-8", "surrogatepass"))
        except RequestValidationError as exc:  # NaN, a lone surrogate: as over HTTP
            await self.error(rid, "invalid request", detail=details(exc.errors()))
            return
        if not isinstance(value, dict):  # NOT_PARSED too
            await self.error(rid, "a request is a JSON object")
            return
        kind = value.pop("type", "generate")
        if kind == "cancel":
            await self.cancel(say=True)
        elif kind != "generate":
            await self.error(rid, f"unknown type {kind!r}: generate or cancel")
        elif self.running is not None:
            await self.error(rid, "one request at a time: wait for its done, or send a cancel")
        else:
            self.request_id = rid
            self.connection.busy += 1
            task = asyncio.ensure_future(self.generation(value, rid))
            self.running = task
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            task.add_done_callback(self.over)

    def over(self, task: asyncio.Task[None] | None = None) -> None:
        """The request under way has ended, for the client (`task`: if it is that one)."""
        if self.running is not None and (task is None or self.running is task):
            self.running = None
            self.connection.busy -= 1

    async def generation(self, value: dict[str, Any], request_id: str) -> None:
        from endpointgen.runtime.tasks import Asked, GenerateRequest

        try:
            body = GenerateRequest.model_validate(value)
            asked = Asked(body, self.max_tokens, self.max_chars)
            pieces = await self.model.opened(asked, request_id)
        except (ValidationError, RequestValidationError) as exc:
            await self.error(request_id, "invalid request", True, detail=details(exc.errors()))
            return
        except HTTPException as exc:  # the model is not ready
            await self.error(request_id, str(exc.detail), True)
            return
        except Exception as exc:
            http.log.error("request %s: generation failed: %s", request_id, exc)
            await self.error(request_id, "generation failed", True)
            return
        async with aclosing(pieces):
            async for kind, piece in pieces:
                if kind == "token":
                    if not await self.connection.send({"event": "token", "text": piece}):
                        return
                elif kind == "done":
                    self.over()
                    await self.connection.send({"event": "done", **piece, "request_id": request_id})
                    return
                else:
                    await self.error(request_id, "generation failed", True)
                    return

    async def cancel(self, say: bool = False) -> None:
        """Stop the request under way: closing its pieces stops the model."""
        running = self.running
        if running is None:
            return  # none, or ended: a cancel may cross its last event
        self.over()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        if say:
            await self.connection.send({"event": "cancelled", "request_id": self.request_id})

    async def error(self, request_id: str, message: str, last: bool = False, **extra: Any) -> bool:
        """An error event; `last`: the request under way ends with it."""
        if last:
            self.over()
        body = http.error_body(request_id, message, **extra)
        return await self.connection.send({"event": "error", **body})


def details(errors: Sequence[Any]) -> list[dict[str, Any]]:
    """A validation's errors as a 422's `detail` lists them, each `loc` within the message."""
    found = []
    for error in errors:
        loc = list(error["loc"])
        found.append({"loc": loc[1:] if loc[:1] == ["body"] else loc, "msg": error["msg"],
                      "type": error["type"]})  # fmt: skip
    return found
