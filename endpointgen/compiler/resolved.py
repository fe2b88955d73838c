"""The resolved spec's parts: frozen, typed, every default filled in (`plan.make_plan`).

A `Plan` is made of these: the models and how each is deployed, one class per kind of
route with only the keys its action reads, auth, CORS, rate limits, jobs. The templates,
`plan`, `check` and the GitOps views read them; nothing here is a spec's raw data.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import ClassVar, TypeAlias

JSON: TypeAlias = str | int | float | bool | list["JSON"] | dict[str, "JSON"] | None
VllmOption: TypeAlias = int | float | bool | str


@dataclass(frozen=True)
class Shipped:
    """A local file or folder the image carries, and where it lands in the container."""

    local: str  # relative to the built module, POSIX-style
    remote: str
    module: str | None = None  # a handler file: the module name it is imported as


@dataclass(frozen=True)
class HandlerRef:
    """`file.py:function`: the shipped file, and the function in it."""

    local: str
    remote: str
    module: str
    function: str
    shown: str  # as the spec wrote the file, for messages


@dataclass(frozen=True)
class Loader(HandlerRef):
    """A model's own loader (`model.loader`)."""

    text_engine: bool = False  # what it returns must generate text (generate/openai routes)


@dataclass(frozen=True)
class VolumeMount:
    name: str
    mount: str


@dataclass(frozen=True)
class WeightsVolume:
    """A model's weights on a Volume: the Volume, where it is mounted, the model's folder."""

    name: str
    mount: str
    folder: str


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    wait_ms: int


@dataclass(frozen=True)
class ModelConfig:
    """What the app needs to load and run one model."""

    id: str
    task: str
    revision: str | None
    resolved: bool  # the revision was pinned at build time (the Hub's `main`), not by the spec
    dtype: str
    variant: str | None  # a weights variant (`fp16`)
    local_dir: str | None
    remote_dir: str
    loader: Loader | None
    batching: Batching | None
    volume: WeightsVolume | None
    engine: str  # transformers or vllm
    vllm: dict[str, VllmOption] | None


@dataclass(frozen=True)
class ModelDeployment:
    """One model of several (`models:`), with the Modal class that serves it."""

    name: str
    class_name: str
    config: ModelConfig
    gpu: str | list[str] | None
    cpu: float | None
    memory: int | None
    timeout: int | None
    autoscaling: dict[str, int]
    max_inputs: int | None
    target_inputs: int | None
    startup_timeout: int | None
    snapshot: str


@dataclass(frozen=True)
class AuthPlan:
    mode: str
    env: str | None = None
    header: str | None = None  # api_key
    algorithm: str | None = None  # jwt
    audience: str | None = None
    issuer: str | None = None
    leeway: int | None = None


@dataclass(frozen=True)
class CorsPlan:
    origins: list[str]
    methods: list[str]
    headers: list[str]
    credentials: bool
    max_age: int
    expose: list[str]


@dataclass(frozen=True)
class RateRule:
    scope: str  # "app", or "route-N" for a route's own budget
    limit: int
    seconds: int
    key: str
    storage: str
    url_env: str | None = None  # redis


@dataclass(frozen=True)
class MetricsPlan:
    auth: bool  # whether the app's auth guards /metrics


@dataclass(frozen=True)
class CallbacksPlan:
    hosts: list[str]
    secret: str | None
    env: str
    private: bool


@dataclass(frozen=True)
class JobsPlan:
    timeout: int
    concurrency: int
    queue: int
    queue_mib: int
    callbacks: CallbacksPlan | None


@dataclass(frozen=True)
class ErrorPlan:
    status: int
    message: str


@dataclass(frozen=True)
class FieldPlan:
    """A declared query, path or header parameter (`where`), or a body's field."""

    name: str
    type: str
    required: bool
    default: JSON = None
    where: str | None = None  # query, path or header; None for a body field
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    enum: list[JSON] | None = None
    description: str | None = None


