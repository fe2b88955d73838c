"""Pydantic models of the spec language, v1. Unknown keys are errors everywhere."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from endpointgen.runtime import defaults
from endpointgen.spec import gpu as gpu_names
from endpointgen.spec.gpu import shown
from endpointgen.spec.shapes import PATTERNS as SHAPE_PATTERNS
from endpointgen.spec.shapes import (
    ErrorMapping,
    ExceptionName,
    Fields,
    HandlerRef,
    MediaType,
    Params,
    Requirement,
    VolumeName,
)

Task = Literal[
    "text-generation",
    "text2text-generation",
    "text-classification",
    "zero-shot-classification",
    "token-classification",
    "rerank",
    "embeddings",
    "image-text-embeddings",
    "image-classification",
    "object-detection",
    "automatic-speech-recognition",
    "text-to-image",
]
Action = Literal[
    "health",
    "generate",
    "classify",
    "embed",
    "rerank",
    "webhook",
    "respond",
    "handler",
    "upload",
    "file",
    "openai",
]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
AuthMode = Literal["none", "api_key", "bearer", "jwt", "proxy"]

# Modal object names: letters, digits, dashes, periods, underscores; under 64 characters.
_SECRET_NAME = r"^[A-Za-z0-9._-]{1,63}$"
_ENV_VAR = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$"
_ENV_NAME = r"^[a-z][a-z0-9_-]{0,31}$"
_APP_NAME = r"^[a-z][a-z0-9-]{0,47}$"
_MODEL_NAME = r"^[a-z][a-z0-9_]{0,31}$"
# Modal regions: broad (`us`, `eu`), narrower (`us-east`), or a cloud's own (`us-east-1`).
_REGION = r"^[a-z]{2}(-[a-z]+)?(-[0-9]{1,2})?$"
# A folder inside a Volume: relative, its parts never `.` or `..` (none starts with a dot).
_VOLUME_PATH = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")


def _volume_path(value: str) -> str:
    if not _VOLUME_PATH.match(value):
        raise ValueError(
            "a folder inside the Volume: relative, its parts letters, digits, `.`, `_` and "
            "`-`, none of them `.` or `..` (e.g. `llama/checkpoint-1200`)"
        )
    return value


VolumePath = Annotated[str, Field(max_length=512), AfterValidator(_volume_path)]
_DEBIAN_PACKAGE = r"^[a-z0-9][a-z0-9+.-]{0,99}(=[A-Za-z0-9+.:~-]{1,100})?$"
_ROUTE_PATH = r"^/([A-Za-z0-9._~/-]|\{[A-Za-z_][A-Za-z0-9_]{0,63}(:path)?\})*$"
SecretName = Annotated[str, Field(pattern=_SECRET_NAME)]
EnvVar = Annotated[str, Field(pattern=_ENV_VAR)]
HeaderName = Annotated[str, Field(pattern=_HEADER_NAME)]
EnvName = Annotated[str, Field(pattern=_ENV_NAME)]
ModelName = Annotated[str, Field(pattern=_MODEL_NAME)]
Region = Annotated[str, Field(pattern=_REGION)]

# What each pattern means, for error messages: (what the value is, the rule).
PATTERNS = {
    **SHAPE_PATTERNS,
    _REGION: ("Modal region", "write a region such as us, eu, us-east or us-east-1"),
    _SECRET_NAME: (
        "Modal Secret name",
        "use letters, digits, '.', '_' and '-', at most 63 characters",
    ),
    _ENV_VAR: (
        "environment variable name",
        "use letters, digits and '_', not starting with a digit, at most 128 characters",
    ),
    _HEADER_NAME: (
        "HTTP header name",
        "use letters, digits and '-' (no spaces), at most 64 characters",
    ),
    _ENV_NAME: (
        "environment name",
        "use lowercase letters, digits, '_' and '-', starting with a letter, at most 32 characters",
    ),
    _APP_NAME: (
        "app name",
        "use lowercase letters, digits and '-', starting with a letter, at most 48 characters",
    ),
    _MODEL_NAME: (
        "model name",
        "use lowercase letters, digits and '_', starting with a letter, at most 32 characters",
    ),
    _DEBIAN_PACKAGE: (
        "Debian package",
        "use a name like 'ffmpeg' or 'libgl1', optionally '=version' (no spaces or shell)",
    ),
    _ROUTE_PATH: (
        "route path",
        "start with '/' and use only letters, digits, . _ ~ / - and {param} or {param:path}",
    ),
}

RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
# Matched whole (fullmatch: `$` alone would let a trailing newline through), ASCII only.
_RATE = re.compile(r"\s*([0-9]{1,9})\s*/\s*([a-z]+?)s?\s*", re.ASCII)
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?", re.ASCII)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _env_value(value: Any) -> Any:
    """`env:` values may be written as numbers or booleans; they reach the app as
    strings. No environment variable can hold a NUL character."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("an environment variable cannot hold a NUL character (\\0)")
    return value


