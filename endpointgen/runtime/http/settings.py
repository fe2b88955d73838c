"""What an app's layers and error handlers read, kept on `app.state.endpointgen`: its
mapped errors, the error shape under a path prefix, its metrics and its CORS policy."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

if TYPE_CHECKING:
    from endpointgen.runtime.http.cors import CorsPolicy


@dataclass(frozen=True)
class ErrorFormat:
    """Errors in another shape than ErrorBody (OpenAI's): how to write one, its schema."""

    write: Callable[[int, str, str | None], JSONResponse]  # status, message, param
    schema: type[BaseModel]


@dataclass
class Settings:
    """What the middleware and the error handlers read, kept on `app.state.endpointgen`."""

    errors: dict[str, tuple[int, str]] = field(default_factory=dict)
    formats: dict[str, ErrorFormat] = field(default_factory=dict)  # by path prefix
    metrics: Any = None  # a `metrics.Metrics` when the app serves /metrics
    cors: CorsPolicy | None = None

    def error_format(self, path: str) -> ErrorFormat | None:
        for prefix, format in self.formats.items():
            if path == prefix or path.startswith(prefix + "/"):
                return format
        return None

    def answer(self, path: str, status: int, body: dict[str, Any], headers: Any = None) -> Any:
        special = self.error_format(path)
        if special is not None:
            # OpenAI answers a malformed request with 400, and its clients expect that; its
            # message says what is wrong, and `param` where.
            message, param = str(body["error"]), None
            if body.get("detail"):
                first = body["detail"][0]
                message, param = str(first["msg"]), str(first["loc"][-1])
            response = special.write(400 if status == 422 else status, message, param)
            response.headers.update(headers or {})
            return response
        return JSONResponse(body, status, headers=headers)

    def mapped(self, exc: Exception) -> tuple[int, str] | None:
        """The spec's `errors:` entry for this exception or one of its base classes."""
        for kind in type(exc).__mro__:
            if kind.__name__ in self.errors:
                return self.errors[kind.__name__]
        return None


def settings_of(web: Any) -> Settings:
    found: Settings = web.state.endpointgen
    return found
