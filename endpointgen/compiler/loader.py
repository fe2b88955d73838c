"""YAML -> plain data, remembering where every key and value stood in the file.

Only safe YAML is read: a tag outside YAML's core schema (`!!python/object`,
`!custom`, ...) is an error, as are duplicate keys, merge keys, several
documents, binary files and anything that is not a mapping at the top.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode

from endpointgen.errors import Loc, Problem, SpecError

_CORE = "tag:yaml.org,2002:"
_ALLOWED_TAGS = {_CORE + name for name in ("str", "int", "float", "bool", "null", "map", "seq")}
_TIMESTAMP = _CORE + "timestamp"
_MAX_NODES = 100_000  # an alias bomb expands far past this; real specs stay far below
_MAX_DEPTH = 64  # real specs nest a few levels; deeper would exhaust Python's stack
_MAX_BYTES = 2 * 1024 * 1024
# libyaml's parser (PyYAML's CSafeLoader) composes the same nodes, tags and marks as
# PyYAML's own, several times faster (tests/spec/test_yaml_loaders.py compares them).
_FAST: Any = getattr(yaml, "CSafeLoader", None)
# Text where the two may differ goes to PyYAML's, the reference: a tab (PyYAML refuses one
# inside a plain value, libyaml reads it), a byte-order mark after the start (the two count
# the columns after it differently), a tag (`!` where a token starts: PyYAML resolves a
# bare `!` as if untagged), an explicit key (`? `: the two place a missing value at
# different columns), a `#` right after a block scalar's `|` or `>` (PyYAML refuses it).
_PURE_ONLY = re.compile(r"[\t\ufeff]|(?:^|[\s\[{,])(?:!|\?(?:\s|$))|[|>][-+0-9]*#")

Position = tuple[int, int]


@dataclass
class Document:
    """A spec file's data, with the 1-based line and column of each key and value."""

    file: str
    data: dict[str, Any]
    keys: dict[Loc, Position] = field(default_factory=dict)
    values: dict[Loc, Position] = field(default_factory=dict)
    # In a document merged with an overlay: where each position taken from the overlay
    # was written, e.g. ("gpu",) -> ("environments", "prod", "gpu").
    overlay_keys: dict[Loc, Loc] = field(default_factory=dict)
    overlay_values: dict[Loc, Loc] = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.file).parent

    def position(self, loc: Loc, *, key: bool = False) -> Position:
        """Where `loc` is written; the nearest parent that exists when it is not."""
        return self._found(loc, key)[0]

    def _found(self, loc: Loc, key: bool) -> tuple[Position, Loc]:
        """The position of `loc` (or of its nearest written parent) and where the
        user wrote it: inside `environments.<env>` when it came from an overlay."""
        table, origins = (
            (self.keys, self.overlay_keys) if key else (self.values, self.overlay_values)
        )
        if loc in table:
            return table[loc], _origin(loc, loc, origins)
        for end in range(len(loc) - 1, -1, -1):
            if loc[:end] in self.values:
                return self.values[loc[:end]], _origin(loc, loc[:end], self.overlay_values)
        return (1, 1), loc

    def problem(self, loc: Loc, message: str, *, key: bool = False) -> Problem:
        (line, col), written = self._found(loc, key)
        return Problem(self.file, line, col, _printable_loc(written), message)

    def with_overlay(self, env: str) -> Document:
        """This document with `environments.<env>` deep-merged over the base."""
        overlay = self.data["environments"][env]
        prefix: Loc = ("environments", env)
        data = {k: copy.deepcopy(v) for k, v in self.data.items() if k != "environments"}
        merged = Document(self.file, data, dict(self.keys), dict(self.values))
        _merge(merged, (), data, overlay, self, prefix)
        return merged


def _printable_loc(loc: Loc) -> Loc:
    """A key with a newline (or another unprintable character) is shown escaped and
    quoted, so that each problem stays on one line."""
    return tuple(p if isinstance(p, int) or p.isprintable() else repr(p) for p in loc)


