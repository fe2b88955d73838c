"""Model tasks: the model loaded once, and what each model route does with it.

A built module makes one `Model` per model its spec names, loads it in `@modal.enter`
(or once under `endpointgen serve`), and its routes call `generate`, `stream`,
`classify`, `embed` and `health`. Requests are checked against the route's limits
(`max_tokens`, `max_chars`, `max_items`) with a 422 before any model work.

A module per concern, each importing only those above it in this list: `checks` (the
route's ceilings), `schemas` (request and response bodies), `loading` (what to load and
how), `calls` (engine calls), `generate`, `classify` and `media` (what each route runs),
`container` (inside a model's own Modal class) and `model` (`Model`, made of them).
"""

from endpointgen.runtime.http import Rejected
from endpointgen.runtime.tasks.checks import (
    DRAWN_PIXELS,
    DRAWN_STEPS,
    MAX_CHARS,
    MAX_ITEMS,
    MAX_STOP_CHARS,
    MAX_STOPS,
    MAX_TOKENS,
    check_texts,
    stops_within,
)
from endpointgen.runtime.tasks.classify import one_or_all, texts_of
from endpointgen.runtime.tasks.container import STOP_POLL, Stop
from endpointgen.runtime.tasks.generate import Asked, Chat, Pieces, Steps, preparing, within
from endpointgen.runtime.tasks.loading import (
    Batching,
    Loader,
    LoadFailed,
    Task,
    Vllm,
    here,
    load_reason,
    short_reason,
)
from endpointgen.runtime.tasks.media import decoded
from endpointgen.runtime.tasks.model import Model
from endpointgen.runtime.tasks.schemas import (
    IMAGE_ANSWERS,
    IMAGE_TYPES,
    MAX_LABELS,
    Classification,
    ClassifyRequest,
    EmbedRequest,
    EmbedResponse,
    Entities,
    Entity,
    GenerateRequest,
    GenerateResponse,
    ImageRequest,
    ImageResponse,
    Ranked,
    RerankRequest,
    ZeroShotRequest,
    ZeroShotResult,
)

__all__ = [
    "DRAWN_PIXELS",
    "DRAWN_STEPS",
    "IMAGE_ANSWERS",
    "IMAGE_TYPES",
    "MAX_CHARS",
    "MAX_ITEMS",
    "MAX_LABELS",
    "MAX_STOPS",
    "MAX_STOP_CHARS",
    "MAX_TOKENS",
    "STOP_POLL",
    "Asked",
    "Batching",
    "Chat",
    "Classification",
    "ClassifyRequest",
    "EmbedRequest",
    "EmbedResponse",
    "Entities",
    "Entity",
    "GenerateRequest",
    "GenerateResponse",
    "ImageRequest",
    "ImageResponse",
    "LoadFailed",
    "Loader",
    "Model",
    "Pieces",
    "Ranked",
    "Rejected",
    "RerankRequest",
    "Steps",
    "Stop",
    "Task",
    "Vllm",
    "ZeroShotRequest",
    "ZeroShotResult",
    "check_texts",
    "decoded",
    "here",
    "load_reason",
    "one_or_all",
    "preparing",
    "short_reason",
    "stops_within",
    "texts_of",
    "within",
]
