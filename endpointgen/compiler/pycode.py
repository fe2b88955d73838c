"""Python source as `ruff format` lays it out, without running ruff.

Code is built from three kinds of node: text, a `Group` (brackets around comma-separated
items: a call, a subscript, a list, a dict), and a list of nodes written one after
another. `lines` lays a statement out as ruff does at its default line length, 88: flat
when it fits; else the last group split, its items on one indented line when they fit
there (a collection's never are), else one item per line with a trailing comma, each
laid out the same way.

Every spec value enters through `literal` (strings through `string_literal`), and every
name through `PythonIdentifier`: no spec string can become code.
"""

from __future__ import annotations

import keyword
import math
import unicodedata
from dataclasses import dataclass, field
from typing import Any, TypeAlias

WIDTH = 88  # ruff's default: the modules stay as they are in a project with no settings
INDENT = 4


@dataclass(frozen=True)
class Group:
    open: str
    items: list[Node]
    close: str
    # A split def with one parameter gets a trailing comma (as ruff writes it).
    params: bool = False
    # Split even when it fits: a body of statements, say.
    always_split: bool = field(default=False)
    # A list, dict or tuple display: split, it holds one item per line (ruff, as black,
    # never puts a collection's items on one line of their own).
    collection: bool = False


Node: TypeAlias = str | Group | list["Node"]


def flat(node: Node) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, Group):
        return node.open + ", ".join(flat(item) for item in node.items) + node.close
    return "".join(flat(part) for part in node)


def _split_point(node: Node) -> tuple[str, Group, str] | None:
    """The text before the last group, the group, and the text after it."""
    if isinstance(node, Group):
        return ("", node, "") if node.items else None
    if isinstance(node, str):
        return None
    for at in range(len(node) - 1, -1, -1):
        found = _split_point(node[at])
        if found is not None:
            head, group, tail = found
            before = "".join(flat(part) for part in node[:at])
            after = "".join(flat(part) for part in node[at + 1 :])
            return before + head, group, tail + after
    return None


def lines(node: Node, indent: int = 0, suffix: str = "") -> list[str]:
    """The statement `node` + `suffix`, as lines, starting at column `indent`."""
    pad = " " * indent
    text = pad + flat(node) + suffix
    if width(text) <= WIDTH and not _must_split(node):
        return [text]
    found = _split_point(node)
    if found is None:
        return _parenthesized(node, indent, suffix) or [text]
    head, group, tail = found
    inner = " " * (indent + INDENT)
    out = [pad + head + group.open]
    items = [flat(item) for item in group.items]
    comma = "," if group.params and len(items) == 1 else ""
    hugged = inner + ", ".join(items) + comma
    exploded = group.always_split or (group.collection and len(items) > 1)
    if width(hugged) <= WIDTH and not exploded and not any(map(_must_split, group.items)):
        out.append(hugged)
    else:
        for item in group.items:
            out += lines(item, indent + INDENT, ",")
    out.append(pad + group.close + tail + suffix)
    return out


def width(text: str) -> int:
    """Columns on screen, as ruff counts them: wide characters two, combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def _parenthesized(node: Node, indent: int, suffix: str) -> list[str] | None:
    """`X = (` / the value / `)`: how ruff fits a statement's long value with no brackets
    of its own (a long string); None when it does not fit that way either."""
    if suffix or not isinstance(node, list) or len(node) != 2 or not isinstance(node[0], str):
        return None
    head, value = node[0], flat(node[1])
    inner = " " * (indent + INDENT) + value
    if not head.endswith((" = ", "return ")) or width(inner) > WIDTH:
        return None
    pad = " " * indent
    return [pad + head + "(", inner, pad + ")"]


def _must_split(node: Node) -> bool:
    if isinstance(node, Group):
        return node.always_split or any(map(_must_split, node.items))
    if isinstance(node, list):
        return any(map(_must_split, node))
    return False


def collection(open: str, items: list[Node], close: str) -> Group:
    return Group(open, items, close, collection=True)


def call(function: str, *args: Node, **kwargs: Node) -> Group:
    items: list[Node] = list(args)
    items += [[f"{PythonIdentifier(key)}=", value] for key, value in kwargs.items()]
    return Group(f"{function}(", items, ")")


def literal(value: Any) -> Node:
    """A Python literal for `value`: flat when it fits, else a group ruff would split."""
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
    if isinstance(value, tuple):
        if len(value) == 1:
            return Group("(", [literal(value[0])], ",)", collection=True)
        return Group("(", [literal(v) for v in value], ")", collection=True)
    if isinstance(value, list):
        return Group("[", [literal(v) for v in value], "]", collection=True)
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("only string keys can be written")
        items: list[Node] = [[string_literal(k) + ": ", literal(v)] for k, v in value.items()]
        return Group("{", items, "}", collection=True)
    raise TypeError(f"cannot write a {type(value).__name__} as a literal")


def block(statements: list[list[str]], blank: int = 0) -> str:
    """Statements (each a list of lines), with `blank` empty lines between them."""
    gap = "\n" * (blank + 1)
    return gap.join("\n".join(statement) for statement in statements)


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
