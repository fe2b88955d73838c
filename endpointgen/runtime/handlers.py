"""Answers a spec writes itself: `respond` templates, and your own `handler` functions."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import AfterValidator
from starlette.concurrency import run_in_threadpool

from endpointgen.runtime import http

__all__ = ["HandlerError", "answer", "call", "fill", "load", "one_of", "respond"]

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
Kind = Literal["json", "text", "stream", "sse", "binary"]
BINARY = (bytes, bytearray, memoryview)
OCTETS = "application/octet-stream"
IMAGE_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP", "image/gif": "GIF"}


class HandlerError(RuntimeError):
    """A handler file that cannot be imported: the app must not start without it."""


def load(file: Path, function: str, shown: str) -> Callable[..., Any]:
    """`function` from a Python file the spec names (`shown` is how the spec wrote it),
    imported as a module named after the file and its place (two `run.py` files in two
    folders are two modules)."""
    place = hashlib.sha256(str(file.resolve()).encode()).hexdigest()[:8]
    name = f"endpointgen_handler_{re.sub(r'[^A-Za-z0-9_]', '_', file.stem)}_{place}"
    try:
        spec = importlib.util.spec_from_file_location(name, file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {file}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        found: Callable[..., Any] = getattr(module, function)
        return found
    except Exception as exc:
        raise HandlerError(f"{shown}: {type(exc).__name__}: {exc}") from exc


async def call(
    function: Callable[..., Any],
    data: dict[str, Any],
    model: Any = None,
    media_type: str | None = None,
) -> Any:
    """`function(data)`, or `function(data, model)` when it takes a second argument.

    A PIL image it returns is encoded in a worker thread, as `media_type` says (PNG
    unless that names JPEG, WebP or GIF), so a large image never holds up the event loop.
    """
    http.starting_work()
    args = (data, model) if len(inspect.signature(function).parameters) > 1 else (data,)
    if inspect.iscoroutinefunction(function):
        result = await function(*args)
        if is_image(result):
            return await run_in_threadpool(encode_image, result, media_type)
        return result

    def run() -> Any:
        result = function(*args)
        return encode_image(result, media_type) if is_image(result) else result

    return await run_in_threadpool(run)


def is_image(value: Any) -> bool:
    """A PIL image (without importing PIL to ask)."""
    return type(value).__module__.startswith("PIL.") and callable(getattr(value, "save", None))


def encode_image(image: Any, media_type: str | None) -> Response:
    """A PIL image as a PNG, JPEG, WebP or GIF answer."""
    if media_type in (None, OCTETS):
        media_type = "image/png"
    if media_type not in IMAGE_FORMATS:
        raise TypeError(f"the handler returned an image; the route answers {media_type}")
    return Response(image_bytes(image, media_type), media_type=media_type)


def image_bytes(image: Any, media_type: str) -> bytes:
    """A PIL image encoded as `media_type`, one of `IMAGE_FORMATS`."""
    kind = IMAGE_FORMATS[media_type]
    if kind == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")  # JPEG has no alpha
    buffer = io.BytesIO()
    image.save(buffer, kind)
    return buffer.getvalue()


def fill(template: Any, data: dict[str, Any]) -> Any:
    """`{name}` placeholders in strings, replaced by data; a lone placeholder keeps its type."""
    if isinstance(template, str):
        alone = PLACEHOLDER.fullmatch(template)
        if alone and alone.group(1) in data:
            return data[alone.group(1)]

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            return str(data[name]) if name in data else match.group(0)

        return PLACEHOLDER.sub(value, template)
    if isinstance(template, list):
        return [fill(item, data) for item in template]
    if isinstance(template, dict):
        return {key: fill(item, data) for key, item in template.items()}
    return template


def answer(
    value: Any, kind: Kind = "json", status: int = 200, media_type: str | None = None
) -> Response:
    """What a route sends: JSON, plain text, a text stream, Server-Sent Events or bytes.

    A Starlette `Response` the handler made goes out as it is; bytes (and an image, which
    `call` has encoded) go out as `media_type`, application/octet-stream by default,
    whatever the route's kind.
    """
    if isinstance(value, Response):
        return value
    if kind == "binary" or (kind in ("json", "text") and isinstance(value, BINARY)):
        if isinstance(value, str):
            value = value.encode("utf-8")
        if not isinstance(value, BINARY):
            raise TypeError(
                f"a binary route's handler returned {type(value).__name__}: return bytes, "
                "a PIL image or a Response"
            )
        return Response(bytes(value), status, media_type=media_type or OCTETS)
    if kind == "text":
        try:
            return PlainTextResponse(str(value), status)
        except UnicodeEncodeError:  # a lone surrogate: not text
            raise http.NotJson("handler returned text with a lone surrogate") from None
    if kind in ("stream", "sse"):
        pieces = [value] if isinstance(value, str | bytes) else value
        if kind == "sse":
            return http.EventStream(http.events(pieces), status)
        return http.TextStream(pieces, status)
    encoded = jsonable_encoder(value)
    try:
        return JSONResponse(encoded, status)
    except ValueError:  # NaN, an infinite number, a lone surrogate (UnicodeEncodeError)
        found = http.unfit(encoded)
        what = "?" if found is None else f"{found[1]}, at {'.'.join(map(str, found[0])) or '/'}"
        raise http.NotJson(f"handler returned a value JSON cannot carry: {what}") from None


def respond(
    template: Any, data: dict[str, Any] | None = None, kind: Kind = "json", status: int = 200
) -> Response:
    """A `respond` route's answer: the spec's template filled in from the request."""
    return answer(fill(template, data or {}), kind, status)


def one_of(*allowed: Any) -> Any:
    """A check that a number is one of the declared values (a query gives text: parse first)."""

    def check(value: Any) -> Any:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}")
        return value

    return AfterValidator(check)
