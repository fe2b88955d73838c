"""Pydantic's errors, rewritten to point at the YAML and to say what to do."""

from __future__ import annotations

import re
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import ErrorDetails

from endpointgen.compiler.loader import Document
from endpointgen.errors import Loc, Problem
from endpointgen.spec.gpu import kind_of, shown, suggest
from endpointgen.spec.models import (
    NEW_PIXELS,
    OLD_PIXELS,
    PATTERNS,
    ROUTE_CLASSES,
    RouteBase,
    actions_taking,
)

UNKNOWN_KEY = "unknown key"  # how a key the schema does not name is reported


def problems_from(error: ValidationError, doc: Document, root: type[BaseModel]) -> list[Problem]:
    out = []
    for detail in error.errors(include_url=False):
        loc = _clean_loc(detail["loc"], doc.data)
        if detail["type"] in ("union_tag_invalid", "union_tag_not_found"):
            out += _no_action(detail, loc, doc, root)
            continue
        if detail["type"] == "extra_forbidden" and loc:
            other = _other_action(root, loc, doc.data)
            if other is not None:
                out.append(doc.problem(loc, other))  # at the value, as the rules point
                continue
        # An unknown key, or a mapping's key that is wrong in itself: point at the key.
        at_key = detail["type"] == "extra_forbidden" or detail["loc"][-1:] == ("[key]",)
        out.append(doc.problem(loc, _message(detail, loc, root, doc.data), key=at_key))
    return out


def refuses_a_key(problem: Problem) -> bool:
    """Whether a schema problem only refuses a key (unknown, or another action's), so the
    rules may still run on the spec without it."""
    return problem.message.startswith(UNKNOWN_KEY) or bool(_OTHER_ACTION.match(problem.message))


_OTHER_ACTION = re.compile(r"`[^`]+` applies to [a-z, ]+ routes, not [a-z]+$")


def applies_to(key: str, action: str) -> str:
    """The message for a key that `action`'s routes do not take, and others do."""
    return f"`{key}` applies to {', '.join(actions_taking(key))} routes, not {action}"


class _AnyRoute(RouteBase):
    """A route whose action is unknown: its other common keys are still checked."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)  # built if needed
    action: Any = None


def _no_action(
    detail: ErrorDetails, loc: Loc, doc: Document, root: type[BaseModel]
) -> list[Problem]:
    """A route whose `action` is missing or unknown: say so, listing the actions, and check
    the keys every route takes, as a route without a union would have been checked."""
    route = detail.get("input")
    actions = list(ROUTE_CLASSES)
    if not isinstance(route, dict) or "action" not in route:
        out = [doc.problem((*loc, "action"), "required key is missing")]
    else:
        given = route["action"]
        hint = suggest(given, actions) if isinstance(given, str) else None
        tail = f"; did you mean '{hint}'?" if hint and hint != given else ""
        message = f"{shown(given)} is not one of {', '.join(actions)}{tail}"
        out = [doc.problem((*loc, "action"), message)]
    try:
        _AnyRoute.model_validate(route)
    except ValidationError as exc:
        for inner in exc.errors(include_url=False):
            inner_loc = _clean_loc((*loc, *inner["loc"]), doc.data)
            out.append(doc.problem(inner_loc, _message(inner, inner_loc, root, doc.data)))
    return out


def _other_action(root: type[BaseModel], loc: Loc, data: Any) -> str | None:
    """For a key a route's action does not take, but another action's does: which."""
    route = _model_at(root, loc[:-1], data)
    key = loc[-1]
    if not (isinstance(route, type) and issubclass(route, RouteBase) and isinstance(key, str)):
        return None
    if not actions_taking(key):
        return None
    return applies_to(key, _action_of(route))


def _action_of(route: type[RouteBase]) -> str:
    """The action a route class is for: the one value of its `action`."""
    return str(typing.get_args(route.model_fields["action"].annotation)[0])


def _clean_loc(raw: tuple[int | str, ...], data: Any) -> Loc:
    """Drop pydantic's union tags and validator names: keep only parts found in the data."""
    loc: list[int | str] = []
    here = data
    for i, part in enumerate(raw):
        last = i == len(raw) - 1
        if i and isinstance(raw[i - 1], int) and isinstance(here, dict) and _is_action(here, part):
            continue  # the tag of a route's action, before the route's own keys
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


