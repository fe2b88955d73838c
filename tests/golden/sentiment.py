# Built by endpointgen 0.1.0 from ../../specs/sentiment.yaml.
# Edit the spec and rebuild (`endpointgen build`) rather than this file.
"""HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy sentiment.py`; serve locally with
`endpointgen serve`, or import `create_app` and run it with any ASGI server.
"""

import asyncio
import hashlib
import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Self

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
from fastapi.security import APIKeyHeader
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import compile_path

APP_NAME = "sentiment"
DESCRIPTION = "Sentiment with a custom handler around a text classifier"
MODEL = {
    "id": "./models/tiny-bert",
    "task": "text-classification",
    "revision": None,
    "dtype": "auto",
    "local_dir": "../../specs/models/tiny-bert",
    "remote_dir": "/model",
    "loader": None,
    "batching": None,
}
AUTH = {
    "mode": "api_key",
    "env": "API_KEYS",
    "header": "X-API-Key",
}
CORS = {
    "origins": [
        "https://app.example.com",
    ],
    "methods": [
        "GET",
        "POST",
    ],
    "headers": [
        "Content-Type",
        "X-API-Key",
        "X-Request-ID",
    ],
    "credentials": False,
    "max_age": 600,
    "expose": [
        "RateLimit-Limit",
        "RateLimit-Remaining",
        "RateLimit-Reset",
        "Retry-After",
        "X-Request-ID",
    ],
}
ROUTES = [
    {
        "path": "/sentiment",
        "method": "POST",
        "action": "handler",
        "summary": "handler",
        "auth": "api_key",
        "rate_limit": None,
        "max_bytes": 1048576,
        "model": "model",
        "params": [],
        "request": [
            {
                "name": "text",
                "type": "str",
                "required": True,
                "min_length": 1,
                "max_length": 5000,
            },
        ],
        "response_type": "json",
        "handler": {
            "local": "../../specs/handlers/sentiment.py",
            "remote": "/root/endpointgen_handlers/h0_sentiment.py",
            "module": "endpointgen_handler_0",
            "function": "predict",
            "shown": "handlers/sentiment.py",
        },
    },
    {
        "path": "/health",
        "method": "GET",
        "action": "health",
        "summary": "Readiness of the app and its model",
        "auth": "none",
        "rate_limit": None,
        "max_bytes": 1048576,
        "model": "model",
        "params": [],
        "request": None,
    },
]
ERRORS = {
    "ValueError": {
        "status": 422,
        "message": "the text could not be scored",
    },
}

Route = dict[str, Any]
log = logging.getLogger(APP_NAME)


# --- Request and response bodies (they appear in /openapi.json) ---

# Bodies are checked as their JSON Schema says: no `true` for a number, no "1" for an
# int, and no keys the schema does not name.
STRICT = ConfigDict(extra="forbid", strict=True)


# --- The model: loaded once per container (or per `endpointgen serve` process) ---


def model_source(config: dict[str, Any]) -> str:
    """Where to load the model from: a Hub repo id, or the directory shipped with the app."""
    if config["local_dir"] is None:
        return config["id"]
    if modal.is_local():
        return str((Path(__file__).parent / config["local_dir"]).resolve())
    return config["remote_dir"]


def pick_device_and_dtype(config: dict[str, Any]) -> tuple[str, Any]:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = config["dtype"]
    if name == "auto":
        return device, "auto"
    if device == "cpu" and name == "float16":
        log.warning("float16 is slow or unsupported on CPU; loading float32 instead")
        return device, torch.float32
    return device, getattr(torch, name)


class Classifier:
    """A sequence classifier: the top label and its softmax score for each text."""

    def __init__(self, config: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        device, dtype = pick_device_and_dtype(config)
        source, revision = model_source(config), config["revision"]
        self.torch = torch
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            source, revision=revision, dtype=dtype
        )
        self.model.to(device).eval()
        self.labels = self.model.config.id2label
        self.lock = threading.Lock()

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        torch = self.torch
        with self.lock, torch.inference_mode():
            batch = self.tokenizer(
                texts, padding=True, truncation=True, return_tensors="pt"
            ).to(self.device)
            logits = self.model(**batch).logits
        return top_labels(logits, self.labels)


def top_labels(logits: Any, labels: dict[int, str]) -> list[dict[str, Any]]:
    scores, best = logits.float().softmax(dim=-1).max(dim=-1)
    return [
        {"label": str(labels.get(int(i), i)), "score": float(s)}
        for s, i in zip(scores.cpu().tolist(), best.cpu().tolist(), strict=True)
    ]


ENGINES: dict[str, Any] = {
    "text-classification": Classifier,
}


