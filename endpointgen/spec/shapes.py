"""Spec pieces for routes without a fixed model action: parameters, request bodies,
custom handlers, uploads, files and error mapping."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

FieldType = Literal[
    "str", "int", "float", "bool", "list[str]", "list[int]", "list[float]", "object", "any"
]
ParamType = Literal["str", "int", "float", "bool"]
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
HANDLER_REF = r"^[A-Za-z0-9_./-]{1,200}\.py:[A-Za-z_][A-Za-z0-9_]{0,63}$"
EXCEPTION_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
MEDIA_TYPE = r"^[a-z0-9.+-]+/[a-z0-9.+*-]+$"
VOLUME_NAME = r"^[A-Za-z0-9_.-]{1,63}$"  # the Secret rule, spelt apart for its message
_VERSION = r"[<>=!~]=?[A-Za-z0-9.*+!_-]+"
REQUIREMENT = rf"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?({_VERSION}(,{_VERSION})*)?$"
# What each pattern means, for error messages: (what the value is, the rule).
PATTERNS = {
    IDENTIFIER: ("name", "use letters, digits and '_', not starting with a digit"),
    HANDLER_REF: ("handler", "write file.py:function, the file relative to the spec"),
    EXCEPTION_NAME: ("exception class name", "write a class name such as ValueError"),
    MEDIA_TYPE: ("media type", "write type/subtype in lowercase, such as text/csv"),
    VOLUME_NAME: ("Modal Volume name", "use letters, digits, '.', '_' and '-'"),
    REQUIREMENT: ("package", "write a pip requirement such as pandas==2.2.3"),
}
Identifier = Annotated[str, Field(pattern=IDENTIFIER)]
HandlerRef = Annotated[
    str, Field(pattern=HANDLER_REF, description="file.py:function, the file relative to the spec")
]
ExceptionName = Annotated[str, Field(pattern=EXCEPTION_NAME)]
MediaType = Annotated[str, Field(pattern=MEDIA_TYPE, max_length=100)]
VolumeName = Annotated[str, Field(pattern=VOLUME_NAME)]
Requirement = Annotated[str, Field(pattern=REQUIREMENT, max_length=200)]
_PYTHON_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list[str]": list[str],
    "list[int]": list[int],
    "list[float]": list[float],
    "object": dict[str, Any],
    "any": Any,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _shorthand(value: Any) -> Any:
    """`name: int` is short for `name: {type: int}`."""
    return {"type": value} if isinstance(value, str) else value


class FieldSpec(_Strict):
    """One typed value: a request-body field or a query/path parameter."""

    type: FieldType = "str"
    description: str | None = Field(default=None, max_length=500)
    default: Any = Field(default=None, description="makes the field optional")
    min: float | None = Field(default=None, description="numbers: smallest allowed")
    max: float | None = Field(default=None, description="numbers: largest allowed")
    min_length: int | None = Field(default=None, ge=0, le=10_000_000)
    max_length: int | None = Field(default=None, ge=0, le=10_000_000)
    min_items: int | None = Field(default=None, ge=0, le=1_000_000)
    max_items: int | None = Field(default=None, ge=0, le=1_000_000)
    enum: list[str | int | float] | None = Field(default=None, min_length=1, max_length=1000)

    @property
    def required(self) -> bool:
        return "default" not in self.model_fields_set

    @model_validator(mode="after")
    def _fits_the_type(self) -> FieldSpec:
        numeric = self.type in ("int", "float")
        listed = self.type.startswith("list")
        if (self.min is not None or self.max is not None) and not numeric:
            raise ValueError(f"min/max apply to int and float fields, not {self.type}")
        for bound in (self.min, self.max):
            if bound is not None and not math.isfinite(bound):
                raise ValueError("min/max must be finite numbers")
        if (self.min_length is not None or self.max_length is not None) and self.type != "str":
            raise ValueError(f"min_length/max_length apply to str fields, not {self.type}")
        if (self.min_items is not None or self.max_items is not None) and not listed:
            raise ValueError(f"min_items/max_items apply to list fields, not {self.type}")
        if self.enum is not None and self.type not in ("str", "int", "float"):
            raise ValueError(f"enum applies to str, int and float fields, not {self.type}")
        for low, high, what in (
            (self.min, self.max, "min"),
            (self.min_length, self.max_length, "min_length"),
            (self.min_items, self.max_items, "min_items"),
        ):
            if low is not None and high is not None and low > high:
                raise ValueError(f"{what} is larger than its maximum")
        kind = TypeAdapter(_PYTHON_TYPES[self.type])
        for value in self.enum or []:
            self._fits(kind, value, "enum value")
        if not self.required and self.default is not None:
            self._fits(kind, self.default, "default")
            if self.enum is not None and self.default not in self.enum:
                raise ValueError(f"default {self.default!r} is not one of the enum values")
        return self

    def _fits(self, kind: TypeAdapter[Any], value: Any, what: str) -> None:
        try:
            kind.validate_python(value, strict=True)
        except ValidationError:
            if not (self.type == "float" and type(value) is int):
                raise ValueError(f"{what} {value!r} is not of type {self.type}") from None
        if isinstance(value, str):
            if self.min_length is not None and len(value) < self.min_length:
                raise ValueError(f"{what} {value!r} is shorter than min_length {self.min_length}")
            if self.max_length is not None and len(value) > self.max_length:
                raise ValueError(f"{what} {value!r} is longer than max_length {self.max_length}")
        if isinstance(value, list):
            if self.min_items is not None and len(value) < self.min_items:
                raise ValueError(f"{what} has fewer than min_items {self.min_items}")
            if self.max_items is not None and len(value) > self.max_items:
                raise ValueError(f"{what} has more than max_items {self.max_items}")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if number and self.min is not None and value < self.min:
            raise ValueError(f"{what} {value!r} is below min {self.min:g}")
        if number and self.max is not None and value > self.max:
            raise ValueError(f"{what} {value!r} is above max {self.max:g}")


Fields = dict[Identifier, Annotated[FieldSpec, BeforeValidator(_shorthand)]]


class Param(FieldSpec):
    where: Literal["query", "path", "header"] | None = Field(
        default=None,
        alias="in",
        description="query, path or header; default: path when the route path names it",
    )
    type: ParamType = "str"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Params = dict[Identifier, Annotated[Param, BeforeValidator(_shorthand)]]


class ErrorMapping(_Strict):
    status: int = Field(ge=400, le=599)
    message: str = Field(min_length=1, max_length=500, description="what the client is told")
