# Built by endpointgen 0.1.0 from ../../specs/webhooks.yaml.
# Edit the spec and rebuild (`endpointgen build`) rather than this file.
"""HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy webhooks.py`; serve locally with
`endpointgen serve`, or import `create_app` and run it with any ASGI server.
"""

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import time
import urllib.parse
import uuid
from typing import Annotated, Any

import modal
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

APP_NAME = "webhooks"
DESCRIPTION = "Signed webhooks from GitHub, Stripe and Slack"
MODEL = None
AUTH = {
    "mode": "none",
}
CORS = None
ROUTES = [
    {
        "path": "/webhook/github",
        "method": "POST",
        "action": "webhook",
        "summary": "webhook",
        "auth": "none",
        "rate_limit": {
            "scope": "app",
            "limit": 600,
            "seconds": 60,
            "key": "ip",
            "storage": "modal-dict",
        },
        "max_bytes": 1048576,
        "model": None,
        "webhook": {
            "provider": "github",
            "env": "GITHUB_WEBHOOK_SECRET",
            "tolerance": 300,
        },
        "params": [],
        "request": None,
    },
    {
        "path": "/webhook/stripe",
        "method": "POST",
        "action": "webhook",
        "summary": "webhook",
        "auth": "none",
        "rate_limit": {
            "scope": "app",
            "limit": 600,
            "seconds": 60,
            "key": "ip",
            "storage": "modal-dict",
        },
        "max_bytes": 1048576,
        "model": None,
        "webhook": {
            "provider": "stripe",
            "env": "STRIPE_WEBHOOK_SECRET",
            "tolerance": 300,
        },
        "params": [],
        "request": None,
    },
    {
        "path": "/webhook/slack",
        "method": "POST",
        "action": "webhook",
        "summary": "webhook",
        "auth": "none",
        "rate_limit": {
            "scope": "app",
            "limit": 600,
            "seconds": 60,
            "key": "ip",
            "storage": "modal-dict",
        },
        "max_bytes": 1048576,
        "model": None,
        "webhook": {
            "provider": "slack",
            "env": "SLACK_SIGNING_SECRET",
            "tolerance": 300,
        },
        "params": [],
        "request": None,
    },
    {
        "path": "/health",
        "method": "GET",
        "action": "health",
        "summary": "Readiness of the app and its model",
        "auth": "none",
        "rate_limit": None,
        "max_bytes": 1048576,
        "model": None,
        "params": [],
        "request": None,
    },
]
ERRORS = {}

Route = dict[str, Any]
log = logging.getLogger(APP_NAME)


# --- HTTP plumbing: request ids, body limits, JSON errors, one log line per request ---

UNROUTED_MAX_BYTES = 1024 * 1024  # bodies sent to no route are bounded too


def route_pattern(route: Route) -> re.Pattern[str]:
    path = route["path"] + ("/{rest:path}" if route["action"] == "openai" else "")
    return compile_path(path)[0]


# (method, or None for any; path pattern; max_bytes), in the router's order.
BODY_LIMITS = [
    (None if r["action"] == "openai" else r["method"], route_pattern(r), r["max_bytes"])
    for r in ROUTES
]
NO_BODY = {"GET", "HEAD", "OPTIONS"}


def body_limit(method: str, path: str) -> int:
    """The max_bytes of the route that will answer, matched as the router matches."""
    for route_method, pattern, limit in BODY_LIMITS:
        if route_method in (None, method) and pattern.match(path):
            return int(limit)
    return UNROUTED_MAX_BYTES


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class ErrorBody(BaseModel):
    error: str
    request_id: str
    detail: list[dict[str, Any]] | None = None


def mapped_error(exc: Exception) -> tuple[int, str] | None:
    """The spec's `errors:` entry for this exception or one of its base classes."""
    for kind in type(exc).__mro__:
        if kind.__name__ in ERRORS:
            return ERRORS[kind.__name__]["status"], ERRORS[kind.__name__]["message"]
    return None


def error_body(request_id: str, error: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, **extra, "request_id": request_id}


def request_id_of(request: Request) -> str:
    return getattr(request.state, "request_id", "")


