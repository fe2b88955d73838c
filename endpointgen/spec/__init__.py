"""The spec language: models, GPU names, and validation that points at the YAML."""

from __future__ import annotations

from pydantic import ValidationError

from endpointgen.compiler.loader import Document
from endpointgen.errors import SpecError
from endpointgen.spec.errors import problems_from
from endpointgen.spec.models import (
    Auth,
    Batching,
    ClassifyRoute,
    Cors,
    EmbedRoute,
    FileRoute,
    GenerateRoute,
    HandlerRoute,
    HealthRoute,
    Model,
    OpenAIRoute,
    RateLimit,
    RerankRoute,
    Resources,
    RespondRoute,
    Route,
    RouteBase,
    Scaling,
    Spec,
    UploadRoute,
    WebhookRoute,
)

__all__ = [
    "Auth",
    "Batching",
    "ClassifyRoute",
    "Cors",
    "EmbedRoute",
    "FileRoute",
    "GenerateRoute",
    "HandlerRoute",
    "HealthRoute",
    "Model",
    "OpenAIRoute",
    "RateLimit",
    "RerankRoute",
    "Resources",
    "RespondRoute",
    "Route",
    "RouteBase",
    "Scaling",
    "Spec",
    "UploadRoute",
    "WebhookRoute",
    "json_schema",
    "parse",
]


def parse(doc: Document) -> Spec:
    """Validate a loaded document; SpecError lists every problem with its position."""
    try:
        return Spec.model_validate(doc.data)
    except ValidationError as exc:
        raise SpecError(problems_from(exc, doc, Spec)) from None


def json_schema() -> dict[str, object]:
    schema = Spec.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "endpointgen spec"
    return schema