def _gpu(value: Any) -> Any:
    return gpu_names.normalize(value)


GpuField = Annotated[
    list[str] | None,
    BeforeValidator(_gpu, json_schema_input_type=str | list[str] | None),
]


class Strict(BaseModel):
    # defer_build: a model's validator is built when it first validates, not at import;
    # the CLI validates only through `Spec`, whose validator holds all of them.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _model_id(model_id: str) -> str:
    """A Hub repo id or a directory: no control characters (a path cannot hold NUL),
    and `~user/...` must name a user this machine knows, or the build cannot find it."""
    if any(unicodedata.category(ch) == "Cc" for ch in model_id):
        raise ValueError(
            f"{shown(model_id)} holds a control character; a model id is a Hub repo "
            "id or a directory"
        )
    if model_id.startswith("~"):
        try:
            Path(model_id).expanduser()
        except RuntimeError:
            user = model_id[1:].split("/", 1)[0]
            raise ValueError(
                f"{shown(model_id)} starts with '~{user}', but this machine has no "
                "home directory for that user"
            ) from None
    return model_id


class Vllm(Strict):
    """vLLM's engine options, for `engine: vllm`; unset, vLLM's own defaults."""

    max_model_len: int | None = Field(
        default=None, ge=16, le=10_000_000, description="context length; default the model's"
    )
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="share of GPU memory vLLM takes; default 0.92"
    )
    tensor_parallel_size: int | None = Field(
        default=None, ge=1, le=8, description="GPUs one model spans; must equal the GPU count"
    )
    quantization: Literal["awq", "gptq", "fp8", "bitsandbytes", "compressed-tensors"] | None = None
    enforce_eager: bool | None = Field(
        default=None,
        description="skip CUDA graph capture: faster cold starts, slower generation; "
        "default on when the model scales to zero (no min_containers), off when kept warm",
    )


class Model(Strict):
    """The model an app serves."""

    id: str = Field(
        min_length=1,
        max_length=1024,
        description="Hugging Face repo id, or a local directory (relative to the spec)",
    )
    task: Task
    revision: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="git revision on the Hub",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    variant: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$",
        description="a weights variant: `fp16` loads model.fp16.safetensors, not model.safetensors",
    )
    loader: HandlerRef | None = Field(
        default=None, description="file.py:function that loads the model, for custom models"
    )
    volume: VolumeName | None = Field(
        default=None,
        description="a Modal Volume that holds the weights (read-only); `id` names the model",
    )
    path: VolumePath | None = Field(
        default=None, description="the model's folder inside `volume`; default its root"
    )
    engine: Literal["transformers", "vllm"] = Field(
        default="transformers",
        description="what runs the model: transformers (any task, CPU or GPU), or vllm "
        "(text generation on CUDA GPUs)",
    )
    vllm: Vllm | None = Field(default=None, description="vLLM's options, with engine: vllm")

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return _model_id(value)


