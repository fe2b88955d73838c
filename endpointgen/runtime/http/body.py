"""What a request body may be: checked as its JSON Schema says, and parsed refusing
what JSON cannot carry (NaN, an infinite number, a lone surrogate)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ConfigDict

# Bodies are checked as their JSON Schema says: no `true` for a number, no "1" for an
# int, no keys the schema does not name, and no NaN or infinite number.
# NaN, Infinity and 1e400 are no numbers a route can use (and JSON has none).
STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class NotJson(Exception):
    """A value that JSON cannot carry: NaN, an infinite number, a lone surrogate."""


NOT_PARSED = object()  # a body that is not JSON at all: FastAPI's own parse says why


def _constant(name: str) -> Any:
    raise NotJson(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if value - value != 0:  # 1e400: infinite once parsed
        raise NotJson("a number too large for a float (it would be infinite)")
    return value


def parse_body(body: bytes) -> Any:
    """A JSON body, parsed as FastAPI parses it but refusing (422) what JSON cannot carry
    and Python's parser lets through: NaN, Infinity, a number too large to be finite, a
    string with a lone surrogate (`"\\ud800"`). Each would otherwise reach a route as a
    value that its answer, or a job's stored input, cannot be written as JSON. A body
    that does not parse at all gives `NOT_PARSED`."""
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float)
    except NotJson as exc:
        error: dict[str, Any] = {"loc": ("body",), "msg": str(exc), "type": "value_error"}
        raise RequestValidationError([error]) from None
    except (ValueError, RecursionError):
        return NOT_PARSED
    # A lone surrogate comes from a `\uD8xx`-`\uDFxx` escape or from its UTF-8-like
    # bytes (ED A0-BF ..), which the parser decodes as they are.
    if b"\\ud" in body or b"\\uD" in body or b"\xed" in body:
        found = unfit(value)
        if found is not None:
            where, what = found
            error = {"loc": ("body", *where), "msg": what, "type": "value_error"}
            raise RequestValidationError([error])
    return value


def unfit(value: Any) -> tuple[list[str | int], str] | None:
    """Where in `value` (keys and indexes) the first thing JSON cannot carry sits, and what
    it is: NaN, an infinite number, or a string holding a lone surrogate; None when none."""
    stack: list[tuple[Any, list[str | int]]] = [(value, [])]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and not _encodes(item):
                return where, "a string with a lone surrogate, which is not text"
        elif isinstance(item, float):
            if item != item:
                return where, "NaN, which is not a JSON number"
            if item - item != 0:
                return where, "an infinite number, which is not a JSON number"
        elif isinstance(item, dict):
            for key, inner in item.items():
                if isinstance(key, str) and not key.isascii() and not _encodes(key):
                    return where, "a key with a lone surrogate, which is not text"
                stack.append((inner, [*where, key]))
        elif isinstance(item, list | tuple):
            stack.extend((inner, [*where, i]) for i, inner in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def takes_a_form(route: APIRoute) -> bool:
    """Whether the route's body is form data (multipart), which is not parsed as JSON."""
    from fastapi import params

    return any(isinstance(p.field_info, params.Form) for p in route.dependant.body_params)