class RequestContext:
    """Outermost but for CORS, so every answer, errors included, passes through here.

    Gives each request an id (the client's `X-Request-ID` when it is sane), refuses
    bodies over the route's `max_bytes` with 413 before reading them whole, turns any
    exception into a 500 without a stack trace, and logs one JSON line per request.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given, size = "", b""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
            elif name == b"content-length":
                size = value
        sane = 0 < len(given) <= 128 and given.isprintable()
        request_id = given if sane else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        status = [0]

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                extra = [(b"x-request-id", request_id.encode("latin-1"))]
                for name, value in state.get("response_headers", {}).items():
                    extra.append((name.encode("latin-1"), value.encode("latin-1")))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        limit = body_limit(scope["method"], scope["path"])
        received = [0]

        async def receive_limited() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > limit:
                    raise BodyTooLarge
            return message

        try:
            if size.isdigit() and int(size) > limit:
                raise BodyTooLarge
            reader = receive if scope["method"] in NO_BODY else receive_limited
            await self.app(scope, reader, send_with_id)
        except BodyTooLarge:
            if not status[0]:
                body = error_body(request_id, "request body too large")
                answer = error_response(scope["path"], 413, body)
                await answer(scope, receive, send_with_id)
        except Exception as exc:
            mapped = mapped_error(exc)
            if mapped is None:
                log.exception("request %s failed", request_id)
            if not status[0]:
                code, message = mapped or (500, "internal server error")
                body = error_body(request_id, message)
                answer = error_response(scope["path"], code, body)
                await answer(scope, receive, send_with_id)
        finally:
            line = {
                "request_id": request_id,
                "method": scope["method"],
                "path": scope["path"],
                "status": status[0],
                "latency_ms": round((time.perf_counter() - started) * 1000, 2),
            }
            log.info(json.dumps(line))


def error_response(path: str, status: int, body: Any, headers: Any = None) -> Any:
    return JSONResponse(body, status, headers=headers)


async def http_error(request: Request, exc: Any) -> JSONResponse:
    body = error_body(request_id_of(request), str(exc.detail))
    headers = getattr(exc, "headers", None)
    return error_response(request.url.path, exc.status_code, body, headers)


async def validation_error(request: Request, exc: Any) -> JSONResponse:
    detail = [
        {"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]}
        for e in exc.errors()
    ]
    body = error_body(request_id_of(request), "invalid request", detail=detail)
    return error_response(request.url.path, 422, body)


def reject(field: str, message: str) -> RequestValidationError:
    """A 422 for a rule the request schema cannot state (a route's own ceiling)."""
    error = {"loc": ("body", field), "msg": message, "type": "value_error"}
    return RequestValidationError([error])


def configure_logging() -> None:
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)


# --- Rate limits: fixed windows aligned to the clock, so every container agrees ---


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
        """(allowed, remaining, seconds until the window resets)."""
        window = int(now // self.seconds)
        if window != self.window:
            self.window, self.counts = window, {}
        reset = seconds_left(window, self.seconds, now)
        used = self.counts.get(key, 0)
        if used >= self.limit:
            return False, 0, reset
        self.counts[key] = used + 1
        return True, self.limit - used - 1, reset


def seconds_left(window: int, seconds: int, now: float) -> int:
    return max(1, int((window + 1) * seconds - now + 0.999))


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


def new_window(rule: dict[str, Any]) -> Any:
    limit, seconds = rule["limit"], rule["seconds"]
    if rule["storage"] == "modal-dict":
        if not modal.is_local():
            name = f"{APP_NAME}-rate-limits"
            store = modal.Dict.from_name(name, create_if_missing=True)
            return DictWindow(store, rule["scope"], limit, seconds)
        log.info("outside Modal, modal-dict rate limits are counted in memory")
    return FixedWindow(limit, seconds)


def client_address(request: Request) -> str:
    # The ASGI client address: Modal sets it to the caller's address. X-Forwarded-For
    # is never trusted, since any client can write it.
    return request.client.host if request.client else "unknown"


async def no_auth() -> None:
    return None


def make_rate_limit(rule: dict[str, Any], windows: dict[str, Any], auth: Any) -> Any:
    """A dependency that counts after `auth` has run, so `key: api_key` has its key."""
    if rule["scope"] not in windows:
        windows[rule["scope"]] = new_window(rule)
    window = windows[rule["scope"]]

    async def rate_limit(request: Request, _: Annotated[None, Depends(auth)]) -> None:
        if rule["key"] == "api_key":
            who = request.state.credential
        else:
            who = hashlib.sha256(client_address(request).encode()).hexdigest()
        if window is None:
            raise HTTPException(503, "rate limit storage is not configured")
        try:
            allowed, remaining, reset = await window.hit(who, time.time())
        except Exception as exc:
            log.error("rate limit storage failed: %s", exc)
            raise HTTPException(503, "rate limit storage unavailable") from None
        headers = {
            "RateLimit-Limit": str(rule["limit"]),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(reset),
        }
        if not allowed:
            headers["Retry-After"] = str(reset)
            raise HTTPException(429, "rate limit exceeded", headers)
        request.state.response_headers = headers

    return rate_limit


# --- Routes ---


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


class TextStream(StreamingResponse):
    media_type = "text/plain"


def response_class(route: Route) -> Any:
    """How the success answer is documented: JSON unless the route streams or sends text."""
    kind = route.get("response_type")
    if route.get("stream") or kind == "sse":
        return EventStream
    if kind == "stream":
        return TextStream
    if kind == "text":
        return PlainTextResponse
    if route["action"] == "file":
        return FileResponse
    return JSONResponse


def add_route(web: FastAPI, route: Route, handler: Any, **options: Any) -> None:
    options.setdefault("response_class", response_class(route))
    web.add_api_route(
        route["path"],
        handler,
        methods=[route["method"]],
        summary=route["summary"],
        responses=documented_responses(route),
        **options,
    )


# One Server-Sent Event, as OpenAPI 3.1 tools read a text/event-stream schema.
SSE_EVENT = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    "required": ["data"],
}