def _origin(loc: Loc, found: Loc, origins: dict[Loc, Loc]) -> Loc:
    """`loc` renamed to where it was written, when `found` (a prefix) came from an overlay."""
    if found in origins:
        return origins[found] + loc[len(found) :]
    return loc


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
            if there in source_doc.keys:
                target_doc.keys[here] = source_doc.keys[there]
                target_doc.overlay_keys[here] = there
            _merge(target_doc, here, target[k], v, source_doc, there)
            continue
        target[k] = copy.deepcopy(v)
        tables = (
            (target_doc.keys, target_doc.overlay_keys, source_doc.keys),
            (target_doc.values, target_doc.overlay_values, source_doc.values),
        )
        for table, origins, source in tables:
            for old in [p for p in table if p[: len(here)] == here]:
                del table[old]
                origins.pop(old, None)
            for p, pos in source.items():
                if p[: len(there)] == there:
                    table[here + p[len(there) :]] = pos
                    origins[here + p[len(there) :]] = p


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
    raw = raw.removeprefix(b"\xef\xbb\xbf")  # a byte-order mark is allowed, and dropped
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        before = raw[raw.rfind(b"\n", 0, exc.start) + 1 : exc.start]
        col = len(before.decode("utf-8")) + 1  # in characters, as YAML's columns are
        raise SpecError([Problem(file, line, col, (), "not UTF-8 text")]) from None
    return _built(_compose(text, file), file)


def _compose(text: str, file: str) -> Node | None:
    """The node tree of `text`; SpecError at the first YAML problem. libyaml composes it
    when it gives what PyYAML's own parser gives: YAML that libyaml refuses, or reads where
    the two differ (`_PURE_ONLY`, `_differs`), goes to PyYAML's, whose messages
    (`_yaml_message`) are the ones we print."""
    if _FAST is not None and not _PURE_ONLY.search(text):
        try:
            root = yaml.compose(text, Loader=_FAST)
        except yaml.YAMLError:
            pass
        else:
            if not _differs(root):
                return root
    return _pure(text, file)


def _differs(root: Node | None) -> bool:
    """Whether libyaml's tree may not be PyYAML's: a node nested deeper than a spec reads
    (libyaml nests up to 1,000 levels; PyYAML's composer runs out of Python's stack first,
    and says so); in a [...] or {...} collection, a plain value holding `?` (which PyYAML
    refuses there) or an empty one (whose column the two count differently). The walk
    goes in the file's order, so each node is met first where it is written, and an
    alias (met later) is not followed again."""
    seen: set[int] = set()
    stack = [(root, 0, False)] if root is not None else []
    while stack:
        node, depth, flow = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > _MAX_DEPTH:
            return True
        if isinstance(node, ScalarNode):
            if flow and not node.style and (not node.value or "?" in node.value):
                return True
            continue
        assert isinstance(node, CollectionNode)
        flow = flow or bool(node.flow_style)
        if isinstance(node, SequenceNode):
            stack += [(item, depth + 1, flow) for item in reversed(node.value)]
        elif isinstance(node, MappingNode):
            for key, value in reversed(node.value):
                stack += [(value, depth + 1, flow), (key, depth + 1, flow)]
    return False


