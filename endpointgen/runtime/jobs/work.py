"""What a job's work answers: the route's answer or failure kept as JSON data, and the
values a job is spawned with, as plain data and back."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from endpointgen.runtime import http
from endpointgen.runtime.jobs.callbacks import Callbacks

Work = Callable[..., Awaitable[Any]]


class Routes(Protocol):
    """What running a job reads of the app's job routes (`Jobs`): each path's work and
    ttl, the settings that map its exceptions, and where its end may be announced."""

    settings: http.Settings
    works: dict[str, tuple[Work, int]]
    callbacks: Callbacks | None


def encode(answer: Any) -> Any:
    """The route's answer as JSON: a JSON body parsed, text as text, other bytes as
    `{media_type, base64}` (and `seed`, from an image's `X-Seed`); anything else as
    FastAPI would serialize it."""
    if isinstance(answer, http.Response):
        media = answer.media_type or ""
        body = bytes(answer.body)
        if media == "application/json" or media.endswith("+json"):
            return json.loads(body) if body else None
        if media.startswith("text/"):
            return body.decode(answer.charset)
        data: dict[str, Any] = {"media_type": media, "base64": base64.b64encode(body).decode()}
        if "x-seed" in answer.headers:
            data["seed"] = int(answer.headers["x-seed"])
        return data
    return jsonable_encoder(answer)


async def outcome(settings: http.Settings, work: Work, values: dict[str, Any]) -> dict[str, Any]:
    """Run the work: `{"status": "succeeded", "result": ...}` or `{"status": "failed",
    "error": {status, message}}`, as the route would have answered; no traceback leaves."""
    try:
        answered = await work(**values)
        result = encode(answered)
    except HTTPException as exc:
        return failed(exc.status_code, str(exc.detail))
    except RequestValidationError as exc:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return failed(422, "invalid request", detail)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        mapped = settings.mapped(exc)
        if mapped is None:
            http.log.exception("job failed")
            return failed(500, "internal server error")
        return failed(*mapped)
    done = {"status": "succeeded", "result": result, "finished_at": time.time()}
    if isinstance(answered, http.Response) and isinstance(result, dict) and "base64" in result:
        done["binary"] = True  # `Prefer: wait` answers the bytes themselves
    return done


def failed(status: int, message: str, detail: Any = None) -> dict[str, Any]:
    error = {"status": status, "message": message}
    if detail:
        error["detail"] = detail
    return {"status": "failed", "error": error, "finished_at": time.time()}


def to_wire(values: dict[str, Any]) -> dict[str, Any]:
    """A job's parameters as plain JSON data, to cross to the Modal worker: no pickled
    class of the built module, whose import path a container may not share."""
    return {
        name: value.model_dump(mode="json", by_alias=True)
        if isinstance(value, BaseModel)
        else jsonable_encoder(value)
        for name, value in values.items()
    }


def from_wire(work: Work, values: dict[str, Any]) -> dict[str, Any]:
    """`to_wire`'s data as the work's own parameter types again (a body model validated
    as FastAPI validated it; plain values as they are)."""
    params = inspect.signature(work).parameters
    out = {}
    for name, value in values.items():
        kind = params[name].annotation if name in params else None
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out[name] = kind.model_validate(value)
        else:
            out[name] = value
    return out