def _is_action(route: dict[str, Any], part: int | str) -> bool:
    return part in ROUTE_CLASSES and route.get("action") == part


def _is_tag(part: str) -> bool:
    return any(c in part for c in "<>[]()'") or part.startswith("function-")


def _message(detail: ErrorDetails, loc: Loc, root: type[BaseModel], data: Any) -> str:
    kind, msg = detail["type"], detail["msg"]
    ctx = detail.get("ctx") or {}
    given = detail.get("input")
    if kind == "extra_forbidden":
        model = _model_at(root, loc[:-1], data)
        known = _fields(model)
        key = str(loc[-1]) if loc else "?"
        hint = _suggest_key(key, model, known)
        tail = f"; did you mean '{hint}'?" if hint else ""
        if not hint and isinstance(model, type) and issubclass(model, RouteBase):
            tail = _another_actions_key(key, model)
        allowed = f" (allowed here: {', '.join(known)})" if known and not tail else ""
        return f"{UNKNOWN_KEY} {shown(key)}{tail}{allowed}"
    if kind == "model_attributes_type":
        return f"expected a mapping (key: value), got {kind_of(given)}"
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


def _another_actions_key(key: str, route: type[RouteBase]) -> str:
    """A misspelt key no closer to this route's keys than to another action's: name that
    one, and the actions that take it."""
    action = _action_of(route)
    everywhere = sorted({k for cls in ROUTE_CLASSES.values() for k in _fields(cls)})
    hint = suggest(key, everywhere)
    if hint is None:
        return ""
    actions = ", ".join(actions_taking(hint))
    return f"; '{hint}' is close, but it applies to {actions} routes, not {action}"


def _fields(model: Any) -> list[str]:
    """The keys a model takes, as a spec spells them (`json`, not `json_body`); no old
    names."""
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    keys = [info.alias or name for name, info in model.model_fields.items()]
    return [key for key in keys if key != OLD_PIXELS]


def _suggest_key(key: str, model: Any, known: list[str]) -> str | None:
    """The key `key` looks like a slip of; an old name gives the new one."""
    route = isinstance(model, type) and issubclass(model, RouteBase)
    old = route and OLD_PIXELS in model.model_fields
    hint = suggest(key, [*known, OLD_PIXELS] if old else known) if known else None
    if hint == OLD_PIXELS and route:
        return NEW_PIXELS[_action_of(model)]
    return hint


def _model_at(root: type[BaseModel], loc: Loc, data: Any) -> Any:
    """The model found at `loc` under `root` (a route's own class, by its `action` in
    `data`), for did-you-mean; None where no model is."""
    current: Any = root
    here = data
    for part in loc:
        current = _unwrap(current, here)
        if isinstance(part, int):
            args = [a for a in typing.get_args(current) if a is not type(None)]
            current = args[0] if args else None
        elif isinstance(current, type) and issubclass(current, BaseModel):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            field = fields.get(part)
            current = field.annotation if field else None
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
        here = _step(here, part)
    current = _unwrap(current, here)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _step(data: Any, part: int | str) -> Any:
    if isinstance(data, dict):
        return data.get(part)
    if isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
        return data[part]
    return None


def _unwrap(tp: Any, data: Any = None) -> Any:
    """Strip Annotated and Optional, pick the model out of a union: a route's by the
    `action` its data names."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [_unwrap(a) for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            action = data.get("action") if isinstance(data, dict) else None
            routes = [m for m in models if issubclass(m, RouteBase)]
            if routes and isinstance(action, str) and action in ROUTE_CLASSES:
                return ROUTE_CLASSES[action]
            tp = models[0] if models else args[0]
        else:
            return tp
