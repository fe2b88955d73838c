"""HTTP plumbing every app shares: request ids, JSON errors, body limits, one log line per
request, CORS, and the error answers each route documents in /openapi.json."""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import logging
import os
import sys
import time
import weakref
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "STRICT",
    "Binary",
    "Cors",
    "ErrorBody",
    "ErrorFormat",
    "EventStream",
    "FileResponse",
    "Guards",
    "JSONResponse",
    "MaxBytes",
    "PlainTextResponse",
    "Response",
    "StreamingResponse",
    "Text",
    "TextStream",
    "app",
    "binary",
    "guards",
    "reject",
    "request_id",
    "sse",
]

log = logging.getLogger("endpointgen")
G = TypeVar("G")

# Bodies are checked as their JSON Schema says: no `true` for a number, no "1" for an
# int, no keys the schema does not name, and no NaN or infinite number.
# NaN, Infinity and 1e400 are no numbers a route can use (and JSON has none).
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
DEFAULT_MAX_BYTES = 1024 * 1024  # a route's body limit unless it sets max_bytes
# Headers a browser lets a cross-origin caller read.
EXPOSED = [
    *("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"),
    *("X-Request-ID", "X-Client-Request-ID"),
    "X-Seed",  # the seed of an image a text-to-image route made
]


class ErrorBody(BaseModel):
    error: str
    request_id: str
    detail: list[dict[str, Any]] | None = None


class Text(PlainTextResponse):
    """A plain-text answer (documented as text/plain)."""


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


class TextStream(StreamingResponse):
    media_type = "text/plain"


class Binary(Response):
    """Bytes of one media type (documented as a binary string of that type)."""

    media_type = "application/octet-stream"


_BINARY: dict[str, type[Binary]] = {}


def binary(media_type: str) -> type[Binary]:
    """`response_class=` for a route that answers bytes of `media_type`."""
    found = _BINARY.get(media_type)
    if found is None:
        found = _BINARY[media_type] = type("Binary", (Binary,), {"media_type": media_type})
    return found


@dataclass(frozen=True)
class Cors:
    """Who may call from a browser. Preflights never need auth; errors carry the headers too."""

    origins: list[str]
    methods: list[str] = field(default_factory=lambda: ["GET", "POST"])
    headers: list[str] = field(default_factory=lambda: ["Content-Type", "X-Request-ID"])
    credentials: bool = False
    max_age: int = 600