class Resources(Strict):
    cpu: float | None = Field(default=None, gt=0, le=64, description="CPU cores")
    memory: int | None = Field(default=None, ge=128, le=1_048_576, description="MiB")
    timeout: int | None = Field(default=None, ge=1, le=86_400, description="seconds per request")
    startup_timeout: int | None = Field(
        default=None, ge=1, le=86_400, description="seconds a container may take to start"
    )


class Scaling(Strict):
    min_containers: int | None = Field(default=None, ge=0, le=1000)
    max_containers: int | None = Field(default=None, ge=1, le=1000)
    buffer_containers: int | None = Field(default=None, ge=0, le=1000)
    scaledown_window: int | None = Field(default=None, ge=2, le=3600, description="seconds")
    max_inputs: int | None = Field(
        default=None, ge=1, le=1000, description="concurrent requests per container"
    )
    target_inputs: int | None = Field(
        default=None,
        ge=1,
        le=1000,
        description="concurrent requests per container the autoscaler aims for",
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> Scaling:
        if (
            self.min_containers is not None
            and self.max_containers is not None
            and self.min_containers > self.max_containers
        ):
            raise ValueError("min_containers is larger than max_containers")
        if self.target_inputs is not None and self.max_inputs is None:
            raise ValueError("target_inputs needs max_inputs, the most a container takes")
        if self.target_inputs is not None and self.target_inputs > (self.max_inputs or 0):
            raise ValueError("target_inputs is larger than max_inputs")
        return self


class Batching(Strict):
    max_batch_size: int = Field(default=8, ge=1, le=1024)
    wait_ms: int = Field(default=5, ge=0, le=10_000)


class Auth(Strict):
    mode: AuthMode = "none"
    secret: SecretName | None = Field(
        default=None, description="Modal Secret that holds the keys, tokens or JWT key"
    )
    header: HeaderName = Field(default="X-API-Key", description="api_key mode: the header")
    env: EnvVar | None = Field(
        default=None,
        description="env var with the valid values (default API_KEYS; "
        "JWT_SECRET or JWT_PUBLIC_KEY for jwt)",
    )
    algorithm: Literal["HS256", "RS256"] = Field(default="HS256", description="jwt mode")
    audience: str | None = Field(default=None, min_length=1, max_length=512)
    issuer: str | None = Field(default=None, min_length=1, max_length=512)
    leeway: int = Field(
        default=30, ge=0, le=600, description="jwt: seconds of clock skew allowed on exp/nbf"
    )


class Cors(Strict):
    origins: list[str] = Field(min_length=1)
    methods: list[Annotated[str, BeforeValidator(_upper)]] | None = None
    headers: list[HeaderName] | None = None
    credentials: bool = False
    max_age: int = Field(default=600, ge=0, le=86_400)

    @field_validator("origins")
    @classmethod
    def _origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin != "*" and not _ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"origin {shown(origin)} is not '*' or scheme://host[:port] "
                    "(no path, no trailing slash)"
                )
        return origins

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str] | None) -> list[str] | None:
        allowed = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "*"}
        for method in methods or []:
            if method not in allowed:
                raise ValueError(f"unknown HTTP method {shown(method)}")
        return methods


class RateLimit(Strict):
    limit: str = Field(description='"N/second", "N/minute", "N/hour" or "N/day"')
    key: Literal["ip", "api_key"] = "ip"
    storage: Literal["memory", "redis", "modal-dict"] = "memory"
    url_env: EnvVar = Field(default="REDIS_URL", description="redis storage: env var with the URL")
    secret: SecretName | None = Field(
        default=None, description="redis storage: the Modal Secret that holds url_env"
    )

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: str) -> str:
        parse_rate(value)
        return value

    @property
    def amount(self) -> int:
        return parse_rate(self.limit)[0]

    @property
    def seconds(self) -> int:
        return parse_rate(self.limit)[1]


def parse_rate(text: str) -> tuple[int, int]:
    """`"60/minute"` -> `(60, 60)`: requests allowed, window in seconds."""
    match = _RATE.fullmatch(text)
    unit = match.group(2) if match else ""
    if not match or unit not in RATE_UNITS:
        raise ValueError(
            f"{shown(text)} is not a rate like '60/minute' (units: second, minute, hour, day)"
        )
    amount = int(match.group(1))
    if amount < 1:
        raise ValueError(f"{shown(text)} allows no requests at all; the smallest limit is 1")
    return amount, RATE_UNITS[unit]


