# Built by endpointgen 0.1.0 from ../../specs/openai.yaml.
# Edit the spec and rebuild (`endpointgen build`) rather than this file.
"""HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy openai_gpt2.py`; serve locally with
`endpointgen serve`, or import `create_app` and run it with any ASGI server.
"""

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import struct
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import modal
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    StreamingResponse,
)
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.routing import compile_path

APP_NAME = "openai-gpt2"
DESCRIPTION = "GPT-2 behind /v1/completions and /v1/chat/completions"
MODEL = {
    "id": "gpt2",
    "task": "text-generation",
    "revision": None,
    "dtype": "auto",
    "local_dir": None,
    "remote_dir": "/model",
    "loader": None,
    "batching": None,
}
AUTH = {
    "mode": "bearer",
    "env": "API_KEYS",
}
CORS = None
ROUTES = [
    {
        "path": "/v1",
        "method": "GET",
        "action": "openai",
        "summary": "openai",
        "auth": "bearer",
        "rate_limit": {
            "scope": "app",
            "limit": 120,
            "seconds": 60,
            "key": "api_key",
            "storage": "memory",
        },
        "max_bytes": 1048576,
        "model": "model",
        "max_tokens": 512,
        "max_chars": 20000,
        "max_items": 128,
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
        "model": "model",
        "params": [],
        "request": None,
    },
]
ERRORS = {}

Route = dict[str, Any]
log = logging.getLogger(APP_NAME)


# --- Request and response bodies (they appear in /openapi.json) ---

# Bodies are checked as their JSON Schema says: no `true` for a number, no "1" for an
# int, and no keys the schema does not name.
STRICT = ConfigDict(extra="forbid", strict=True)


GREEDY_BELOW = 0.01  # smaller temperatures overflow the logits; they mean "greedy"