def documented_responses(route: Route) -> dict[int | str, Any]:
    """The answers besides success that a client should expect, for /openapi.json."""

    body = ErrorBody

    def error(description: str, **extra: Any) -> dict[str, Any]:
        return {"model": body, "description": description, **extra}

    def header(description: str) -> dict[str, Any]:
        return {"description": description, "schema": {"type": "integer"}}

    responses: dict[int | str, Any] = {500: error("Internal error; no details leak")}
    if route["method"] in ("POST", "PUT", "PATCH"):
        responses[400] = error("The body could not be parsed")
        responses[413] = error("Request body over the route's max_bytes")
    completions = route["path"].endswith("completions")  # OpenAI's, with stream: true
    streams = route.get("stream") or route.get("response_type") == "sse"
    if streams or (route["action"] == "openai" and completions):
        responses[200] = {"content": {"text/event-stream": {"schema": SSE_EVENT}}}
    if route["action"] == "upload":
        responses[415] = error("A media type the route does not accept")
    for mapped in ERRORS.values():  # the spec's `errors:` answers
        responses.setdefault(mapped["status"], error(mapped["message"]))
    if route["action"] == "file":
        responses[404] = error("No such file in the folder")
        kind = route["file"]["media_type"] or "application/octet-stream"
        binary = {"schema": {"type": "string", "format": "binary"}}
        responses[200] = {"content": {kind: binary}}
    if route["auth"] != "none" or route["action"] == "webhook":
        responses[401] = error("Missing or invalid credentials")
    if route.get("model") is not None:
        responses[503] = error("The model is loading, or failed to load")
    if route["rate_limit"] is not None:
        limits = {
            "RateLimit-Limit": header("Requests allowed per window"),
            "RateLimit-Remaining": header("Requests left in this window"),
            "RateLimit-Reset": header("Seconds until the window resets"),
        }
        responses[200] = {**responses.get(200, {}), "headers": limits}
        retry = {"Retry-After": header("Seconds to wait"), **limits}
        responses[429] = error("Rate limit exceeded", headers=retry)
    return responses


def create_app() -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    configure_logging()
    web = FastAPI(title=APP_NAME, description=DESCRIPTION)
    web.add_exception_handler(HTTPException, http_error)
    web.add_exception_handler(RequestValidationError, validation_error)
    windows: dict[str, FixedWindow] = {}

    for route in ROUTES:
        # Run in this order. A limit by client address counts before auth, so guessing
        # keys is throttled too; a limit by credential counts after auth has found it.
        guards = []
        rule = route["rate_limit"]
        if rule is not None and rule["key"] == "ip":
            guards.append(Depends(make_rate_limit(rule, windows, no_auth)))
        if rule is not None and rule["key"] == "api_key":
            guards.append(Depends(make_rate_limit(rule, windows, no_auth)))
        ACTIONS[route["action"]](web, route, None, guards)

    web.add_middleware(RequestContext)
    return web


def add_health(web: FastAPI, route: Route, state: Any, guards: list[Any]) -> None:
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    add_route(web, route, health, dependencies=guards)


# --- Webhooks: the signature is checked on the raw bytes, in constant time, first ---


class BadSignature(Exception):
    pass


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def hex_hmac(secret: bytes, payload: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret, payload, algorithm).hexdigest()


def fresh(timestamp: str, tolerance: int) -> int:
    """The timestamp as a number, if it is within `tolerance` seconds of now."""
    digits = timestamp.isascii() and timestamp.isdigit()  # "²" is a digit to isdigit()
    if not digits or abs(time.time() - int(timestamp)) > tolerance:
        raise BadSignature("timestamp missing or outside the tolerance window")
    return int(timestamp)


