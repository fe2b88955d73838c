"""Spec pieces for routes without a fixed model action: parameters, request bodies,
custom handlers, uploads, files and error mapping."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

FieldType = Literal[
    "str", "int", "float", "bool", "list[str]", "list[int]", "list[float]", "object", "any"
]
ParamType = Literal["str", "int", "float", "bool"]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
# `file.py:function`, the file relative to the spec.
HandlerRef = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9_./-]{1,200}\.py:[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="file.py:function, the file relative to the spec",
    ),
]
ExceptionName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")]
MediaType = Annotated[str, Field(pattern=r"^[a-z0-9.+-]+/[a-z0-9.+*-]+$", max_length=100)]


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
        return self


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
