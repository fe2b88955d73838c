"""Pydantic models of the spec language, v1. Unknown keys are errors everywhere."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from endpointgen.spec import gpu as gpu_names

Task = Literal["text-generation", "text-classification", "embeddings"]
Action = Literal["health", "generate", "classify", "embed", "webhook"]
Method = Literal["GET", "POST", "PUT", "PATCH", "DELETE"]
AuthMode = Literal["none", "api_key", "bearer", "jwt", "proxy"]

# Modal object names: letters, digits, dashes, periods, underscores; under 64 characters.
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,63}$")]
EnvVar = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
HeaderName = Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$")]
EnvName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]

RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*([a-z]+?)s?\s*$")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?$")


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _env_value(value: Any) -> Any:
    """`env:` values may be written as numbers or booleans; they reach the app as strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _gpu(value: Any) -> Any:
    return gpu_names.normalize(value)


GpuField = Annotated[
    list[str] | None,
    BeforeValidator(_gpu, json_schema_input_type=str | list[str] | None),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Model(Strict):
    """The model an app serves."""

    id: str = Field(
        min_length=1,
        max_length=1024,
        description="Hugging Face repo id, or a local directory (relative to the spec)",
    )
    task: Task
    revision: str | None = Field(
        default=None, min_length=1, max_length=256, description="git revision on the Hub"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"


class Resources(Strict):
    cpu: float | None = Field(default=None, gt=0, le=64, description="CPU cores")
    memory: int | None = Field(default=None, ge=128, le=1_048_576, description="MiB")
    timeout: int | None = Field(default=None, ge=1, le=86_400, description="seconds per request")


class Scaling(Strict):
    min_containers: int | None = Field(default=None, ge=0, le=1000)
    max_containers: int | None = Field(default=None, ge=1, le=1000)
    buffer_containers: int | None = Field(default=None, ge=0, le=1000)
    scaledown_window: int | None = Field(default=None, ge=2, le=3600, description="seconds")
    max_inputs: int | None = Field(
        default=None, ge=1, le=1000, description="concurrent requests per container"
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> Scaling:
        if (
            self.min_containers is not None
            and self.max_containers is not None
            and self.min_containers > self.max_containers
        ):
            raise ValueError("min_containers is larger than max_containers")
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
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(
                    f"origin {origin!r} is not '*' or scheme://host[:port] "
                    "(no path, no trailing slash)"
                )
        return origins

    @field_validator("methods")
    @classmethod
    def _methods(cls, methods: list[str] | None) -> list[str] | None:
        allowed = {"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "*"}
        for method in methods or []:
            if method not in allowed:
                raise ValueError(f"unknown HTTP method {method!r}")
        return methods


class RateLimit(Strict):
    limit: str = Field(description='"N/second", "N/minute", "N/hour" or "N/day"')
    key: Literal["ip", "api_key"] = "ip"
    storage: Literal["memory", "redis", "modal-dict"] = "memory"
    url_env: EnvVar = Field(default="REDIS_URL", description="redis storage: env var with the URL")

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
    match = _RATE.match(text)
    unit = match.group(2) if match else ""
    if not match or unit not in RATE_UNITS:
        raise ValueError(f"{text!r} is not a rate like '60/minute' (units: second, minute, hour, day)")
    amount = int(match.group(1))
    if amount < 1:
        raise ValueError(f"{text!r} allows no requests at all; the smallest limit is 1")
    return amount, RATE_UNITS[unit]


def _rate_limit_kind(value: Any) -> str:
    return "<mapping>" if isinstance(value, dict | RateLimit) else "<none>"


def _off(value: Any) -> Any:
    """`rate_limit: off` is YAML for false; read it as the `none` it means."""
    return "none" if value is False else value


RouteRateLimit = Annotated[
    Annotated[RateLimit, Tag("<mapping>")]
    | Annotated[Literal["none"], BeforeValidator(_off), Tag("<none>")],
    Discriminator(_rate_limit_kind),
]


class Route(Strict):
    path: str = Field(
        pattern=r"^/[A-Za-z0-9._~/-]*$",
        max_length=256,
        description="URL path, starting with /",
    )
    method: Annotated[Method, BeforeValidator(_upper)] = "GET"
    action: Action
    summary: str | None = Field(default=None, max_length=200, description="shown in /docs")
    stream: bool = Field(default=False, description="generate: Server-Sent Events")
    auth: Literal["none"] | None = Field(default=None, description="`none` makes this route open")
    public: bool = Field(
        default=False, description="allow a model action without auth, knowingly"
    )
    rate_limit: RouteRateLimit | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000, description="ceiling")
    max_chars: int | None = Field(
        default=None, ge=1, le=100_000_000, description="longest prompt or text, in characters"
    )
    max_items: int | None = Field(default=None, ge=1, le=100_000, description="texts per request")
    max_bytes: int | None = Field(default=None, ge=1, le=1 << 34, description="largest body")
    provider: Literal["github", "stripe", "slack", "generic"] | None = None
    secret: SecretName | None = Field(default=None, description="webhook: Modal Secret")
    env: EnvVar | None = Field(default=None, description="webhook: env var with the signing key")

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)


class Spec(Strict):
    """One Modal app that serves HTTP endpoints."""

    version: Literal[1] = 1
    name: str = Field(
        pattern=r"^[a-z][a-z0-9-]{0,47}$",
        description="the Modal app name; lowercase letters, digits and dashes",
    )
    description: str = Field(default="", max_length=4096)
    model: Model | None = None
    gpu: GpuField = Field(
        default=None,
        description="a Modal GPU ('L40S', 'H100:2') or a list tried in order; null = CPU",
    )
    resources: Resources = Resources()
    scaling: Scaling = Scaling()
    batching: Batching | None = None
    secrets: list[SecretName] = Field(default_factory=list, description="extra Modal Secrets")
    env: dict[EnvVar, Annotated[str, BeforeValidator(_env_value)]] = Field(
        default_factory=dict, description="non-secret environment variables"
    )
    auth: Auth = Auth()
    cors: Cors | None = None
    rate_limit: RateLimit | None = None
    routes: list[Route] = Field(min_length=1)
    environments: dict[EnvName, dict[str, Any]] = Field(
        default_factory=dict,
        description="overlays deep-merged over the base by `--env NAME`",
    )

    @property
    def module_name(self) -> str:
        return self.name.replace("-", "_")