def _rate_limit_kind(value: Any) -> str:
    return "<mapping>" if isinstance(value, dict | RateLimit) else "<none>"


def _off(value: Any) -> Any:
    """`rate_limit: off` is YAML for false; read it as the `none` it means."""
    if value is False or value == "none":
        return "none"
    if isinstance(value, str) and _RATE.fullmatch(value):
        raise ValueError(f"write a route's limit as `rate_limit: {{limit: {value.strip()}}}`")
    raise ValueError(
        f"a route's rate_limit is a mapping like `{{limit: 60/minute}}`, or `none`; "
        f"not {shown(value)}"
    )


RouteRateLimit = Annotated[
    Annotated[RateLimit, Tag("<mapping>")]
    | Annotated[Literal["none"], BeforeValidator(_off), Tag("<none>")],
    Discriminator(_rate_limit_kind),
]


class Signature(Strict):
    """A generic webhook signature: HMAC of the body (or of `<timestamp>.<body>`)."""

    header: HeaderName = Field(description="the header that carries the signature")
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = Field(
        default="",
        max_length=32,
        pattern=r"^[\x21-\x7e]*$",
        description="text before the digest, e.g. sha256=",
    )
    timestamp_header: HeaderName | None = Field(
        default=None, description="signed as `<timestamp>.<body>`; checked against tolerance"
    )


class ExampleRequest(Strict):
    path: str | None = Field(
        default=None,
        pattern=r"^/[^\s]*$",
        max_length=2048,
        description="the URL path, for a route whose path has {params}",
    )
    json_body: Any = Field(default=None, alias="json", description="a JSON body")
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[HeaderName, str] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)


class Example(Strict):
    """One request to a route and what must come back."""

    name: str | None = Field(default=None, max_length=200)
    request: ExampleRequest = ExampleRequest()
    auth: bool = Field(default=True, description="send the credentials from the env")
    status: int = Field(default=200, ge=100, le=599)
    keys: list[str] = Field(default_factory=list, description="keys the JSON answer must have")
    values: dict[str, Any] = Field(
        default_factory=dict, description="keys whose values must be exactly these"
    )


Snapshot = Literal["off", "memory", "gpu"]
SNAPSHOT_HELP = (
    "cold starts from a snapshot: `memory` loads the weights on the CPU before Modal's "
    "memory snapshot and moves them to the GPU after a restore; `gpu` snapshots GPU memory "
    "too (Modal's alpha GPU snapshots); `off` loads on every cold start"
)


class NamedModel(Model):
    """One of several models in an app: each runs in its own Modal class, on its own GPU."""

    gpu: GpuField = Field(default=None, description="this model's GPU; null = CPU")
    resources: Resources = Resources()
    scaling: Scaling = Scaling()
    batching: Batching | None = None
    snapshot: Snapshot = Field(default="off", description=SNAPSHOT_HELP)


def _job(value: Any) -> Any:
    """`job: true` takes the defaults; `job: false` is no job."""
    if value is True:
        return {}
    if value is False:
        return None
    return value


def _socket(value: Any) -> Any:
    """`websocket: true` takes the defaults; `websocket: false` is no WebSocket."""
    return _job(value)


class Socket(Strict):
    """`websocket:` on a `generate` or `handler` route: served as a WebSocket."""

    idle_timeout: int | None = Field(
        default=None,
        ge=1,
        le=86_400,
        description="seconds a connection may sit with no message either way, then closed "
        "(1000); default 300",
    )
    max_lifetime: int | None = Field(
        default=None,
        ge=1,
        le=86_400,
        description="seconds a connection may last, then closed (1001); default "
        "resources.timeout, else 300 (Modal's default function timeout)",
    )


class Job(Strict):
    ttl: int = Field(
        default=3600,
        ge=1,
        le=7 * 86_400,
        description="seconds a finished job's result is kept (then 410)",
    )


