"""Pydantic's errors, rewritten to point at the YAML and to say what to do."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from endpointgen.errors import Loc, Problem
from endpointgen.loader import Document
from endpointgen.spec.gpu import suggest


def problems_from(error: ValidationError, doc: Document, root: type[BaseModel]) -> list[Problem]:
    out = []
    for detail in error.errors(include_url=False):
        loc = _clean_loc(detail["loc"], doc.data)
        kind = detail["type"]
        out.append(doc.problem(loc, _message(detail, loc, root), key=kind == "extra_forbidden"))
    return out


def _clean_loc(raw: tuple[int | str, ...], data: Any) -> Loc:
    """Drop pydantic's union tags and validator names: keep only parts found in the data."""
    loc: list[int | str] = []
    here = data
    for i, part in enumerate(raw):
        last = i == len(raw) - 1
        if isinstance(part, str) and _is_tag(part):
            continue
        if isinstance(here, dict) and part in here:
            loc.append(part)
            here = here[part]
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
    if kind == "extra_forbidden":
        known = _fields_at(root, loc[:-1])
        key = str(loc[-1]) if loc else "?"
        hint = suggest(key, known) if known else None
        tail = f"; did you mean '{hint}'?" if hint else ""
        allowed = f" (allowed here: {', '.join(known)})" if known and not hint else ""
        return f"unknown key '{key}'{tail}{allowed}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("literal_error", "enum"):
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        given = detail.get("input")
        hint = suggest(str(given), choices) if choices and isinstance(given, str) else None
        tail = f"; did you mean '{hint}'?" if hint and hint != given else ""
        return f"{given!r} is not one of {', '.join(choices)}{tail}"
    if kind == "string_pattern_mismatch":
        return f"{detail.get('input')!r} does not match the pattern {ctx.get('pattern')}"
    if kind == "value_error":
        return str(ctx.get("error", msg))
    if kind == "model_type" or kind == "dict_type":
        return f"expected a mapping (key: value), got {_type_name(detail.get('input'))}"
    if kind == "string_type":
        return f"expected a string, got {_type_name(detail.get('input'))}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number, got {detail.get('input')!r}"
    if kind == "list_type":
        return f"expected a list, got {_type_name(detail.get('input'))}"
    return msg[0].lower() + msg[1:] if msg else kind


def _type_name(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    return {str: "a string", int: "a number", float: "a number", bool: "true/false", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


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
