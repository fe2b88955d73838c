"""Pydantic's errors, rewritten to point at the YAML and to say what to do."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from endpointgen.compiler.loader import Document
from endpointgen.errors import Loc, Problem
from endpointgen.spec.gpu import kind_of, shown, suggest
from endpointgen.spec.models import PATTERNS

UNKNOWN_KEY = "unknown key"  # how a key the schema does not name is reported


def problems_from(error: ValidationError, doc: Document, root: type[BaseModel]) -> list[Problem]:
    out = []
    for detail in error.errors(include_url=False):
        loc = _clean_loc(detail["loc"], doc.data)
        # An unknown key, or a mapping's key that is wrong in itself: point at the key.
        at_key = detail["type"] == "extra_forbidden" or detail["loc"][-1:] == ("[key]",)
        out.append(doc.problem(loc, _message(detail, loc, root), key=at_key))
    return out


def _clean_loc(raw: tuple[int | str, ...], data: Any) -> Loc:
    """Drop pydantic's union tags and validator names: keep only parts found in the data."""
    loc: list[int | str] = []
    here = data
    for i, part in enumerate(raw):
        last = i == len(raw) - 1
        if isinstance(here, dict) and part in here:
            loc.append(part)  # before the tag test: a user's key may look like a tag
            here = here[part]
        elif isinstance(part, str) and _is_tag(part):
            continue
        elif isinstance(here, list) and isinstance(part, int) and 0 <= part < len(here):
            loc.append(part)
            here = here[part]
        elif last and isinstance(here, dict) and isinstance(part, str):
            loc.append(part)  # a missing key: name it
    return tuple(loc)


def _is_tag(part: str) -> bool:
    return any(c in part for c in "<>[]()'") or part.startswith("function-")


def _message(detail: ErrorDetails, loc: Loc, root: type[BaseModel]) -> str:
    kind, msg = detail["type"], detail["msg"]
    ctx = detail.get("ctx") or {}
    given = detail.get("input")
    if kind == "extra_forbidden":
        known = _fields_at(root, loc[:-1])
        key = str(loc[-1]) if loc else "?"
        hint = suggest(key, known) if known else None
        tail = f"; did you mean '{hint}'?" if hint else ""
        allowed = f" (allowed here: {', '.join(known)})" if known and not hint else ""
        return f"{UNKNOWN_KEY} {shown(key)}{tail}{allowed}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("literal_error", "enum"):
        expected = str(ctx.get("expected", ""))
        choices = re.findall(r"'([^']*)'", expected) or [expected]
        if len(choices) == 1:
            return f"must be {choices[0]}, not {shown(given)}"
        hint = suggest(str(given), choices) if isinstance(given, str) else None
        tail = f"; did you mean '{hint}'?" if hint and hint != given else ""
        return f"{shown(given)} is not one of {', '.join(choices)}{tail}"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        if pattern in PATTERNS:
            what, rule = PATTERNS[pattern]
            return f"{shown(given)} is not a valid {what}: {rule}"
        return f"{shown(given)} does not match the pattern {pattern}"
    if kind == "value_error":
        return str(ctx.get("error", msg))
    if kind == "model_type" or kind == "dict_type":
        return f"expected a mapping (key: value), got {kind_of(given)}"
    if kind == "string_unicode":
        return "not valid text: it holds a lone UTF-16 surrogate (\\ud800-\\udfff)"
    if kind == "string_type":
        quote = "; put it in quotes" if isinstance(given, int | float) else ""
        return f"expected a string, got {kind_of(given)}{quote}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {shown(given)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {shown(given)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {shown(given)}"
    if kind == "list_type":
        return f"expected a list, got {kind_of(given)}"
    bounds = {
        "greater_than_equal": ("ge", "at least"),
        "less_than_equal": ("le", "at most"),
        "greater_than": ("gt", "more than"),
        "less_than": ("lt", "less than"),
    }
    if kind in bounds:
        name, words = bounds[kind]
        return f"must be {words} {ctx.get(name)}, not {shown(given)}"
    if kind == "string_too_long":
        size = len(given) if isinstance(given, str) else "more"
        return f"must be at most {ctx.get('max_length')} characters long, not {size}"
    if kind == "string_too_short":
        least = ctx.get("min_length")
        return "must not be empty" if least == 1 else f"must be at least {least} characters long"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        words = "at least" if kind == "too_short" else "at most"
        items = "item" if bound == 1 else "items"
        return f"must have {words} {bound} {items}, not {ctx.get('actual_length')}"
    return msg[0].lower() + msg[1:] if msg else kind


def _fields_at(root: type[BaseModel], loc: Loc) -> list[str]:
    """Field names of the model found at `loc` under `root`, for did-you-mean."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(part, int):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part)
            current = field.annotation if field else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and Optional, pick the model out of a union."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else args[0]
        else:
            return tp