class Callbacks(Strict):
    hosts: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        min_length=1,
        max_length=100,
        description="the hosts a submit's `callback_url` may name",
    )
    secret: SecretName | None = Field(default=None, description="Modal Secret with the signing key")
    env: EnvVar = Field(
        default="JOB_CALLBACK_SECRET", description="env var with the key callbacks are signed with"
    )
    private: bool = Field(
        default=False,
        description="allow private, loopback and link-local addresses (a receiver on this "
        "machine); off, they are refused",
    )


class Jobs(Strict):
    timeout: int = Field(
        default=3600, ge=10, le=86_400, description="seconds a job may run on Modal"
    )
    concurrency: int = Field(
        default=defaults.JOB_CONCURRENCY,
        ge=1,
        le=1000,
        description="jobs running at once outside Modal (serve)",
    )
    queue: int = Field(
        default=defaults.JOB_QUEUE,
        ge=1,
        le=100_000,
        description="jobs that may wait for a slot outside Modal (serve); past it, or past "
        "`queue_mib`, a submit is a 503 with Retry-After",
    )
    queue_mib: int = Field(
        default=defaults.JOB_QUEUE_MIB,
        ge=1,
        le=65_536,
        description="MiB of waiting jobs' request values (as JSON) outside Modal (serve)",
    )
    callbacks: Callbacks | None = Field(
        default=None, description="announce a job's end to a submit's `callback_url`"
    )


ResponseType = Literal["json", "text", "stream", "sse", "binary"]
Processor = Literal[
    "csv",
    "image-classification",
    "image-embeddings",
    "object-detection",
    "speech-recognition",
    "handler",
]
# Shared keys: the same bounds wherever an action takes them.
MaxTokens = Annotated[int | None, Field(ge=1, le=1_000_000, description="ceiling")]
MaxChars = Annotated[
    int | None,
    Field(ge=1, le=100_000_000, description="longest prompt or text, in characters"),
]
MaxItems = Annotated[int | None, Field(ge=1, le=100_000, description="texts per request")]
JobField = Annotated[
    Job | None,
    BeforeValidator(_job, json_schema_input_type=Job | bool | None),
    Field(
        description="run as a job: POST answers 202 with an id; GET and DELETE "
        "<path>/jobs/<id> poll and cancel"
    ),
]
SocketField = Annotated[
    Socket | None,
    BeforeValidator(_socket, json_schema_input_type=Socket | bool | None),
    Field(
        description="serve the route as a WebSocket: generate requests (or your handler's "
        "messages) on one connection; `true` or {idle_timeout, max_lifetime}"
    ),
]
RequestBody = Annotated[Fields | None, Field(description="the JSON body's fields")]
PARAMS_HELP = "typed query, path or header parameters"
OLD_PIXELS = "max_pixels"  # the old name of both of these, still read with a warning
NEW_PIXELS = {"generate": "max_image_pixels", "upload": "max_upload_pixels"}


class RouteBase(Strict):
    """The keys every route takes, whatever its action."""

    path: str = Field(
        pattern=_ROUTE_PATH,
        max_length=256,
        description="URL path, starting with /",
    )
    method: Annotated[Method, BeforeValidator(_upper)] = "GET"
    action: Action
    summary: str | None = Field(default=None, max_length=200, description="shown in /docs")
    auth: Literal["none"] | None = Field(default=None, description="`none` makes this route open")
    public: bool = Field(default=False, description="allow a model action without auth, knowingly")
    rate_limit: RouteRateLimit | None = None
    max_bytes: int | None = Field(default=None, ge=1, le=1 << 34, description="largest body")
    model: ModelName | None = Field(
        default=None, description="with `models:`, the model this route runs"
    )
    examples: list[Example] = Field(
        default_factory=list, description="requests and expected answers, run by `endpointgen test`"
    )

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


class HealthRoute(RouteBase):
    """`health`: 200 once the model is loaded, 503 before that or after a failed load."""

    action: Literal["health"]


