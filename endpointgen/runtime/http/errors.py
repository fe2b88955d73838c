"""JSON error bodies, and the handlers that answer with them: FastAPI's HTTP errors and
invalid requests, and `Rejected`, a 422 for a rule a schema cannot state."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from endpointgen.runtime.http.ids import request_id
from endpointgen.runtime.http.settings import settings_of


class ErrorBody(BaseModel):
    error: str
    request_id: str
    detail: list[dict[str, Any]] | None = None


def error_body(request_id: str, error: str, **extra: Any) -> dict[str, Any]:
    return {"error": error, **extra, "request_id": request_id}


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