class MaxBytes:
    """A route's body limit. Listed in its guards, so a reader sees it on the route;
    enforced by the app's middleware before the body is read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, request: Request) -> None:
        return None


# A check refuses a request by raising. One that needs no I/O (a key, an in-memory rate
# limit) is a plain function and costs no coroutine; one that waits (Redis, a Dict)
# returns an awaitable.
Check = Callable[[Request], Awaitable[None] | None]


async def run_check(check: Check, request: Request) -> None:
    pending = check(request)
    if pending is not None:
        await pending


class Guards:
    """A route's checks, in order: auth, rate limits, the model being ready. Each is
    `(request) -> None` or `async (request) -> None` and refuses by raising. Listed in
    the route's `dependencies=` (`http.guards(...)`), where a reader looks for them;
    `GuardedRoute` takes them out and runs them itself, before the body is read."""

    def __init__(self, *checks: Check) -> None:
        self.checks = checks

    async def __call__(self, request: Request) -> None:
        for check in self.checks:
            await run_check(check, request)


def guards(*checks: Check) -> list[Any]:
    """`dependencies=` for a route guarded by `checks`, in the order given."""
    return [Depends(Guards(*checks))]


class GuardedRoute(APIRoute):
    """A FastAPI route whose `http.guards(...)` run before FastAPI reads the body and
    solves dependencies: a refused request costs no body parsing and no dependency
    solving, and a caller without credentials learns nothing from a malformed body (401,
    not 422). FastAPI would solve `Guards` as a dependency after reading the body, at
    several microseconds a request; here they are a plain loop."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        given = list(options.pop("dependencies", None) or ())
        found = [d.dependency for d in given if isinstance(d.dependency, Guards)]
        self.checks: tuple[Check, ...] = tuple(c for g in found for c in g.checks)
        rest = [d for d in given if not isinstance(d.dependency, Guards)]
        super().__init__(path, endpoint, dependencies=rest, **options)
        run = tuple(c for c in self.checks if not isinstance(c, MaxBytes))  # RequestContext's
        if run:
            inner = self.app

            async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
                request = Request(scope, receive)
                for check in run:
                    pending = check(request)
                    if pending is not None:
                        await pending
                await inner(scope, receive, send)

            self.app = guarded

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind a stricter JSON parse of the body (`parse_body`)."""
        handler = super().get_route_handler()
        if self.body_field is None or _takes_a_form(self):
            return handler

        async def parsed(request: Request) -> Response:
            try:
                body = await request.body()
            except HTTPException:  # too large: 413
                raise
            except Exception:  # the client left: FastAPI answers as it does
                return await handler(request)
            if body:
                value = parse_body(body)
                if value is not NOT_PARSED:
                    request._json = value  # FastAPI's `request.json()` answers this one
            return await handler(request)

        return parsed


class NotJson(Exception):
    """A value that JSON cannot carry: NaN, an infinite number, a lone surrogate."""


NOT_PARSED = object()  # a body that is not JSON at all: FastAPI's own parse says why


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if value - value != 0:  # 1e400: infinite once parsed
        raise NotJson("a number too large for a float (it would be infinite)")
    return value


def parse_body(body: bytes) -> Any:
    """A JSON body, parsed as FastAPI parses it but refusing (422) what JSON cannot carry
    and Python's parser lets through: NaN, Infinity, a number too large to be finite, a
    string with a lone surrogate (`"\\ud800"`). Each would otherwise reach a route as a
    value that its answer, or a job's stored input, cannot be written as JSON. A body
    that does not parse at all gives `NOT_PARSED`."""
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float)
    except NotJson as exc:
        error: dict[str, Any] = {"loc": ("body",), "msg": str(exc), "type": "value_error"}
        raise RequestValidationError([error]) from None
    except (ValueError, RecursionError):
        return NOT_PARSED
    # A lone surrogate comes from a `\uD8xx`-`\uDFxx` escape or from its UTF-8-like
    # bytes (ED A0-BF ..), which the parser decodes as they are.
    if b"\\ud" in body or b"\\uD" in body or b"\xed" in body:
        found = unfit(value)
        if found is not None:
            where, what = found
            error = {"loc": ("body", *where), "msg": what, "type": "value_error"}
            raise RequestValidationError([error])
    return value


def unfit(value: Any) -> tuple[list[str | int], str] | None:
    """Where in `value` (keys and indexes) the first thing JSON cannot carry sits, and what
    it is: NaN, an infinite number, or a string holding a lone surrogate; None when none."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _encodes(item):
                return where, "a string with a lone surrogate, which is not text"
        elif isinstance(item, float):
            if item != item:
                return where, "NaN, which is not a JSON number"
            if item - item != 0:
                return where, "an infinite number, which is not a JSON number"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and not key.isascii() and not _encodes(key):
                    return where, "a key with a lone surrogate, which is not text"
                stack.append((inner, [*where, key]))
        elif isinstance(item, list | tuple):
            stack.extend((inner, [*where, i]) for i, inner in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def checks_of(route: BaseRoute) -> list[Any]:
    """A route's checks, from its `http.guards(...)` and any other dependency."""
    found: list[Any] = list(getattr(route, "checks", ()))
    for each in getattr(route, "dependencies", ()):
        dependency = each.dependency
        found.extend(dependency.checks if isinstance(dependency, Guards) else [dependency])
    return found


class BodyTooLarge(HTTPException):
    def __init__(self) -> None:
        super().__init__(413, "request body too large")


@dataclass(frozen=True)
class ErrorFormat:
    """Errors in another shape than ErrorBody (OpenAI's): how to write one, its schema."""

    write: Callable[[int, str, str | None], JSONResponse]  # status, message, param
    schema: type[BaseModel]


@dataclass
class Settings:
    """What the middleware and the error handlers read, kept on `app.state.endpointgen`."""

    errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    formats: dict[str, ErrorFormat] = field(default_factory=dict)  # by path prefix
    metrics: Any = None  # a `metrics.Metrics` when the app serves /metrics
    cors: CorsPolicy | None = None

    def error_format(self, path: str) -> ErrorFormat | None:
        for prefix, format in self.formats.items():
            if path == prefix or path.startswith(prefix + "/"):
                return format
        return None

    def answer(self, path: str, status: int, body: dict[str, Any], headers: Any = None) -> Any:
        special = self.error_format(path)
        if special is not None:
            # OpenAI answers a malformed request with 400, and its clients expect that; its
            # message says what is wrong, and `param` where.
            message, param = str(body["error"]), None
            if body.get("detail"):
                first = body["detail"][0]
                message, param = str(first["msg"]), str(first["loc"][-1])
            response = special.write(400 if status == 422 else status, message, param)
            response.headers.update(headers or {})
            return response
        return JSONResponse(body, status, headers=headers)

    def mapped(self, exc: Exception) -> tuple[int, str] | None:
        """The spec's `errors:` entry for this exception or one of its base classes."""
        for kind in type(exc).__mro__:
            if kind.__name__ in self.errors:
                return self.errors[kind.__name__]
        return None


# Layers FastAPI puts outside an app's own middleware, which `RequestContext` makes
# redundant: it turns every exception into a 500 itself (ServerErrorMiddleware), so none
# reaches a layer outside it (ExceptionTelemetryMiddleware), and it bounds every body by
# its route's limit (AppBodyLimitMiddleware, unset here). Each would cost every request
# a coroutine, and some a wrapped `send`.
REDUNDANT = frozenset(
    {"ServerErrorMiddleware", "ExceptionTelemetryMiddleware", "AppBodyLimitMiddleware"}
)


class App(FastAPI):
    """FastAPI with `RequestContext` as its outermost layer. Traced, FastAPI's own stack
    stays whole: OpenTelemetry's instrumentation takes it apart and rebuilds it."""

    lean = True

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        while self.lean and type(stack).__name__ in REDUNDANT and hasattr(stack, "app"):
            stack = stack.app
        return stack


def settings_of(web: Any) -> Settings:
    found: Settings = web.state.endpointgen
    return found


def app(
    title: str,
    description: str = "",
    *,
    cors: Cors | None = None,
    errors: Mapping[str, tuple[int, str]] | None = None,
    formats: Mapping[str, ErrorFormat] | None = None,
    metrics: bool = False,
    docs: Check | str = "public",
    tracing: bool = False,
) -> FastAPI:
    """A FastAPI app with endpointgen's plumbing; the built module adds its routes to it.

    `errors` maps exception class names to (status, message): a handler's exception of
    that class (or a subclass) answers so, instead of a 500. `formats` gives the paths
    under a prefix another error shape (`{"/v1": openai.ERRORS}`). `metrics`: count each
    request for `/metrics` (the module adds the route). `docs`: `/docs`, `/redoc` and
    `/openapi.json` for anyone (`"public"`), for no one (`"off"`), or behind a check (the
    app's auth), which each of the three then runs first. `tracing`: OpenTelemetry spans
    for every request (`runtime.tracing`), outside every other layer.
    """
    configure_logging()
    if docs not in ("public", "off") and not callable(docs):
        raise ValueError(f"docs must be 'public', 'off' or a check, not {docs!r}")
    public = docs == "public"
    web = App(
        title=title,
        description=description,
        openapi_url="/openapi.json" if public else None,
        docs_url="/docs" if public else None,
        redoc_url="/redoc" if public else None,
    )
    web.router.route_class = GuardedRoute
    web.state.endpointgen = Settings(dict(errors or {}), dict(formats or {}))
    web.add_exception_handler(HTTPException, http_error)
    web.add_exception_handler(RequestValidationError, validation_error)
    if cors is not None:
        web.state.endpointgen.cors = CorsPolicy(cors)
    if metrics:
        from endpointgen.runtime.metrics import METRICS

        web.state.endpointgen.metrics = METRICS
    web.add_middleware(RequestContext, web=web)
    web.openapi = lambda: document(web)  # type: ignore[method-assign]
    if callable(docs):
        guarded_docs(web, docs)
    if tracing:
        from endpointgen.runtime.tracing import instrument

        web.lean = False
        instrument(web, title)
    return web


def guarded_docs(web: FastAPI, check: Check) -> None:
    """FastAPI's three documentation pages, each behind `check`. A browser sends no
    credential when Swagger UI fetches /openapi.json: fetch it with one (curl, a client
    generator), or serve the pages public."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    # Starlette routes, as FastAPI's own docs routes are: cheaper for the router to pass
    # over on every other request than FastAPI routes.
    async def openapi(request: Request) -> Response:
        await run_check(check, request)
        return JSONResponse(web.openapi())

    async def swagger(request: Request) -> Response:
        await run_check(check, request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{web.title} - docs")

    async def redoc(request: Request) -> Response:
        await run_check(check, request)
        return get_redoc_html(openapi_url="/openapi.json", title=f"{web.title} - ReDoc")

    for path, page in (("/openapi.json", openapi), ("/docs", swagger), ("/redoc", redoc)):
        web.add_route(path, page, include_in_schema=False)


def error_body(request_id: str, error: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, **extra, "request_id": request_id}


VOLUMES = "/volumes/"  # where a spec's Modal Volumes are mounted in its containers


def on_this_machine(path: str) -> str:
    """A path on a mounted Volume, as this machine has it: `endpointgen serve --volume
    NAME=DIR` (ENDPOINTGEN_VOLUME_<NAME>) says where a Volume's files are here. Unchanged
    in a Modal container, or for a Volume nobody mapped."""
    if not path.startswith(VOLUMES):
        return path
    name, _, rest = path.removeprefix(VOLUMES).partition("/")
    folder = os.environ.get(f"ENDPOINTGEN_VOLUME_{name}")
    return path if folder is None else str(Path(folder, rest))


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", ""))


# Set while a request is only checked (a job's submit): its route's code runs its checks,
# then stops where model or handler work would start, by raising `Checked` there.
CHECKING: ContextVar[bool] = ContextVar("endpointgen_checking", default=False)


class Checked(Exception):
    """Raised where work would start while `CHECKING` is set: the request passed every
    check before it."""


def starting_work() -> None:
    """Called where a model or a handler is about to run."""
    if CHECKING.get():
        raise Checked


async def check(work: Callable[..., Awaitable[Any]], values: Mapping[str, Any]) -> None:
    """Run `work(**values)` up to where its model or handler work would start, so that
    whatever it would refuse (a route's ceilings: 422) is raised now."""
    token = CHECKING.set(True)
    try:
        await work(**values)
    except Checked:
        pass
    finally:
        CHECKING.reset(token)


class Rejected(RequestValidationError):
    """A request that fails a rule its schema cannot state (a route's ceiling, a model's
    context or chat template): the route's 422, with the message in `detail`. A model
    class in another container hands it to the web tier as a value, so it pickles as
    (field, message)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__([{"loc": ("body", field), "msg": message, "type": "value_error"}])
        self.field, self.message = field, message

    def __reduce__(self) -> tuple[type[Rejected], tuple[str, str]]:
        return Rejected, (self.field, self.message)


def reject(field: str, message: str) -> Rejected:
    """A 422 for a rule the request schema cannot state (a route's own ceiling)."""
    return Rejected(field, message)


UNPARSED = "There was an error parsing the body"  # FastAPI's 400 for undecodable bytes


async def http_error(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == UNPARSED:
        # A body that cannot be decoded is an invalid body like any other: the 422 that
        # a malformed JSON body gets (`json_invalid`), as /openapi.json documents.
        error = {"loc": ["body"], "msg": "the body could not be decoded", "type": "json_invalid"}
        return await validation_error(request, RequestValidationError([error]))
    body = error_body(request_id(request), str(exc.detail))
    headers = getattr(exc, "headers", None)
    return settings_of(request.app).answer(request.url.path, exc.status_code, body, headers)


async def validation_error(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, RequestValidationError)
    # The route's guards have passed by now (`GuardedRoute` runs them first).
    detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    body = error_body(request_id(request), "invalid request", detail=detail)
    return settings_of(request.app).answer(request.url.path, 422, body)


class JsonLines(logging.Formatter):
    """Each record as one JSON object: `time`, `level`, `logger`, `message` (and
    `traceback` when there is one), so log tools parse whole lines."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if isinstance(record.msg, dict):  # fields of their own (a webhook's delivery)
            line.update(record.msg)
        else:
            line["message"] = record.getMessage()
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging() -> None:
    if not log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(JsonLines())
        log.addHandler(handler)
    log.setLevel(logging.INFO)


VARY_ORIGIN = (b"vary", b"Origin")


class CorsPolicy(CORSMiddleware):
    """Starlette's CORS rules, applied inside `RequestContext` rather than as one more
    layer: its preflight answer as it is; on other answers the same headers, added as
    raw pairs. Every answer passes through, errors included."""

    def __init__(self, cors: Cors) -> None:
        super().__init__(
            app=None,  # type: ignore[arg-type]  # never called as a layer
            allow_origins=cors.origins,
            allow_methods=cors.methods,
            allow_headers=cors.headers,
            allow_credentials=cors.credentials,
            expose_headers=EXPOSED,
            max_age=cors.max_age,
        )
        # With credentials, a "*" origin is answered with the caller's own.
        self.explicit_any = self.allow_all_origins and self.allow_credentials
        self.simple = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.simple_headers.items()
            if not (self.explicit_any and name == "Access-Control-Allow-Origin")
        ]
        self.by_origin: dict[str, list[tuple[bytes, bytes]]] = {}  # the headers per origin

    def add(self, origin: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """The CORS headers of an answer to a request from `origin` (None: no Origin)."""
        for name, _ in headers:
            if name == b"vary":  # the answer varies already: add Origin to the list
                vary = [value for name, value in headers if name == b"vary"]
                headers[:] = [(name, value) for name, value in headers if name != b"vary"]
                headers.append((b"vary", b", ".join([*vary, b"Origin"])))
                break
        else:
            headers.append(VARY_ORIGIN)
        if origin is not None:
            found = self.by_origin.get(origin)
            if found is None:
                found = list(self.simple)
                if self.explicit_any or (
                    not self.allow_all_origins and self.is_allowed_origin(origin=origin)
                ):
                    found.append((b"access-control-allow-origin", origin.encode("latin-1")))
                if len(self.by_origin) < 1000:  # origins are the caller's to choose
                    self.by_origin[origin] = found
            headers.extend(found)


class AccessLog:
    """One JSON line per request, on stderr, without the `logging` machinery on the hot
    path: a request leaves its fields, and every `EVERY` seconds (and at exit) the lines
    are written out together, in one write. An app with `/metrics` has its requests
    counted then too, so a request pays for neither; a scrape flushes first, so its
    counts are current.

    Each line is one JSON object, as the `endpointgen` logger's own lines are:
    `{"time": "2026-01-31T12:00:00.123", "level": "info", "app": ..., "request_id": ...,
    "method", "path", "status", "latency_ms"}` (and `client_request_id` when given).
    """

    EVERY = 0.05  # seconds: under load, one write for hundreds of lines
    # perf_counter() at the end, app (JSON-quoted), request id, client's id, method,
    # path, status, seconds taken, metrics (or None) and route template.
    Entry = tuple[float, str, str, str, str, str, int, float, Any, str]

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.pending: list[AccessLog.Entry] = []
        self.quoted: dict[str, str] = {}  # paths and methods, JSON-quoted
        atexit.register(self.flush)

    def add(self, entry: AccessLog.Entry) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_later(self.EVERY, self.flush)
        self.pending.append(entry)

    def quote(self, text: str) -> str:
        found = self.quoted.get(text)
        if found is None:
            found = _quote(text)
            if len(self.quoted) < 1000:  # paths are the clients' to choose
                self.quoted[text] = found
        return found

    def lines(self, entries: list[AccessLog.Entry]) -> str:
        out = []
        second, stamp = -1, ""
        to_wall = time.time() - perf_counter()
        quote = self.quote
        for ended, app, rid, client_id, method, path, status, took, _, _ in entries:
            now = ended + to_wall
            if int(now) != second:
                second = int(now)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
            client = f'"client_request_id": {_quote(client_id)}, ' if client_id else ""
            out.append(
                f'{{"time": "{stamp}.{int(now * 1000) % 1000:03d}", "level": "info", '
                f'"app": {app}, "request_id": "{rid}", {client}"method": {quote(method)}, '
                f'"path": {quote(path)}, "status": {status}, "latency_ms": {took * 1000:.2f}}}\n'
            )
        return "".join(out)

    def flush(self) -> None:
        if not self.pending:
            return
        entries, self.pending = self.pending, []
        for _, _, _, _, method, _, status, took, metrics, route in entries:
            if metrics is not None:
                metrics.request(route, method, status, took)
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(self.lines(entries))
            stream.flush()
        except (OSError, ValueError):  # a closed stream at shutdown: nothing to say it on
            pass


ACCESS_LOG = AccessLog()


class _Ids:
    """Request ids: unique per process start (random) and per request (a counter);
    cheaper than a uuid4 each, as unguessable as a client needs (they are not secrets).
    Made a thousand at a time, each as text and as a header value."""

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)
        self.ready: list[tuple[str, bytes]] = []

    def next(self) -> tuple[str, bytes]:
        if not self.ready:
            made = [f"{self.prefix}{n:016x}" for n in itertools.islice(self.counter, 1024)]
            self.ready = [(rid, rid.encode("ascii")) for rid in reversed(made)]
        return self.ready.pop()


_IDS = _Ids()
_quote = json.encoder.encode_basestring


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
        rid, rid_bytes = _IDS.next()
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


def body_limit(route: BaseRoute) -> int:
    """The route's `MaxBytes`, or the default."""
    for check in checks_of(route):
        if isinstance(check, MaxBytes):
            return check.limit
    return DEFAULT_MAX_BYTES


# --- Streams ---


def sse(event: str | None, data: Any) -> str:
    """One Server-Sent Event; `data` is written as JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


async def events(pieces: AsyncIterable[Any] | Iterable[Any]) -> Any:
    """Each piece as a `data:` event, from a sync or async iterable."""
    from starlette.concurrency import iterate_in_threadpool

    source = pieces if isinstance(pieces, AsyncIterable) else iterate_in_threadpool(iter(pieces))
    async for piece in source:
        yield sse(None, piece)


# --- What /openapi.json says each route may answer besides success ---

SSE_EVENT = {
    "type": "object",
    "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
    "required": ["data"],
}
Documenter = Callable[[APIRoute], dict[int, dict[str, Any]]]
# What guards (auth, limits, a model's readiness) answer, by the guard: see `documents`.
_DOCUMENTED: weakref.WeakKeyDictionary[Any, Documenter] = weakref.WeakKeyDictionary()
_SECURITY: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def documents(guard: G, documenter: Documenter, security: dict[str, Any] | None = None) -> G:
    """Record what a check answers when it refuses, for /openapi.json; `security`: the
    scheme it checks, as `{name: OpenAPI security scheme}`."""
    _DOCUMENTED[guard] = documenter
    if security is not None:
        _SECURITY[guard] = security
    return guard


def document(web: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document, with the answers every route may give added to it: 400
    and 413 for bodies, 401 behind auth, 429 and its headers behind a rate limit, 503
    behind a model, the spec's mapped errors, and 500 everywhere."""
    if web.openapi_schema:
        return web.openapi_schema
    settings = settings_of(web)
    doc = get_openapi(
        title=web.title,
        version=web.version,
        openapi_version=web.openapi_version,
        description=web.description,
        routes=web.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for route in web.router.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        special = settings.error_format(route.path_format)
        schema = special.schema if special else ErrorBody
        if schema.__name__ not in schemas:
            found = schema.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update({**found.pop("$defs", {}), schema.__name__: found})
        ref = {"$ref": f"#/components/schemas/{schema.__name__}"}
        security = [_SECURITY[c] for c in checks_of(route) if c in _SECURITY]
        for scheme in security:
            doc["components"].setdefault("securitySchemes", {}).update(scheme)
        for method in sorted(route.methods or ()):
            operation = doc["paths"][route.path_format][method.lower()]
            if security:
                operation["security"] = [{name: []} for s in security for name in s]
            answers = operation.setdefault("responses", {})
            for status, answer in _answers(route, settings).items():
                if "error" in answer:
                    content = {"application/json": {"schema": ref}}
                    answer = {"description": answer["error"], "content": content, **answer}
                    del answer["error"]
                key = str(status)
                # Success: ours adds to FastAPI's; errors: the route's own `responses=` win.
                ours, theirs = answer, answers.get(key, {})
                answers[key] = {**theirs, **ours} if status == 200 else {**ours, **theirs}
    web.openapi_schema = doc
    return doc


def _answers(route: APIRoute, settings: Settings) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, Any]] = {500: {"error": "Internal error; no details leak"}}
    if (route.methods or set()) & {"POST", "PUT", "PATCH"}:
        # A body that is not JSON is a 422 (`json_invalid`) like any invalid body; OpenAI's
        # shape answers every invalid request 400.
        if settings.error_format(route.path_format) is not None:
            found[400] = {"error": "The body could not be parsed, or is invalid"}
        elif _takes_a_form(route):  # multipart data that cannot be parsed
            found[400] = {"error": "The multipart body could not be parsed"}
        found[413] = {"error": "Request body over the route's max_bytes"}
    for status, message in settings.errors.values():
        found.setdefault(status, {"error": message})
    success = dict(_success(route))
    for check in checks_of(route):
        documenter = _DOCUMENTED.get(check)
        if documenter is not None:
            for status, answer in documenter(route).items():
                if status == 200:
                    success.update(answer)
                else:
                    found[status] = answer
    if success:
        found[200] = success
    return found


def _takes_a_form(route: APIRoute) -> bool:
    from fastapi import params

    return any(isinstance(p.field_info, params.Form) for p in route.dependant.body_params)


def _success(route: APIRoute) -> dict[str, Any]:
    """The success answer, when FastAPI's own is not what the route sends."""
    kind = route.response_class
    if isinstance(kind, type) and issubclass(kind, EventStream):
        return {
            "description": "Server-Sent Events",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        }
    if isinstance(kind, type) and issubclass(kind, Binary):
        schema = {"type": "string", "format": "binary"}
        return {"description": "Binary content", "content": {kind.media_type: {"schema": schema}}}
    return {}


def documented(status: int, error: str, **extra: Any) -> Documenter:
    """What a guard that answers `status` with an error body documents."""

    def answers(route: APIRoute) -> dict[int, dict[str, Any]]:
        return {status: {"error": error, **extra}}

    return answers
