"""`RequestContext`, the outermost layer of every app: request ids, CORS, body limits,
a 500 for any exception, and the request's access-log line."""

from __future__ import annotations

import json
from time import perf_counter

from fastapi import FastAPI
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from endpointgen.runtime.http.accesslog import ACCESS_LOG
from endpointgen.runtime.http.body import NotJson
from endpointgen.runtime.http.errors import error_body
from endpointgen.runtime.http.guards import DEFAULT_MAX_BYTES, body_limit
from endpointgen.runtime.http.ids import IDS
from endpointgen.runtime.http.logs import log
from endpointgen.runtime.http.settings import settings_of

_quote = json.encoder.encode_basestring


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class RequestContext:
    """The outermost layer, so every answer, errors included, passes through here.

    One pure-ASGI layer does all of the per-request plumbing:
    - answers CORS preflights and adds the CORS headers (`CorsPolicy`);
    - gives each request its own id (`X-Request-ID`); a client's own id, sent as
      `X-Client-Request-ID` or `X-Request-ID`, is kept beside it and echoed back as
      `X-Client-Request-ID`;
    - refuses bodies over the route's `max_bytes` with 413 before reading them whole;
    - turns any exception into a 500 without a stack trace;
    - counts the request for `/metrics` when the app has them;
    - writes one JSON line per request (`AccessLog`).
    One layer rather than several: each costs every request a coroutine and a wrapped
    `send`.
    """

    def __init__(self, app: ASGIApp, web: FastAPI) -> None:
        self.app = app
        self.settings = settings_of(web)
        self.app_name = _quote(web.title)
        # Made when the first request arrives, so every route is there: (route, max_bytes).
        self.routes = [(route, body_limit(route)) for route in web.router.routes]

    def route_path(self, scope: Scope) -> str:
        """The path template of the route that answered ("" when none did): the router
        leaves it in the scope; FastAPI's own /docs and /openapi.json are looked up."""
        route = scope.get("route")
        if route is not None:
            return str(getattr(route, "path", ""))
        for candidate, _ in self.routes:
            if candidate.matches(scope)[0] == Match.FULL:
                return str(getattr(candidate, "path", ""))
        return ""

    def body_limit(self, scope: Scope) -> int:
        """The max_bytes of the route that will answer, matched as the router matches."""
        for route, limit in self.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return limit
        return DEFAULT_MAX_BYTES

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        given = origin = None
        size: bytes | None = None  # the Content-Length, b"" for a chunked body
        preflight = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                size = value
            elif name == b"transfer-encoding":
                size = size or b""
            elif name == b"x-request-id" or name == b"x-client-request-id":
                if given is None or name == b"x-client-request-id":
                    given = value
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"access-control-request-method":
                preflight = True
        # Our own id always, so no client can pick another request's; the client's, when
        # sane, is kept beside it and echoed back.
        rid, rid_bytes = IDS.next()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        ids = [(b"x-request-id", rid_bytes)]
        client_id = ""
        if given is not None:
            client_id = self.client_id(given)
            if client_id:
                state["client_request_id"] = client_id
                ids.append((b"x-client-request-id", given))
        status = 0
        method = scope["method"]
        cors = self.settings.cors
        if cors is not None and origin is not None and preflight and method == "OPTIONS":
            await cors.preflight_response(Headers(scope=scope))(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", ()), *ids]
                extra = state.get("response_headers")
                if extra:
                    headers.extend(extra)
                if cors is not None:
                    cors.add(origin, headers)
                message["headers"] = headers  # a message is made for each send
            await send(message)

        try:
            if size is not None:  # a body, bounded for every method, GET's too
                receive = self.limited(receive, size, self.body_limit(scope))
            await self.app(scope, receive, send_with_id)
        except BodyTooLarge:
            if not status:
                body = error_body(rid, "request body too large")
                answer = self.settings.answer(scope["path"], 413, body)
                await answer(scope, receive, send_with_id)
        except Exception as exc:
            mapped = self.settings.mapped(exc)
            if mapped is None:
                client = f" (client id {client_id})" if client_id else ""
                if isinstance(exc, NotJson):  # an answer that cannot be written: say so
                    log.error("request %s%s failed: %s", rid, client, exc)
                else:
                    log.exception("request %s%s failed", rid, client)
            if not status:
                code, message = mapped or (500, "internal server error")
                answer = self.settings.answer(scope["path"], code, error_body(rid, message))
                await answer(scope, receive, send_with_id)
        finally:
            ended = perf_counter()
            metrics = self.settings.metrics
            route = "" if metrics is None else self.route_path(scope)
            ACCESS_LOG.add(
                (ended, self.app_name, rid, client_id, method, scope["path"], status,
                 ended - started, metrics, route)
            )  # fmt: skip

    @staticmethod
    def client_id(given: bytes) -> str:
        """A client's own request id, when sane: short and printable."""
        if len(given) <= 128:
            text = given.decode("latin-1")
            if text.isprintable():
                return text
        return ""

    @staticmethod
    def limited(receive: Receive, size: bytes, limit: int) -> Receive:
        """`receive`, refusing a body over `limit` bytes: at once when its Content-Length
        says so, else as soon as the bytes received pass it (a chunked body)."""
        if size.isdigit() and int(size) > limit:
            raise BodyTooLarge
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge
            return message

        return receive_limited