class GenerateRoute(RouteBase):
    """`generate`: text from a prompt, or an image on a text-to-image model."""

    action: Literal["generate"]
    stream: bool = Field(default=False, description="Server-Sent Events (text models)")
    websocket: SocketField = None
    job: JobField = None
    max_tokens: MaxTokens = None
    max_chars: MaxChars = None
    max_image_pixels: int | None = Field(
        default=None,
        ge=1,
        le=500_000_000,
        description="text-to-image: the largest width x height a request may ask for "
        "(422 over it; default 1048576)",
    )
    max_pixels: int | None = Field(
        default=None,
        ge=1,
        le=500_000_000,
        description="the old name of max_image_pixels",
        json_schema_extra={"deprecated": True},
    )
    max_steps: int | None = Field(
        default=None, ge=1, le=150, description="text-to-image: most denoising steps (default 50)"
    )

    @property
    def image_pixels(self) -> int | None:
        """`max_image_pixels`, or its old name `max_pixels`."""
        return self.max_pixels if self.max_image_pixels is None else self.max_image_pixels


class ClassifyRoute(RouteBase):
    """`classify`: labels for texts, as the model's task says."""

    action: Literal["classify"]
    job: JobField = None
    max_chars: MaxChars = None
    max_items: MaxItems = None


class EmbedRoute(RouteBase):
    """`embed`: vectors for texts."""

    action: Literal["embed"]
    job: JobField = None
    max_chars: MaxChars = None
    max_items: MaxItems = None


class RerankRoute(RouteBase):
    """`rerank`: texts ordered by their relevance to a query."""

    action: Literal["rerank"]
    job: JobField = None
    max_chars: MaxChars = None
    max_items: MaxItems = None


class OpenAIRoute(RouteBase):
    """`openai`: OpenAI's API under `path`, in front of the spec's model."""

    action: Literal["openai"]
    max_tokens: MaxTokens = None
    max_chars: MaxChars = None
    max_items: MaxItems = None


class WebhookRoute(RouteBase):
    """`webhook`: a provider's signed request, checked before anything reads it."""

    action: Literal["webhook"]
    provider: Literal["github", "stripe", "slack", "generic"] | None = None
    secret: SecretName | None = Field(default=None, description="the Modal Secret")
    env: EnvVar | None = Field(default=None, description="env var with the signing key")
    signature: Signature | None = Field(
        default=None, description="with provider generic: how the signature is made"
    )
    tolerance: int | None = Field(
        default=None,
        ge=1,
        le=86_400,
        description="seconds a signed timestamp may be off (default 300)",
    )


class RespondRoute(RouteBase):
    """`respond`: a fixed answer, with {param} placeholders filled in."""

    action: Literal["respond"]
    params: Params = Field(default_factory=dict, description=PARAMS_HELP)
    request: RequestBody = None
    response: Any = Field(
        default=None, description="the answer; {param} placeholders are filled in"
    )
    response_type: ResponseType | None = Field(default=None, description="json (default) or text")
    status: int | None = Field(default=None, ge=200, le=299, description="success code")


class HandlerRoute(RouteBase):
    """`handler`: your function, with the parameters and body fields."""

    action: Literal["handler"]
    websocket: SocketField = None
    job: JobField = None
    params: Params = Field(default_factory=dict, description=PARAMS_HELP)
    request: RequestBody = None
    response_type: ResponseType | None = Field(
        default=None, description="json (default), text, stream, sse or binary"
    )
    handler: HandlerRef | None = Field(
        default=None, description="file.py:function, relative to the spec"
    )
    media_type: MediaType | None = Field(
        default=None,
        description="with `response_type: binary`: the answer's Content-Type "
        "(default application/octet-stream)",
    )


