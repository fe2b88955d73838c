"""What a route answers besides JSON: plain text, bytes of one media type, and the
streams (Server-Sent Events, plain text) a route sends a piece at a time."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, Iterable
from typing import Any

from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)

__all__ = [
    "Binary",
    "EventStream",
    "FileResponse",
    "JSONResponse",
    "PlainTextResponse",
    "Response",
    "StreamingResponse",
    "Text",
    "TextStream",
    "binary",
    "events",
    "sse",
]


class Text(PlainTextResponse):
    """A plain-text answer (documented as text/plain)."""


class EventStream(StreamingResponse):
    media_type = "text/event-stream"


class TextStream(StreamingResponse):
    media_type = "text/plain"


class Binary(Response):
    """Bytes of one media type (documented as a binary string of that type)."""

    media_type = "application/octet-stream"


_BINARY: dict[str, type[Binary]] = {}


def binary(media_type: str) -> type[Binary]:
    """`response_class=` for a route that answers bytes of `media_type`."""
    found = _BINARY.get(media_type)
    if found is None:
        found = _BINARY[media_type] = type("Binary", (Binary,), {"media_type": media_type})
    return found


def sse(event: str | None, data: Any) -> str:
    """One Server-Sent Event; `data` is written as JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n"


async def events(pieces: AsyncIterable[Any] | Iterable[Any]) -> Any:
    """Each piece as a `data:` event, from a sync or async iterable."""
    from starlette.concurrency import iterate_in_threadpool

    source = pieces if isinstance(pieces, AsyncIterable) else iterate_in_threadpool(iter(pieces))
    async for piece in source:
        yield sse(None, piece)
