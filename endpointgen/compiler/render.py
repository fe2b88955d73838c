"""Jinja environment and the one filter through which spec values become Python source."""

from __future__ import annotations

import keyword
import math
import os
import unicodedata
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

if TYPE_CHECKING:
    from endpointgen.compiler.plan import Plan

_INDENT = "    "


def templates_dir() -> Path:
    """Inside an installed wheel the templates ship in the package; in a checkout, top level."""
    package = Path(__file__).parent.parent  # endpointgen/, this module is endpointgen/compiler/
    packaged = package / "templates"
    return packaged if packaged.is_dir() else package.parent / "templates"


def py(value: Any, indent: int = 0) -> str:
    """A Python literal for `value`, shaped as `ruff format` leaves it.

    Non-empty containers are always written one item per line with a trailing comma,
    so the layout never depends on how long a value is. `indent` is the column of the
    line the literal starts on.
    """
    pad = " " * indent
    inner = pad + _INDENT
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} as a literal")
        return repr(value).replace("e+", "e")  # ruff writes 1e16, not 1e+16
    if isinstance(value, str):
        return string_literal(value)
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = "".join(f"{inner}{py(v, indent + 4)},\n" for v in value)
        return f"[\n{items}{pad}]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        if not all(isinstance(k, str) for k in value):
            raise TypeError("only string keys can be written")
        items = "".join(
            f"{inner}{string_literal(k)}: {py(v, indent + 4)},\n" for k, v in value.items()
        )
        return f"{{\n{items}{pad}}}"
    raise TypeError(f"cannot write a {type(value).__name__} as a literal")


def string_literal(text: str) -> str:
    """A one-line string literal, quoted as ruff prefers (double, unless that adds escapes)."""
    quote = "'" if text.count('"') > text.count("'") else '"'
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + quote)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif _printable(ch):
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    return quote + "".join(out) + quote


def _printable(ch: str) -> bool:
    # Letters, marks, numbers, punctuation, symbols and the plain space; everything else
    # (controls, separators, surrogates, unassigned) is escaped so the file stays one
    # statement per line and shows what it holds.
    return ch == " " or unicodedata.category(ch)[0] in "LMNPS"


def comment(text: str) -> str:
    """Text safe to place after `#`: one line, printable."""
    return "".join(ch if _printable(ch) else "?" for ch in text)


class PythonIdentifier(str):
    """A name checked to be a valid, non-keyword Python identifier."""

    def __new__(cls, value: str) -> PythonIdentifier:
        if not value.isidentifier() or keyword.iskeyword(value) or not value.isascii():
            raise ValueError(f"{value!r} is not a usable Python name")
        return super().__new__(cls, value)


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs (Jinja checks each against its source),
    which saves every `build` after the first the ~30 ms of compiling them."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "endpointgen" / f"jinja-{jinja2.__version__}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        bytecode_cache=_bytecode_cache(),
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["py"] = py
    env.filters["comment"] = comment
    env.filters["identifier"] = PythonIdentifier
    return env


def render(plan: Plan) -> str:
    from endpointgen.compiler.module import build_module

    module = build_module(plan)
    return environment().get_template("app.py.jinja").render(plan=plan, module=module)