class UploadRoute(RouteBase):
    """`upload`: a file sent as multipart/form-data, read by a processor."""

    action: Literal["upload"]
    params: Params = Field(default_factory=dict, description=PARAMS_HELP)
    processor: Processor | None = Field(default=None, description="what to do with the file")
    handler: HandlerRef | None = Field(
        default=None, description="with `processor: handler`: file.py:function"
    )
    content_types: list[MediaType] | None = Field(
        default=None, description="allowed media types (415 otherwise)"
    )
    max_rows: int | None = Field(default=None, ge=1, le=100_000_000, description="csv: most rows")
    max_upload_pixels: int | None = Field(
        default=None,
        ge=1,
        le=500_000_000,
        description="an image: the most pixels its header may declare (413 over it; "
        "default 40000000)",
    )
    max_pixels: int | None = Field(
        default=None,
        ge=1,
        le=500_000_000,
        description="the old name of max_upload_pixels",
        json_schema_extra={"deprecated": True},
    )

    @property
    def upload_pixels(self) -> int | None:
        """`max_upload_pixels`, or its old name `max_pixels`."""
        return self.max_pixels if self.max_upload_pixels is None else self.max_upload_pixels


class FileRoute(RouteBase):
    """`file`: files from a folder next to the spec, or from a Modal Volume."""

    action: Literal["file"]
    params: Params = Field(default_factory=dict, description=PARAMS_HELP)
    folder: str | None = Field(
        default=None, min_length=1, max_length=1024, description="local folder to serve"
    )
    volume: VolumeName | None = Field(default=None, description="Modal Volume to serve")
    download_name: str | None = Field(
        default=None, min_length=1, max_length=200, description="name the browser saves"
    )
    media_type: MediaType | None = Field(default=None, description="the files' Content-Type")


# One class per action, in the order `Action` lists them.
ROUTE_CLASSES: dict[str, type[RouteBase]] = {
    "health": HealthRoute,
    "generate": GenerateRoute,
    "classify": ClassifyRoute,
    "embed": EmbedRoute,
    "rerank": RerankRoute,
    "webhook": WebhookRoute,
    "respond": RespondRoute,
    "handler": HandlerRoute,
    "upload": UploadRoute,
    "file": FileRoute,
    "openai": OpenAIRoute,
}
Route = Annotated[
    HealthRoute
    | GenerateRoute
    | ClassifyRoute
    | EmbedRoute
    | RerankRoute
    | WebhookRoute
    | RespondRoute
    | HandlerRoute
    | UploadRoute
    | FileRoute
    | OpenAIRoute,
    Field(discriminator="action"),
]
# The routes a job may run, and those that take params.
JOB_ROUTES = (GenerateRoute, ClassifyRoute, EmbedRoute, RerankRoute, HandlerRoute)
ShapedRoute = RespondRoute | HandlerRoute | UploadRoute | FileRoute
SHAPED_ROUTES = (RespondRoute, HandlerRoute, UploadRoute, FileRoute)


def socket_of(route: RouteBase) -> Socket | None:
    """The route's `websocket:`; None for a route served over plain HTTP."""
    return route.websocket if isinstance(route, GenerateRoute | HandlerRoute) else None


def job_of(route: RouteBase) -> Job | None:
    """The route's `job:`; None for a route that is no job, or whose action runs none."""
    return route.job if isinstance(route, JOB_ROUTES) else None


def actions_taking(key: str) -> list[str]:
    """The actions whose routes take `key`, sorted."""
    return sorted(a for a, cls in ROUTE_CLASSES.items() if key in cls.model_fields)


class Metrics(Strict):
    enabled: bool = Field(default=False, description="serve Prometheus metrics at /metrics")
    public: bool = Field(
        default=False, description="answer /metrics without the app's auth (off: auth applies)"
    )


def _command(text: str) -> str:
    """A build command is the spec author's own shell (trusted), but one line of it: a line
    break or a NUL would end the image's RUN step early and build something else."""
    if not text.strip():
        raise ValueError("a build command cannot be empty")
    if any(c in text for c in "\n\r\0"):
        raise ValueError("a build command is one line; join steps with `&&`")
    return text


