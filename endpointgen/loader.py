"""YAML -> plain data, remembering where every key and value stood in the file.

Only safe YAML is read: a tag outside YAML's core schema (`!!python/object`,
`!custom`, ...) is an error, as are duplicate keys, merge keys, several
documents, binary files and anything that is not a mapping at the top.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from endpointgen.errors import Loc, Problem, SpecError

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {
    _CORE + name for name in ("str", "int", "float", "bool", "null", "map", "seq")
}
_TIMESTAMP = _CORE + "timestamp"
_MAX_NODES = 100_000  # an alias bomb expands far past this; real specs stay far below
_MAX_BYTES = 2 * 1024 * 1024

Position = tuple[int, int]


@dataclass
class Document:
    """A spec file's data, with the 1-based line and column of each key and value."""

    file: str
    data: dict[str, Any]
    keys: dict[Loc, Position] = field(default_factory=dict)
    values: dict[Loc, Position] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.file).parent

    def position(self, loc: Loc, *, key: bool = False) -> Position:
        """Where `loc` is written; the nearest parent that exists when it is not."""
        table = self.keys if key else self.values
        if loc in table:
            return table[loc]
        for end in range(len(loc) - 1, -1, -1):
            if loc[:end] in self.values:
                return self.values[loc[:end]]
        return (1, 1)

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        line, col = self.position(loc, key=key)
        return Problem(self.file, line, col, loc, message)

    def with_overlay(self, env: str) -> Document:
        """This document with `environments.<env>` deep-merged over the base."""
        overlay = self.data["environments"][env]
        prefix: Loc = ("environments", env)
        data = {k: copy.deepcopy(v) for k, v in self.data.items() if k != "environments"}
        merged = Document(self.file, data, dict(self.keys), dict(self.values))
        _merge(merged, (), data, overlay, self, prefix)
        return merged


def _merge(
    target_doc: Document,
    loc: Loc,
    target: dict[str, Any],
    overlay: dict[str, Any],
    source_doc: Document,
    source_loc: Loc,
) -> None:
    for k, v in overlay.items():
        here, there = (*loc, k), (*source_loc, k)
        if isinstance(v, dict) and isinstance(target.get(k), dict):
            target_doc.keys[here] = source_doc.keys.get(there, target_doc.keys.get(here, (1, 1)))
            _merge(target_doc, here, target[k], v, source_doc, there)
            continue
        target[k] = copy.deepcopy(v)
        for table, source in ((target_doc.keys, source_doc.keys), (target_doc.values, source_doc.values)):
            for old in [p for p in table if p[: len(here)] == here]:
                del table[old]
            for p, pos in source.items():
                if p[: len(there)] == there:
                    table[here + p[len(there) :]] = pos


def load(path: str | Path) -> Document:
    """Read one spec file; raises SpecError naming the file, line and column."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SpecError([Problem(file, 1, 1, (), "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(file, 1, 1, (), "is a directory, not a spec file")]) from None
    except OSError as exc:
        raise SpecError([Problem(file, 1, 1, (), f"cannot read: {exc.strerror}")]) from None
    return loads(raw, file)


def loads(raw: bytes | str, file: str = "<spec>") -> Document:
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if len(raw) > _MAX_BYTES:
        raise SpecError([Problem(file, 1, 1, (), "file is too large for a spec (over 2 MiB)")])
    if b"\x00" in raw:
        raise SpecError([Problem(file, 1, 1, (), "not a text file (it contains NUL bytes)")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError([Problem(file, line, col, (), "not UTF-8 text")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(str(s) for s in (exc.context, exc.problem) if s)
        raise SpecError([Problem(file, line, col, (), f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, 1, 1, (), f"invalid YAML: {exc}")]) from None
    if root is None:
        raise SpecError(
            [Problem(file, 1, 1, (), "the file is empty; a spec needs at least `name` and `routes`")]
        )
    if not isinstance(root, MappingNode):
        line, col = _pos(root)
        kind = "a list" if isinstance(root, SequenceNode) else "a single value"
        raise SpecError(
            [Problem(file, line, col, (), f"a spec must be a YAML mapping (key: value), not {kind}")]
        )
    builder = _Builder(file)
    data = builder.build(root, ())
    if builder.problems:
        raise SpecError(builder.problems)
    assert isinstance(data, dict)
    return Document(file, data, builder.keys, builder.values)


def _pos(node: Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


class _Builder:
    """Turns composed YAML nodes into data, checking what SafeLoader would let through."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.keys: dict[Loc, Position] = {}
        self.values: dict[Loc, Position] = {}
        self.problems: list[Problem] = []
        self.nodes = 0
        self.scalars = SafeConstructor()

    def fail(self, node: Node, loc: Loc, message: str) -> None:
        line, col = _pos(node)
        self.problems.append(Problem(self.file, line, col, loc, message))

    def build(self, node: Node, loc: Loc) -> Any:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            if self.nodes == _MAX_NODES + 1:
                self.fail(node, loc, "too many YAML nodes (aliases expanding without bound?)")
            return None
        self.values[loc] = _pos(node)
        if node.tag not in _ALLOWED_TAGS and node.tag != _TIMESTAMP:
            self.fail(node, loc, f"YAML tag {node.tag.replace(_CORE, '!!')} is not allowed in a spec")
            return None
        if isinstance(node, ScalarNode):
            if node.tag == _TIMESTAMP:
                return node.value  # a date-looking string stays the string the user wrote
            try:
                return self.scalars.construct_object(node)
            except yaml.YAMLError as exc:
                self.fail(node, loc, f"invalid value: {exc}")
                return None
        if isinstance(node, SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        assert isinstance(node, MappingNode)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _CORE + "merge":
                self.fail(key_node, loc, "YAML merge keys (<<) are not supported; write the keys out")
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _ALLOWED_TAGS:
                self.fail(key_node, loc, "a key must be a plain string")
                continue
            key = str(self.scalars.construct_object(key_node))
            if key in out:
                line, _ = self.keys[(*loc, key)]
                self.fail(key_node, (*loc, key), f"duplicate key (first given on line {line})")
                continue
            self.keys[(*loc, key)] = _pos(key_node)
            out[key] = self.build(value_node, (*loc, key))
        return out
