# Built by endpointgen 0.1.0 from ../../specs/batch.yaml.
# Edit the spec and rebuild (`endpointgen build`) rather than this file.
"""HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy batch.py`; serve locally with
`endpointgen serve`, or import `create_app` and run it with any ASGI server.
"""

import hashlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import fastapi
import modal
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

APP_NAME = "batch"
DESCRIPTION = "Process a batch of texts with a custom handler"
MODEL = None
AUTH = {
    "mode": "bearer",
    "env": "API_KEYS",
}
CORS = None
ROUTES = [
    {
        "path": "/batch",
        "method": "POST",
        "action": "handler",
        "summary": "handler",
        "auth": "bearer",
        "rate_limit": {
            "scope": "app",
            "limit": 120,
            "seconds": 60,
            "key": "api_key",
            "storage": "memory",
        },
        "max_bytes": 1048576,
        "model": None,
        "params": [],
        "request": [
            {
                "name": "model",
                "type": "str",
                "required": False,
                "default": "default",
                "enum": [
                    "default",
                    "shout",
                ],
            },
            {
                "name": "texts",
                "type": "list[str]",
                "required": True,
                "min_length": 1,
                "max_length": 100,
            },
        ],
        "response_type": "json",
        "handler": {
            "local": "../../specs/handlers/batch.py",
            "remote": "/root/endpointgen_handlers/h0_batch.py",
            "module": "endpointgen_handler_0",
            "function": "process",
            "shown": "handlers/batch.py",
        },
    },
]
ERRORS = {
    "ValueError": {
        "status": 400,
        "message": "the input could not be processed",
    },
}

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


# --- Auth (bearer): valid values come from env var AUTH["env"] (a Modal Secret) ---


def load_credentials() -> set[bytes]:
    """Comma-separated values (several at once, so they can be rotated without downtime),
    kept only as SHA-256 digests."""
    raw = os.environ.get(AUTH["env"], "")
    values = {digest(v.strip()) for v in raw.split(",") if v.strip()}
    if not values:
        log.warning("%s is empty: every authenticated request is refused", AUTH["env"])
    return values


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def credential_matches(presented: str | None, valid: set[bytes]) -> bytes | None:
    """The presented value's digest when it is valid: one lookup, however many keys.

    The time it takes depends only on the digest of what was sent, which says nothing
    about any valid key: no comparison of the raw values ever happens.
    """
    found = digest(presented) if presented else None
    return found if found in valid else None


def fingerprint(text: str) -> str:
    """What rate limits count by: never the credential itself."""
    return hashlib.sha256(text.encode()).hexdigest()


def make_auth() -> Any:
    valid = load_credentials()
    scheme = HTTPBearer(auto_error=False)
    Credential = Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)]

    async def require_token(request: Request, credentials: Credential) -> None:
        token = credentials.credentials if credentials else None
        found = credential_matches(token, valid)
        if found is None:
            raise HTTPException(
                401, "missing or invalid bearer token", {"WWW-Authenticate": "Bearer"}
            )
        request.state.credential = found.hex()

    return require_token


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


def new_window(rule: dict[str, Any]) -> Any:
    limit, seconds = rule["limit"], rule["seconds"]
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
    auth = make_auth()
    windows: dict[str, FixedWindow] = {}

    for route in ROUTES:
        # Run in this order. A limit by client address counts before auth, so guessing
        # keys is throttled too; a limit by credential counts after auth has found it.
        guards = []
        rule = route["rate_limit"]
        if rule is not None and rule["key"] == "ip":
            guards.append(Depends(make_rate_limit(rule, windows, no_auth)))
        if route["auth"] != "none":
            guards.append(Depends(auth))
        if rule is not None and rule["key"] == "api_key":
            guards.append(Depends(make_rate_limit(rule, windows, auth)))
        ACTIONS[route["action"]](web, route, None, guards)

    web.add_middleware(RequestContext)
    return web


def add_health(web: FastAPI, route: Route, state: Any, guards: list[Any]) -> None:
    async def health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    add_route(web, route, health, dependencies=guards)


# --- Declared parameters and bodies: FastAPI signatures built from ROUTES at start-up ---

TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list[str]": list[str],
    "list[int]": list[int],
    "list[float]": list[float],
    "object": dict[str, Any],
    "any": Any,
}
SOURCES = {"query": fastapi.Query, "path": fastapi.Path, "header": fastapi.Header}
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def annotation(field: dict[str, Any]) -> Any:
    kind = TYPES[field["type"]]
    if "enum" in field and field["type"] == "str":
        kind = Literal[tuple(field["enum"])]
    elif "enum" in field:  # numbers arrive as text in a query: parse, then compare
        kind = Annotated[kind, AfterValidator(one_of(field["enum"]))]
    if not field["required"] and field["default"] is None:
        kind = kind | None
    return kind


def one_of(allowed: list[Any]) -> Any:
    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return check