class ModelState:
    """The loaded model, or why it is not there; shared by every request."""

    def __init__(self, config: dict[str, Any] = MODEL) -> None:
        self.config = config
        self.status = "loading"
        self.error: str | None = None
        self.engine: Any = None
        self.batcher: Any = None

    def load(self) -> Self:
        started = time.perf_counter()
        config = self.config
        log.info("loading model %s (%s)", config["id"], config["task"])
        try:
            self.engine = ENGINES[config["task"]](config)
        except Exception as exc:
            self.status = "failed"
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("model failed to load: %s", self.error)
        else:
            self.status = "ready"
            log.info("model ready in %.1fs", time.perf_counter() - started)
        return self


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


# --- Auth (api_key): valid values come from env var AUTH["env"] (a Modal Secret) ---


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
    scheme = APIKeyHeader(name=AUTH["header"], auto_error=False)
    Credential = Annotated[str | None, Depends(scheme)]

    async def require_key(request: Request, key: Credential) -> None:
        found = credential_matches(key, valid)
        if found is None:
            raise HTTPException(401, "missing or invalid API key")
        request.state.credential = found.hex()

    return require_key


# --- Routes ---


def check_texts(route: Route, field: str, texts: list[str]) -> None:
    if "max_items" in route and len(texts) > route["max_items"]:
        raise reject(field, f"at most {route['max_items']} texts per request")
    for text in texts:
        if len(text) > route["max_chars"]:
            raise reject(field, f"texts may be at most {route['max_chars']} characters")


async def run_model(state: ModelState, call: Any, texts: list[Any]) -> Any:
    loop = asyncio.get_running_loop()
    if state.batcher is not None:
        return await state.batcher(texts)
    return await loop.run_in_executor(None, call, texts)


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


def create_app(state: ModelState) -> FastAPI:
    """The FastAPI app around a loaded model; Modal serves it, and so can any ASGI server."""
    states = {"model": state}
    configure_logging()
    web = FastAPI(title=APP_NAME, description=DESCRIPTION)
    web.add_exception_handler(HTTPException, http_error)
    web.add_exception_handler(RequestValidationError, validation_error)
    auth = make_auth()

    for route in ROUTES:
        state = states[route["model"]] if route["model"] else None
        # Run in this order. A limit by client address counts before auth, so guessing
        # keys is throttled too; a limit by credential counts after auth has found it.
        guards = []
        if route["auth"] != "none":
            guards.append(Depends(auth))
        if state is not None and route["action"] != "health":
            guards.append(Depends(ready(state)))
        ACTIONS[route["action"]](web, route, state, guards)

    web.add_middleware(RequestContext)
    web.add_middleware(
        CORSMiddleware,
        allow_origins=CORS["origins"],
        allow_methods=CORS["methods"],
        allow_headers=CORS["headers"],
        allow_credentials=CORS["credentials"],
        expose_headers=CORS["expose"],
        max_age=CORS["max_age"],
    )
    return web


def ready(state: Any) -> Any:
    """A guard that answers 503 until the route's model is loaded."""

    async def model_ready() -> None:
        if state.status != "ready":
            raise HTTPException(503, f"model is not ready ({state.status})")

    return model_ready


def add_health(web: FastAPI, route: Route, state: Any, guards: list[Any]) -> None:
    async def health() -> JSONResponse:
        if state is None:
            return JSONResponse({"status": "ok"})
        config = state.config
        if state.status != "ready":
            body = {"status": state.status, "error": state.error, "model": config["id"]}
            return JSONResponse(body, 503)
        body = {"status": "ok", "model": config["id"], "task": config["task"]}
        return JSONResponse(body)

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
    "health": add_health,
}


# --- Modal: the image, the settings from the spec, and the class that serves the app ---

# Local files the spec names (model directory, handlers, folders), copied in last.
SHIPPED_DIRS = [
    {
        "local": "../../specs/models/tiny-bert",
        "remote": "/model",
    },
]
SHIPPED_FILES = [
    {
        "local": "../../specs/handlers/sentiment.py",
        "remote": "/root/endpointgen_handlers/h0_sentiment.py",
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
        "torch==2.13.0",
        "transformers==5.24.0",
    ]
)
image = with_local_files(image)
SECRETS = [
    "sentiment-keys",
]

app = modal.App(APP_NAME, image=image)


@app.cls(
    gpu="T4",
    secrets=[modal.Secret.from_name(name) for name in SECRETS],
)
@modal.concurrent(max_inputs=16)
class Server:
    @modal.enter()
    def load(self) -> None:
        self.state = ModelState().load()

    @modal.asgi_app()
    def web(self) -> FastAPI:
        return create_app(self.state)