class Image(Strict):
    """The container image, beyond what the spec's model and packages install."""

    python: Literal["3.10", "3.11", "3.12", "3.13"] = Field(
        default="3.11", description="the image's Python (the lock is resolved for 3.11)"
    )
    system_packages: list[Annotated[str, Field(pattern=_DEBIAN_PACKAGE)]] = Field(
        default_factory=list, max_length=100, description="Debian packages (apt), e.g. ffmpeg"
    )
    commands: list[Annotated[str, Field(max_length=4096), AfterValidator(_command)]] = Field(
        default_factory=list,
        max_length=50,
        description="shell commands run while the image is built, after the packages",
    )


class Tracing(Strict):
    enabled: bool = Field(
        default=False,
        description="OpenTelemetry spans for every request, sent where OTEL_EXPORTER_OTLP_* say",
    )


class Spec(Strict):
    """One Modal app that serves HTTP endpoints."""

    version: Literal[1] = 1
    name: str = Field(
        pattern=_APP_NAME,
        description="the Modal app name; lowercase letters, digits and dashes",
    )
    description: str = Field(default="", max_length=4096)
    model: Model | None = None
    models: dict[ModelName, NamedModel] = Field(
        default_factory=dict,
        description="several models, each on its own GPU, behind one CPU web tier",
    )
    shape: Literal["single", "split"] | None = Field(
        default=None,
        description="with `model`: `single` serves from the model's container; `split` puts "
        "a CPU web tier in front, so auth, limits and probes never wake a GPU. Default: "
        "`split` when a route is a job (submits and polls never need a GPU), else `single`",
    )
    region: Region | list[Region] | None = Field(
        default=None,
        description="where Modal runs the app's containers (`us`, `eu`, `us-east`, ...; a "
        "list allows any of them); Modal charges more for a pinned region",
    )
    snapshot: Snapshot = Field(default="off", description=SNAPSHOT_HELP)
    gpu: GpuField = Field(
        default=None,
        description="a Modal GPU ('L40S', 'H100:2') or a list tried in order; null = CPU",
    )
    resources: Resources = Resources()
    scaling: Scaling = Scaling()
    batching: Batching | None = None
    secrets: list[SecretName] = Field(default_factory=list, description="extra Modal Secrets")
    packages: list[Requirement] = Field(
        default_factory=list, description="extra pip packages for the image (handlers' imports)"
    )
    env: dict[EnvVar, Annotated[str, BeforeValidator(_env_value)]] = Field(
        default_factory=dict, description="non-secret environment variables"
    )
    image: Image = Image()
    auth: Auth = Auth()
    cors: Cors | None = None
    rate_limit: RateLimit | None = None
    metrics: Metrics = Metrics()
    tracing: Tracing = Tracing()
    jobs: Jobs = Field(default_factory=Jobs, description="settings of the routes with `job:`")
    docs: Literal["auth", "public", "off"] = Field(
        default="auth",
        description="/docs, /redoc and /openapi.json: behind the app's auth (public when it "
        "has none), for anyone, or not served",
    )
    routes: list[Route] = Field(min_length=1)
    errors: dict[ExceptionName, ErrorMapping] = Field(
        default_factory=dict,
        description="exception class names raised by handlers or the model -> status, message",
    )
    environments: dict[EnvName, dict[str, Any]] = Field(
        default_factory=dict,
        description="overlays deep-merged over the base by `--env NAME`",
    )

    @property
    def serving_shape(self) -> Literal["single", "split"]:
        """`shape`, or its default: a model app with a job route is split, so a job's
        submit and polls are answered on CPU and never queue for, or wake, a GPU."""
        if self.shape is not None:
            return self.shape
        jobs = any(job_of(r) for r in self.routes)
        return "split" if self.model is not None and jobs else "single"

    @property
    def module_name(self) -> str:
        return self.name.replace("-", "_")

    def model_for(self, route: RouteBase) -> Model | None:
        """The model a route runs: the spec's one model, or the one it names in `models`."""
        if self.models:
            return self.models.get(route.model) if route.model else None
        return self.model

    @property
    def all_models(self) -> list[Model]:
        return list(self.models.values()) if self.models else [self.model] if self.model else []