def constraints(field: dict[str, Any]) -> dict[str, Any]:
    names = ("ge", "le", "min_length", "max_length", "description")
    return {name: field[name] for name in names if name in field}


def default(field: dict[str, Any]) -> Any:
    """`...` (pydantic's "required") or the declared default."""
    return ... if field["required"] else field["default"]


def body_model(route: Route) -> Any:
    """A pydantic model of the route's declared JSON body, or None."""
    if route["request"] is None:
        return None
    words = re.findall(r"[A-Za-z0-9]+", f"{route['method']} {route['path']}")
    name = "".join(word.capitalize() for word in words) + "Request"
    fields = {
        f["name"]: (annotation(f), Field(default(f), **constraints(f)))
        for f in route["request"]
    }
    strict = ConfigDict(extra="forbid", strict=True)
    return create_model(name, __config__=strict, **fields)


def signature(route: Route, body: Any, *extra: inspect.Parameter) -> inspect.Signature:
    """The endpoint's signature: FastAPI reads parameters and body from it."""
    keyword = inspect.Parameter.KEYWORD_ONLY
    parameters = [
        inspect.Parameter(
            p["name"],
            keyword,
            default=inspect.Parameter.empty if p["required"] else p["default"],
            annotation=Annotated[annotation(p), SOURCES[p["in"]](**constraints(p))],
        )
        for p in route["params"]
    ]
    if body is not None:
        parameters.append(inspect.Parameter("request_body", keyword, annotation=body))
    return inspect.Signature([*parameters, *extra])


def gather(values: dict[str, Any]) -> dict[str, Any]:
    """Parameters and body fields, as one mapping for templates and handlers."""
    body = values.pop("request_body", None)
    return {**values, **(body.model_dump() if body is not None else {})}


def fill(template: Any, data: dict[str, Any]) -> Any:
    """`{name}` placeholders in strings, replaced by data; a lone placeholder keeps its type."""
    if isinstance(template, str):
        alone = PLACEHOLDER.fullmatch(template)
        if alone and alone.group(1) in data:
            return data[alone.group(1)]

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            return str(data[name]) if name in data else match.group(0)

        return PLACEHOLDER.sub(value, template)
    if isinstance(template, list):
        return [fill(item, data) for item in template]
    if isinstance(template, dict):
        return {key: fill(item, data) for key, item in template.items()}
    return template


def answer(route: Route, value: Any, status: int = 200) -> Any:
    kind = route["response_type"]
    if kind == "text":
        return PlainTextResponse(str(value), status)
    return JSONResponse(jsonable_encoder(value), status)


class HandlerError(RuntimeError):
    """A handler file that cannot be imported: the app must not start without it."""


def load_handler(ref: dict[str, str]) -> Any:
    """Import `function` from the handler's file: next to the spec here, in the image on Modal."""
    here = Path(__file__).parent / ref["local"]
    file = here if modal.is_local() else Path(ref["remote"])
    try:
        spec = importlib.util.spec_from_file_location(ref["module"], file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[ref["module"]] = module
        spec.loader.exec_module(module)
        return getattr(module, ref["function"])
    except Exception as exc:
        raise HandlerError(f"{ref['shown']}: {type(exc).__name__}: {exc}") from exc


async def call_handler(function: Any, data: dict[str, Any], model: Any) -> Any:
    """`function(data)`, or `function(data, model)` when it takes a second argument."""
    args = (data, model) if len(inspect.signature(function).parameters) > 1 else (data,)
    if inspect.iscoroutinefunction(function):
        return await function(*args)
    return await run_in_threadpool(function, *args)


def add_handler(web: FastAPI, route: Route, state: Any, guards: list[Any]) -> None:
    function = load_handler(route["handler"])

    async def handle(**values: Any) -> Any:
        model = getattr(state, "engine", None)
        return answer(route, await call_handler(function, gather(values), model))

    handle.__signature__ = signature(route, body_model(route))  # type: ignore[attr-defined]
    add_route(web, route, handle, dependencies=guards)


ACTIONS = {
    "handler": add_handler,
}


# --- Modal: the image, the settings from the spec, and the class that serves the app ---

# Local files the spec names (model directory, handlers, folders), copied in last.
SHIPPED_DIRS = []
SHIPPED_FILES = [
    {
        "local": "../../specs/handlers/batch.py",
        "remote": "/root/endpointgen_handlers/h0_batch.py",
        "module": "endpointgen_handler_0",
    },
]


def with_local_files(image: modal.Image) -> modal.Image:
    here = Path(__file__).parent
    for item in SHIPPED_DIRS:
        image = image.add_local_dir(here / item["local"], remote_path=item["remote"])
    for item in SHIPPED_FILES:
        image = image.add_local_file(here / item["local"], remote_path=item["remote"])
    return image


image = modal.Image.debian_slim(python_version="3.11").uv_pip_install(
    *[
        "fastapi[standard]==0.165.0",
        "pydantic==2.14.4",
    ]
)
image = with_local_files(image)
SECRETS = [
    "batch-tokens",
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