@dataclass(frozen=True)
class JobPlan:
    ttl: int


@dataclass(frozen=True)
class SocketPlan:
    """A route served as a WebSocket: its limits, and whether `POST <path>/ticket` gives
    tickets (behind auth with a secret to sign them)."""

    idle_timeout: int
    max_lifetime: int
    ticket: bool


@dataclass(frozen=True, kw_only=True)
class RoutePlan:
    """What every route has; each action's class adds what only it reads."""

    LIMITS: ClassVar[tuple[str, ...]] = ()

    path: str
    method: str
    action: str
    summary: str | None  # the spec's; FastAPI's own (from the function) otherwise
    auth: str
    rate_limit: RateRule | None
    max_bytes: int
    model: str | None  # the name of the model it runs or reports on
    job: JobPlan | None = None
    params: list[FieldPlan]

    def limits(self) -> dict[str, int]:
        """Its ceilings, by key: `max_bytes` and those of its action."""
        return {key: getattr(self, key) for key in ("max_bytes", *self.LIMITS)}


@dataclass(frozen=True, kw_only=True)
class HealthPlan(RoutePlan):
    pass


@dataclass(frozen=True, kw_only=True)
class GeneratePlan(RoutePlan):
    LIMITS: ClassVar[tuple[str, ...]] = ("max_tokens", "max_chars")
    stream: bool
    max_tokens: int
    max_chars: int
    websocket: SocketPlan | None = None


@dataclass(frozen=True, kw_only=True)
class ImagePlan(RoutePlan):
    """A `generate` route on a text-to-image model."""

    LIMITS: ClassVar[tuple[str, ...]] = ("max_chars", "max_image_pixels", "max_steps")
    max_chars: int
    max_image_pixels: int
    max_steps: int


@dataclass(frozen=True, kw_only=True)
class BatchPlan(RoutePlan):
    """`classify`, `embed` and `rerank`: items in, one answer each."""

    LIMITS: ClassVar[tuple[str, ...]] = ("max_chars", "max_items")
    max_chars: int
    max_items: int


@dataclass(frozen=True, kw_only=True)
class OpenAIPlan(RoutePlan):
    LIMITS: ClassVar[tuple[str, ...]] = ("max_tokens", "max_chars", "max_items")
    max_tokens: int
    max_chars: int
    max_items: int


@dataclass(frozen=True)
class Signature:
    header: str
    algorithm: str
    encoding: str
    prefix: str | None
    timestamp_header: str | None

    def options(self) -> list[tuple[str, str | None]]:
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


@dataclass(frozen=True)
class WebhookRule:
    provider: str | None  # required by the checks
    env: str | None
    tolerance: int
    signature: Signature | None = None


@dataclass(frozen=True, kw_only=True)
class WebhookPlan(RoutePlan):
    webhook: WebhookRule


@dataclass(frozen=True, kw_only=True)
class RespondPlan(RoutePlan):
    request: list[FieldPlan] | None
    response_type: str
    response: JSON
    status: int


@dataclass(frozen=True, kw_only=True)
class HandlerPlan(RoutePlan):
    request: list[FieldPlan] | None
    response_type: str
    handler: HandlerRef | None  # required by the checks; None only in a spec they refuse
    media_type: str | None  # binary answers
    websocket: SocketPlan | None = None


@dataclass(frozen=True)
class UploadSettings:
    processor: str | None
    content_types: list[str]
    max_rows: int
    max_upload_pixels: int | None


@dataclass(frozen=True, kw_only=True)
class UploadPlan(RoutePlan):
    upload: UploadSettings
    handler: HandlerRef | None


@dataclass(frozen=True)
class FileSettings:
    folder: Shipped | None
    volume: VolumeMount | None
    param: str
    download_name: str | None
    media_type: str | None


@dataclass(frozen=True, kw_only=True)
class FilePlan(RoutePlan):
    file: FileSettings
