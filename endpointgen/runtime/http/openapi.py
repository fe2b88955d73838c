"""What /openapi.json says each route may answer besides success: the errors of its
body, guards and mapped exceptions, and its success when FastAPI's own is not it."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from endpointgen.runtime.http.body import takes_a_form
from endpointgen.runtime.http.errors import ErrorBody
from endpointgen.runtime.http.guards import checks_of
from endpointgen.runtime.http.responses import Binary, EventStream
from endpointgen.runtime.http.settings import Settings, settings_of

G = TypeVar("G")

# One Server-Sent Event, as a streaming route's success documents it.
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
        elif takes_a_form(route):  # multipart data that cannot be parsed
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