def verify_github(key: bytes, body: bytes, headers: Any, rule: Route) -> None:
    given = headers.get("x-hub-signature-256", "")
    if not same(given, "sha256=" + hex_hmac(key, body)):
        raise BadSignature("signature mismatch")


def verify_stripe(key: bytes, body: bytes, headers: Any, rule: Route) -> None:
    header = headers.get("stripe-signature", "")
    pairs = [part.strip().split("=", 1) for part in header.split(",")]
    timestamps = [p[1] for p in pairs if len(p) == 2 and p[0] == "t"]
    signatures = [p[1] for p in pairs if len(p) == 2 and p[0] == "v1"]
    if len(timestamps) != 1 or not signatures:
        raise BadSignature("malformed Stripe-Signature header")
    stamp = fresh(timestamps[0], rule["tolerance"])
    expected = hex_hmac(key, f"{stamp}.".encode() + body)
    if not any([same(signature, expected) for signature in signatures]):
        raise BadSignature("signature mismatch")


def verify_slack(key: bytes, body: bytes, headers: Any, rule: Route) -> None:
    stamp = headers.get("x-slack-request-timestamp", "")
    fresh(stamp, rule["tolerance"])
    expected = "v0=" + hex_hmac(key, b"v0:" + stamp.encode() + b":" + body)
    if not same(headers.get("x-slack-signature", ""), expected):
        raise BadSignature("signature mismatch")


def verify_generic(key: bytes, body: bytes, headers: Any, rule: Route) -> None:
    signature = rule["signature"]
    given = headers.get(signature["header"], "")
    if not given.startswith(signature["prefix"]):
        raise BadSignature("signature header missing or without its prefix")
    payload = body
    if signature["timestamp_header"]:
        stamp = headers.get(signature["timestamp_header"], "")
        payload = str(fresh(stamp, rule["tolerance"])).encode() + b"." + body
    digest = hmac.new(key, payload, signature["algorithm"]).digest()
    if signature["encoding"] == "hex":
        expected = digest.hex()
    else:
        expected = base64.b64encode(digest).decode()
    if not same(given[len(signature["prefix"]) :], expected):
        raise BadSignature("signature mismatch")


VERIFIERS = {
    "github": verify_github,
    "stripe": verify_stripe,
    "slack": verify_slack,
    "generic": verify_generic,
}


def event_of(provider: str, headers: Any, payload: Any) -> str | None:
    if provider == "github":
        return headers.get("x-github-event")
    if isinstance(payload, dict):
        value = payload.get("type") or payload.get("command")
        return str(value) if value is not None else None
    return None


def parse_payload(body: bytes, content_type: str) -> Any:
    if content_type.startswith("application/x-www-form-urlencoded"):
        return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None


def add_webhook(web: FastAPI, route: Route, state: Any, guards: list[Any]) -> None:
    rule = route["webhook"]
    verify = VERIFIERS[rule["provider"]]
    secret = os.environ.get(rule["env"], "").encode()
    if not secret:
        log.error("%s is empty: %s refuses every delivery", rule["env"], route["path"])

    async def webhook(request: Request) -> JSONResponse:
        body = await request.body()
        try:
            if not secret:
                raise BadSignature("no signing secret configured")
            verify(secret, body, request.headers, rule)
        except BadSignature as exc:
            log.warning("webhook %s refused: %s", route["path"], exc)
            raise HTTPException(401, "invalid signature") from None
        payload = parse_payload(body, request.headers.get("content-type", ""))
        if isinstance(payload, dict) and payload.get("type") == "url_verification":
            # Slack's handshake when the URL is first registered.
            return JSONResponse({"challenge": payload.get("challenge")})
        event = event_of(rule["provider"], request.headers, payload)
        log.info(
            json.dumps(
                {
                    "request_id": request_id_of(request),
                    "webhook": rule["provider"],
                    "event": event,
                    "bytes": len(body),
                }
            )
        )
        return JSONResponse({"status": "received", "event": event})

    add_route(web, route, webhook, dependencies=guards)


ACTIONS = {
    "health": add_health,
    "webhook": add_webhook,
}


# --- Modal: the image, the settings from the spec, and the class that serves the app ---

image = modal.Image.debian_slim(python_version="3.11").uv_pip_install(
    *[
        "fastapi[standard]==0.165.0",
        "pydantic==2.14.4",
    ]
)
SECRETS = [
    "github-webhook",
    "slack-signing",
    "stripe-webhook",
]

app = modal.App(APP_NAME, image=image)


@app.cls(
    secrets=[modal.Secret.from_name(name) for name in SECRETS],
)
class Server:
    @modal.enter()
    def load(self) -> None:
        configure_logging()

    @modal.asgi_app()
    def web(self) -> FastAPI:
        return create_app()
