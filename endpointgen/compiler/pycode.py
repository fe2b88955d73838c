"""Python literals for spec values, and the line layout `ruff format` gives a module.

The templates write every statement on one line. `layout` then lays out each one wider
than ruff's default line length, 88, as ruff does: it reads the statement into nodes
(text, a `Group` of comma-separated items in brackets: a call, a subscript, a list, a
dict; and lists of nodes written one after another), and `lines` writes it flat when it
fits; else the last group split, its items on one indented line when they fit there (a
collection's never are), else one item per line with a trailing comma, each laid out the
same way; a chain of calls (`modal.Image....uv_pip_install(...).env(...)`) one call per
line.

Every spec value enters through `literal` (strings through `string_literal`), and every
name through `PythonIdentifier`: no spec string can become code.
"""

from __future__ import annotations

import keyword
import math
import re
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
    if text.isascii():
        return len(text)
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


# --- the layout of a rendered module ---

OPENING = {"(": ")", "[": "]", "{": "}"}
_ASSIGNED = re.compile(r"([A-Za-z_][A-Za-z0-9_.]*(?:: [^=]+)? = |return )(.*)")


def layout(source: str) -> str:
    """`source` with each statement wider than `WIDTH` laid out as ruff would.

    Statements are one line each (as the templates write them); comments, docstrings
    and lines that fit are left as they are.
    """
    out: list[str] = []
    open_quote: str | None = None  # the quotes of a string that spans lines (a docstring)
    for line in source.split("\n"):
        if open_quote is not None:
            out.append(line)
            if open_quote in line:
                open_quote = _left_open(line[line.index(open_quote) + 3 :])
            continue
        open_quote = _left_open(line)
        if open_quote or width(line) <= WIDTH or line.lstrip().startswith("#"):
            out.append(line)
            continue
        statement = line.lstrip(" ")
        indent = len(line) - len(statement)
        out += _statement_lines(statement, indent)
    return "\n".join(out)


def _left_open(line: str) -> str | None:
    """The quotes of a triple-quoted string that starts on `line` and does not end there."""
    at = 0
    while at < len(line):
        if line[at] == "#":
            return None
        if line[at] in "\"'":
            end = _string_end(line, at)
            quote = line[at] * 3
            if line.startswith(quote, at) and not line.endswith(quote, at + 3, end):
                return quote
            if end > len(line):
                return None
            at = end
            continue
        at += 1
    return None


def _statement_lines(statement: str, indent: int) -> list[str]:
    if statement.startswith("from ") and " import " in statement:
        head, names = statement.split(" import ", 1)
        pad = " " * indent
        return [f"{pad}{head} import (", *[f"{pad}    {n}," for n in names.split(", ")], f"{pad})"]
    node = parse(statement)
    chained = _chain(node)
    if chained is not None:
        target, base, steps = chained
        pad = " " * indent
        out = [f"{pad}{target}(", *lines(base, indent + INDENT)]
        for step in steps:
            out += lines(step, indent + INDENT)
        return [*out, pad + ")"]
    return lines(node, indent)


def _chain(node: list[Node]) -> tuple[str, list[Node], list[list[Node]]] | None:
    """`name = base(...).step(...).step(...)`: two calls or more after the first one,
    which ruff lays out one per line (its fluent style)."""
    if len(node) < 6 or not isinstance(node[0], str) or " = " not in node[0]:
        return None
    target, first = node[0].split(" = ", 1)
    steps: list[list[Node]] = []
    for at in range(2, len(node), 2):
        text, group = node[at], node[at + 1] if at + 1 < len(node) else None
        if not (isinstance(text, str) and text.startswith(".") and isinstance(group, Group)):
            return None
        steps.append([text, group])
    if len(steps) < 2 or not isinstance(node[1], Group):
        return None
    return f"{target} = ", [first, node[1]], steps


def parse(statement: str) -> list[Node]:
    """One statement, as nodes: text, and a `Group` for each pair of brackets."""
    definition = statement.startswith(("def ", "async def "))
    stack: list[tuple[str, list[Node], list[list[Node]]]] = []  # open, parts, items
    parts: list[Node] = []
    text: list[str] = []
    at = 0
    while at < len(statement):
        ch = statement[at]
        if ch in "\"'":
            end = _string_end(statement, at)
            text.append(statement[at:end])
            at = end
            continue
        if ch in OPENING:
            before = "".join(text)
            _flush(text, parts)
            stack.append((ch, parts, []))
            parts = []
            # What comes right before a bracket says what it is: a call or a subscript
            # after a name or a bracket, else a display (a list, a dict, a tuple).
            called = bool(before) and (before[-1].isalnum() or before[-1] in "_)]")
            if ch != "(" or called:
                stack[-1] = (ch + ("c" if called else ""), stack[-1][1], [])
            at += 1
            continue
        if stack and ch == ",":
            _flush(text, parts)
            stack[-1][2].append(parts)
            parts = []
            at += 1
            while at < len(statement) and statement[at] == " ":
                at += 1
            continue
        if stack and ch == OPENING[stack[-1][0][0]]:
            _flush(text, parts)
            opened, outer, items = stack.pop()
            if parts:
                items.append(parts)
            bracket = opened[0]
            display = not opened.endswith("c") and (bracket != "(" or bool(items))
            close = ch
            if bracket == "(" and display and len(items) == 1:
                close = ",)"  # a tuple of one (`(x)` is only brackets: not written)
            group = Group(
                bracket,
                [item[0] if len(item) == 1 else item for item in items],
                close,
                params=definition and not stack and not _groups(outer),
                collection=display,
            )
            parts = outer
            parts.append(group)
            at += 1
            if definition and not stack:  # a def's return annotation stays as text
                parts.append(statement[at:])
                return parts
            continue
        text.append(ch)
        at += 1
    _flush(text, parts)
    if not _groups(parts) and len(parts) == 1 and isinstance(parts[0], str):
        assigned = _ASSIGNED.fullmatch(parts[0])
        if assigned:  # `X = "a long string"`: ruff may put the value in brackets
            return [assigned.group(1), assigned.group(2)]
    return parts


def _groups(parts: list[Node]) -> bool:
    return any(isinstance(part, Group) for part in parts)


def _flush(text: list[str], parts: list[Node]) -> None:
    if text:
        joined = "".join(text)
        if parts and isinstance(parts[-1], str):
            parts[-1] += joined
        else:
            parts.append(joined)
        text.clear()


def _string_end(statement: str, start: int) -> int:
    quote = statement[start]
    if statement.startswith(quote * 3, start):
        end = statement.find(quote * 3, start + 3)
        return len(statement) if end < 0 else end + 3
    at = start + 1
    while at < len(statement) and statement[at] != quote:
        at += 2 if statement[at] == "\\" else 1
    return at + 1