def _pure(text: str, file: str) -> Node | None:
    """The node tree from PyYAML's own parser; SpecError at the first YAML problem."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise SpecError([Problem(file, line, col, (), _yaml_message(exc))]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Problem(file, 1, 1, (), f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise SpecError(
            [Problem(file, 1, 1, (), "invalid YAML: lists or mappings nested too deeply")]
        ) from None


def _built(root: Node | None, file: str) -> Document:
    """The document of a composed tree; SpecError listing its problems."""
    if root is None or (
        isinstance(root, ScalarNode) and root.tag == _CORE + "null" and not root.value
    ):
        raise SpecError(
            [
                Problem(
                    file,
                    1,
                    1,
                    (),
                    "the file is empty; a spec needs at least `name` and `routes`",
                )
            ]
        )
    if not isinstance(root, MappingNode):
        line, col = _pos(root)
        kind = "a list" if isinstance(root, SequenceNode) else "a single value"
        raise SpecError(
            [
                Problem(
                    file,
                    line,
                    col,
                    (),
                    f"a spec must be a YAML mapping (key: value), not {kind}",
                )
            ]
        )
    builder = _Builder(file)
    data = builder.build(root, ())
    if builder.problems:
        raise SpecError(builder.problems)
    assert isinstance(data, dict)
    return Document(file, data, builder.keys, builder.values)


def _pos(node: Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


# PyYAML's words for what a user wrote, in the user's words.
_YAML_WORDS = (
    ("'<stream end>'", "the end of the file"),
    ("end of stream", "end of the file"),
    ("flow sequence", "[...] list"),
    ("flow mapping", "{...} mapping"),
    ("quoted scalar", "quoted string"),
)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem, context = exc.problem or "", exc.context or ""
    if context.startswith("expected a single document"):
        return "a spec is one YAML document, but another one (`---`) starts here"
    if "'\\t'" in problem:
        return "invalid YAML: a tab character here; indent YAML with spaces"
    for old, new in _YAML_WORDS:
        problem, context = problem.replace(old, new), context.replace(old, new)
    text = problem or context
    if problem and context:
        mark, at = exc.context_mark, exc.problem_mark
        if mark is not None and (at is None or (mark.line, mark.column) != (at.line, at.column)):
            context += f" at line {mark.line + 1}, column {mark.column + 1}"
        text = f"{problem} ({context})"
    if "<block" in problem:
        text += "; check the indentation"
    return f"invalid YAML: {text}"


class _Builder:
    """Turns composed YAML nodes into data, checking what SafeLoader would let through."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.keys: dict[Loc, Position] = {}
        self.values: dict[Loc, Position] = {}
        self.problems: list[Problem] = []
        self.nodes = 0
        self.scalars = SafeConstructor()
        self.open: set[int] = set()  # the nodes being built: an alias to one is a loop

    def fail(self, node: Node, loc: Loc, message: str) -> None:
        line, col = _pos(node)
        self.problems.append(Problem(self.file, line, col, _printable_loc(loc), message))

    def build(self, node: Node, loc: Loc) -> Any:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            if self.nodes == _MAX_NODES + 1:
                self.fail(node, loc, "too many YAML nodes (aliases expanding without bound?)")
            return None
        self.values[loc] = _pos(node)
        if node.tag not in _ALLOWED_TAGS and node.tag != _TIMESTAMP:
            self.fail(
                node,
                loc,
                f"YAML tag {node.tag.replace(_CORE, '!!')} is not allowed in a spec",
            )
            return None
        if id(node) in self.open:
            self.fail(
                node,
                loc,
                "a YAML alias (*name) here refers to a value that contains it",
            )
            return None
        if len(loc) > _MAX_DEPTH:
            self.fail(node, loc, f"lists or mappings nested more than {_MAX_DEPTH} deep")
            return None
        fits = {_CORE + "seq": SequenceNode, _CORE + "map": MappingNode}.get(node.tag, ScalarNode)
        if not isinstance(node, fits):
            self.fail(
                node,
                loc,
                f"YAML tag {node.tag.replace(_CORE, '!!')} does not fit this value",
            )
            return None
        self.open.add(id(node))
        try:
            return self._build(node, loc)
        finally:
            self.open.discard(id(node))

    def _build(self, node: Node, loc: Loc) -> Any:
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
                self.fail(
                    key_node,
                    loc,
                    "YAML merge keys (<<) are not supported; write the keys out",
                )
                continue
            if not isinstance(key_node, ScalarNode) or key_node.tag not in _ALLOWED_TAGS:
                self.fail(key_node, loc, "a key must be a plain string")
                continue
            # The key as written: `ON:` is the name ON, not the boolean YAML reads there.
            key = key_node.value
            if key in out:
                line, _ = self.keys[(*loc, key)]
                self.fail(key_node, (*loc, key), f"duplicate key (first given on line {line})")
                continue
            self.keys[(*loc, key)] = _pos(key_node)
            out[key] = self.build(value_node, (*loc, key))
        return out