class GenerateRequest(BaseModel):
    model_config = STRICT

    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=64, ge=1, description="new tokens at most")
    temperature: float = Field(default=1.0, ge=0, le=2, description="< 0.01 is greedy")
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(default=None, description="stop before these")

    def stop_list(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return [s for s in stop if s]


class GenerateResponse(BaseModel):
    text: str
    tokens_generated: int
    finish_reason: str = Field(description="stop, length or cancelled")


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


class TextGenerator:
    """A causal language model; one generation at a time, so `seed` stays reproducible."""

    def __init__(self, config: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device, dtype = pick_device_and_dtype(config)
        source, revision = model_source(config), config["revision"]
        self.torch = torch
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        self.model = AutoModelForCausalLM.from_pretrained(
            source, revision=revision, dtype=dtype
        )
        self.model.to(device).eval()
        self.lock = threading.Lock()

    def chat_prompt(self, turns: list[dict[str, str]]) -> str:
        """The tokenizer's chat template; without one, `role: content` lines."""
        if getattr(self.tokenizer, "chat_template", None):
            options = {"tokenize": False, "add_generation_prompt": True}
            return str(self.tokenizer.apply_chat_template(turns, **options))
        lines = [f"{turn['role']}: {turn['content']}" for turn in turns]
        return "\n".join([*lines, "assistant:"])

    def context_left(self, prompt: str) -> int | None:
        """How many tokens fit after `prompt` in the model's context, if it has a limit."""
        context = getattr(self.model.config, "max_position_embeddings", None)
        if not context:
            return None
        return int(context) - len(self.tokenizer(prompt)["input_ids"])

    def context_problem(self, request: GenerateRequest) -> str | None:
        """Why the prompt and max_tokens do not fit the model's context, if they don't."""
        context = getattr(self.model.config, "max_position_embeddings", None)
        if not context:
            return None
        prompt = len(self.tokenizer(request.prompt)["input_ids"])
        if prompt + request.max_tokens > context:
            return (
                f"the prompt ({prompt} tokens) plus max_tokens ({request.max_tokens}) "
                f"exceed the model's context of {context} tokens"
            )
        return None

    def generate(
        self,
        request: GenerateRequest,
        on_text: Any = None,
        cancelled: threading.Event | None = None,
    ) -> dict[str, Any]:
        from transformers import StoppingCriteriaList

        torch = self.torch
        inputs = self.tokenizer(request.prompt, return_tensors="pt").to(self.device)
        watcher = _Watcher(
            self.tokenizer,
            inputs["input_ids"].shape[1],
            request.stop_list(),
            on_text,
            cancelled,
        )
        options: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "stopping_criteria": StoppingCriteriaList([watcher]),
            "pad_token_id": self.tokenizer.pad_token_id
            if self.tokenizer.pad_token_id is not None
            else self.tokenizer.eos_token_id,
        }
        if request.temperature >= GREEDY_BELOW:
            options.update(
                do_sample=True, temperature=request.temperature, top_p=request.top_p
            )
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self.lock, torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            output = self.model.generate(**inputs, **options)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        watcher.finish(new_tokens)
        return {
            "text": watcher.text,
            "prompt_tokens": int(inputs["input_ids"].shape[1]),
            "tokens_generated": int(new_tokens.shape[0]),
            "finish_reason": watcher.finish_reason(
                int(new_tokens.shape[0]), request.max_tokens
            ),
        }


class _Watcher:
    """Decodes new tokens as they come: hands out text, stops at `stop` or on cancel."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_length: int,
        stop: list[str],
        on_text: Any,
        cancelled: threading.Event | None,
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stop = stop
        self.on_text = on_text
        self.cancelled = cancelled
        self.text = ""
        self.reason: str | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        if self.cancelled is not None and self.cancelled.is_set():
            self.reason = "cancelled"
            return True
        return self._update(input_ids[0, self.prompt_length :], final=False)

    def finish(self, new_tokens: Any) -> None:
        if self.reason is None:
            self._update(new_tokens, final=True)

    def finish_reason(self, generated: int, max_tokens: int) -> str:
        if self.reason is not None:
            return self.reason
        return "length" if generated >= max_tokens else "stop"

    def _update(self, new_tokens: Any, final: bool) -> bool:
        text = self.tokenizer.decode(new_tokens, skip_special_tokens=True)
        stopped = False
        for stop in self.stop:
            at = text.find(stop)
            if at != -1:
                text, stopped = text[:at], True
        if not final and not stopped and text.endswith("\ufffd"):
            return False  # half of a multi-byte character: wait for the rest
        if stopped:
            self.reason = "stop"
        if text.startswith(self.text) and len(text) > len(self.text):
            piece, self.text = text[len(self.text) :], text
            if self.on_text is not None:
                self.on_text(piece)
        return stopped


ENGINES: dict[str, Any] = {
    "text-generation": TextGenerator,
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
    if is_openai(path):
        # OpenAI answers a malformed request with 400, and its clients expect that.
        response = openai_error(400 if status == 422 else status, body["error"])
        response.headers.update(headers or {})
        return response
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

    body = OpenAIErrorBody if route["action"] == "openai" else ErrorBody

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
    windows: dict[str, FixedWindow] = {}

    for route in ROUTES:
        state = states[route["model"]] if route["model"] else None
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
        if state is not None and route["action"] != "health":
            guards.append(Depends(ready(state)))
        ACTIONS[route["action"]](web, route, state, guards)

    web.add_middleware(RequestContext)
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


def add_generate(web: FastAPI, route: Route, state: Any, guards: list[Any]) -> None:
    def checked(request: GenerateRequest) -> GenerateRequest:
        if request.max_tokens > route["max_tokens"]:
            raise reject("max_tokens", f"must be at most {route['max_tokens']}")
        if len(request.prompt) > route["max_chars"]:
            raise reject("prompt", f"must be at most {route['max_chars']} characters")
        problem = state.engine.context_problem(request)
        if problem:
            raise reject("prompt", problem)
        return request

    if route["stream"]:

        async def stream(body: GenerateRequest, request: Request) -> StreamingResponse:
            events = stream_events(state.engine, checked(body), request_id_of(request))
            return StreamingResponse(events, media_type="text/event-stream")

        add_route(web, route, stream, dependencies=guards)
        return

    async def generate(body: GenerateRequest) -> GenerateResponse:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, state.engine.generate, checked(body))
        return GenerateResponse(**result)

    options = {"dependencies": guards, "response_model": GenerateResponse}
    add_route(web, route, generate, **options)


def sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


async def stream_events(engine: Any, body: Any, request_id: str) -> Any:
    """Server-Sent Events: `token` events as text arrives, then `done` with the totals."""
    async for kind, value in generation(engine, body, request_id):
        if kind == "token":
            yield sse("token", {"text": value})
        elif kind == "done":
            yield sse("done", value)
        else:
            yield sse("error", error_body(request_id, "generation failed"))


async def generation(engine: Any, body: Any, request_id: str) -> Any:
    """("token", text) pairs as text arrives, then ("done", totals) or ("error", None).

    When the client goes away the generator is closed, which stops the generation.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    cancelled = threading.Event()

    def on_text(piece: str) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ("token", piece))

    def work() -> None:
        try:
            result = engine.generate(body, on_text, cancelled)
        except Exception as exc:
            log.error("request %s: generation failed: %s", request_id, exc)
            loop.call_soon_threadsafe(queue.put_nowait, ("error", None))
        else:
            if result["finish_reason"] == "cancelled":
                log.info(
                    "request %s: client went away; generation stopped after %d tokens",
                    request_id,
                    result["tokens_generated"],
                )
            loop.call_soon_threadsafe(queue.put_nowait, ("done", result))

    worker = loop.run_in_executor(None, work)
    try:
        while True:
            kind, value = await queue.get()
            yield kind, value
            if kind != "token":
                break
    finally:
        cancelled.set()  # the generation stops at its next token
        del worker


# --- OpenAI-compatible routes: existing OpenAI clients work unchanged ---


class CompletionRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # unknown OpenAI options are ignored

    model: str | None = None
    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def turn(self) -> dict[str, str]:
        text = self.content or ""
        if isinstance(self.content, list):  # [{"type": "text", "text": ...}, ...]
            text = "".join(str(part.get("text", "")) for part in self.content)
        return {"role": self.role, "content": text}


class ChatRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # unknown OpenAI options are ignored

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(strict=True)  # unknown OpenAI options are ignored

    model: str | None = None
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIError


OPENAI_PREFIXES = tuple(r["path"] for r in ROUTES if r["action"] == "openai")
CHAT_DEFAULT_TOKENS = 256


def openai_error(status: int, message: str) -> JSONResponse:
    """OpenAI's error body, so its clients raise their own exception types."""
    kinds = {401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded"}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    error = {"message": message, "type": kind, "param": None, "code": kinds.get(status)}
    return JSONResponse({"error": error}, status)


def is_openai(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in OPENAI_PREFIXES)


def served_name(config: dict[str, Any]) -> str:
    """The model's name for clients: the repo id, or a local directory's name."""
    if config["local_dir"] is None:
        return config["id"]
    return config["id"].rstrip("/").rsplit("/", 1)[-1]


def usage(prompt: int, completion: int) -> dict[str, int]:
    counts = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {**counts, "total_tokens": prompt + completion}


def packed(vector: list[float]) -> str:
    """Little-endian float32, base64: OpenAI's compact embedding encoding."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def add_openai(web: FastAPI, route: Route, state: Any, guards: list[Any]) -> None:
    base = route["path"]

    def add(path: str, method: str, summary: str, endpoint: Any) -> None:
        routed = {**route, "path": base + path, "method": method, "summary": summary}
        add_route(web, routed, endpoint, dependencies=guards)

    async def models() -> dict[str, Any]:
        model = {"id": served_name(state.config), "object": "model", "created": 0}
        return {"object": "list", "data": [{**model, "owned_by": APP_NAME}]}

    add("/models", "GET", "List models (OpenAI)", models)

    def request_for(prompt: str, body: Any, max_tokens: int) -> GenerateRequest:
        if max_tokens > route["max_tokens"]:
            raise reject("max_tokens", f"must be at most {route['max_tokens']}")
        if len(prompt) > route["max_chars"]:
            raise reject("prompt", f"must be at most {route['max_chars']} characters")
        request = GenerateRequest(
            prompt=prompt or " ",
            max_tokens=max_tokens,
            temperature=body.temperature,
            top_p=body.top_p,
            seed=body.seed,
            stop=body.stop,
        )
        problem = state.engine.context_problem(request)
        if problem:
            raise reject("prompt", problem)
        return request

    async def completions(body: CompletionRequest, request: Request) -> Any:
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        if len(prompts) != 1:
            raise reject("prompt", "send one prompt per request")
        generate = request_for(prompts[0], body, body.max_tokens)
        made = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time())}
        made |= {"model": served_name(state.config), "object": "text_completion"}
        if body.stream:
            rid = request_id_of(request)
            chunks = completion_chunks(state.engine, generate, rid, made)
            return StreamingResponse(chunks, media_type="text/event-stream")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, state.engine.generate, generate)
        choice = {"index": 0, "text": result["text"], "logprobs": None}
        choice["finish_reason"] = finish(result["finish_reason"])
        totals = usage(result["prompt_tokens"], result["tokens_generated"])
        return {**made, "choices": [choice], "usage": totals}

    async def chat(body: ChatRequest, request: Request) -> Any:
        prompt = state.engine.chat_prompt([m.turn() for m in body.messages])
        wanted = body.max_completion_tokens or body.max_tokens
        if wanted is None:  # OpenAI's "as much as fits"; here, up to a modest default
            room = state.engine.context_left(prompt) or CHAT_DEFAULT_TOKENS
            wanted = max(1, min(CHAT_DEFAULT_TOKENS, route["max_tokens"], room))
        generate = request_for(prompt, body, wanted)
        made = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
        made["model"] = served_name(state.config)
        if body.stream:
            rid = request_id_of(request)
            chunks = chat_chunks(state.engine, generate, rid, made)
            return StreamingResponse(chunks, media_type="text/event-stream")
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, state.engine.generate, generate)
        message = {"role": "assistant", "content": result["text"]}
        choice = {"index": 0, "message": message}
        choice["finish_reason"] = finish(result["finish_reason"])
        totals = usage(result["prompt_tokens"], result["tokens_generated"])
        made["object"] = "chat.completion"
        return {**made, "choices": [choice], "usage": totals}

    if state.config["task"] == "text-generation":
        add("/completions", "POST", "Completions (OpenAI)", completions)
        add("/chat/completions", "POST", "Chat completions (OpenAI)", chat)


def chunk(made: dict[str, Any], **choice: Any) -> str:
    """One streamed chunk, as OpenAI's `data: {...}` event."""
    return f"data: {json.dumps({**made, 'choices': [{'index': 0, **choice}]})}\n\n"


STREAM_FAILED = {"error": {"message": "generation failed", "type": "server_error"}}


async def completion_chunks(engine: Any, body: Any, rid: str, made: Any) -> Any:
    async for kind, value in generation(engine, body, rid):
        if kind == "token":
            yield chunk(made, text=value, logprobs=None, finish_reason=None)
        elif kind == "done":
            reason = finish(value["finish_reason"])
            yield chunk(made, text="", logprobs=None, finish_reason=reason)
        else:
            yield f"data: {json.dumps(STREAM_FAILED)}\n\n"
    yield "data: [DONE]\n\n"


async def chat_chunks(engine: Any, body: Any, rid: str, made: Any) -> Any:
    made = {**made, "object": "chat.completion.chunk"}
    yield chunk(made, delta={"role": "assistant", "content": ""}, finish_reason=None)
    async for kind, value in generation(engine, body, rid):
        if kind == "token":
            yield chunk(made, delta={"content": value}, finish_reason=None)
        elif kind == "done":
            yield chunk(made, delta={}, finish_reason=finish(value["finish_reason"]))
        else:
            yield f"data: {json.dumps(STREAM_FAILED)}\n\n"
    yield "data: [DONE]\n\n"


ACTIONS = {
    "health": add_health,
    "openai": add_openai,
}


# --- Modal: the image, the settings from the spec, and the class that serves the app ---

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(
        *[
            "fastapi[standard]==0.165.0",
            "pydantic==2.14.4",
            "torch==2.13.0",
            "transformers==5.24.0",
        ]
    )
    .env(
        {
            "HF_HOME": "/hf-cache",
        }
    )
)
# Hub downloads are kept on a Volume, so new containers skip them.
hf_cache = modal.Volume.from_name("endpointgen-hf-cache", create_if_missing=True)
SECRETS = [
    "openai-gpt2-keys",
]

app = modal.App(APP_NAME, image=image)


@app.cls(
    gpu="L4",
    secrets=[modal.Secret.from_name(name) for name in SECRETS],
    volumes={"/hf-cache": hf_cache},
    max_containers=2,
)
@modal.concurrent(max_inputs=8)
class Server:
    @modal.enter()
    def load(self) -> None:
        self.state = ModelState().load()

    @modal.asgi_app()
    def web(self) -> FastAPI:
        return create_app(self.state)
