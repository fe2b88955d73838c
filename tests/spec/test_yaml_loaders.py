"""The spec loader reads YAML with libyaml (PyYAML's CSafeLoader), several times faster
than PyYAML's own parser, only where the two give the same: the same nodes, tags, values
and line:column marks, so the same data, positions and messages. PyYAML's parser stays
the reference: YAML libyaml refuses, and text where the two are known to differ, go to it.

Checked here on every YAML file in the repository, every broken spec of tests/spec/errors/,
every YAML text in the tests' Python files, thousands of variations of them, and every
short string of YAML's indicators in the places a value goes; the differences found that
way each have a case below that fails without its guard in loader.py.
"""

from __future__ import annotations

import ast
import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from endpointgen import commands
from endpointgen.compiler import loader, pipeline
from endpointgen.errors import Problem, SpecError

ROOT = Path(__file__).resolve().parents[2]
FAST = yaml.CSafeLoader  # the test needs PyYAML built with libyaml, as the wheels are


def _yaml_texts() -> dict[str, bytes]:
    """Every YAML file under specs/ and tests/, each `spec:` of the error cases, and each
    multi-line string with a `:` in the tests' Python files (specs written inline)."""
    texts: dict[str, bytes] = {}
    files = [*ROOT.glob("specs/**/*.y*ml"), *ROOT.glob("tests/**/*.y*ml")]
    for path in sorted(files):
        name = str(path.relative_to(ROOT))
        texts[name] = path.read_bytes()
        if path.parent.name in ("errors", "shapes") and "errors" in path.parts:
            for case in yaml.safe_load(texts[name]) or []:
                if isinstance(case, dict) and isinstance(case.get("spec"), str):
                    texts[f"{name}#{case['id']}"] = case["spec"].encode("utf-8")
    for path in sorted(ROOT.glob("tests/**/*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            value = getattr(node, "value", None)
            if isinstance(node, ast.Constant) and isinstance(value, str):
                if "\n" in value and ":" in value:
                    text = value.encode("utf-8", "surrogatepass")
                    texts[f"{path.relative_to(ROOT)}:{node.lineno}"] = text
    return texts


TEXTS = _yaml_texts()


def _decoded() -> dict[str, str]:
    """The texts that are UTF-8, as the loader reads them (a leading byte-order mark
    dropped)."""
    out = {}
    for name, raw in TEXTS.items():
        try:
            out[name] = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError:
            continue
    return out


def _outcome(raw: bytes | str) -> tuple[Any, ...]:
    """What loading gives: the data with every position, or the problems' lines."""
    try:
        doc = loader.loads(raw, "spec.yaml")
    except SpecError as exc:
        return ("problems", [str(p) for p in exc.problems])
    return ("document", doc.data, doc.keys, doc.values)


@pytest.fixture
def reference() -> Iterator[Any]:
    """Loading as before libyaml: PyYAML's own parser for every text."""

    def pure(raw: bytes | str) -> tuple[Any, ...]:
        fast, loader._FAST = loader._FAST, None
        try:
            return _outcome(raw)
        finally:
            loader._FAST = fast

    yield pure


def _tree(node: Node | None) -> Any:
    """A node tree as comparable data: kind, tag, value and where it starts (the line and
    column the loader keeps; end marks it never reads, and the two place the end of a
    collection at the end of a file differently); an alias (the same node met again) as
    a reference to where it was first met."""
    seen: dict[int, int] = {}

    def walk(node: Node) -> Any:
        if id(node) in seen:
            return ("alias", seen[id(node)])
        seen[id(node)] = len(seen)
        marks = (node.start_mark.line, node.start_mark.column)
        if isinstance(node, ScalarNode):
            return ("scalar", node.tag, node.value, marks)
        if isinstance(node, SequenceNode):
            return ("seq", node.tag, marks, [walk(item) for item in node.value])
        assert isinstance(node, MappingNode)
        return ("map", node.tag, marks, [(walk(k), walk(v)) for k, v in node.value])

    return None if node is None else walk(node)


def test_libyaml_composes_every_yaml_file_as_pyyaml_does() -> None:
    """The claim the fast path rests on, node by node with every mark, on every text here
    that PyYAML reads; and a text PyYAML refuses is one libyaml refuses too, or one the
    loader keeps from it."""
    assert len(TEXTS) > 300
    compared = 0
    for name, text in _decoded().items():
        guarded = loader._PURE_ONLY.search(text) is not None
        try:
            expected = yaml.compose(text, Loader=yaml.SafeLoader)
        except (yaml.YAMLError, RecursionError):
            if not guarded:
                try:
                    got = yaml.compose(text, Loader=FAST)
                except yaml.YAMLError:
                    continue
                assert loader._differs(got), name
            continue
        if guarded:
            continue
        got = yaml.compose(text, Loader=FAST)
        if loader._differs(got):
            continue
        assert _tree(got) == _tree(expected), name
        compared += 1
    assert compared > 300


def test_every_yaml_text_loads_as_before(reference: Any) -> None:
    """The same data and positions, or the same problems, for every text here."""
    for name, raw in TEXTS.items():
        assert _outcome(raw) == reference(raw), name


def test_the_specs_here_take_the_fast_path() -> None:
    """The seed specs are read by libyaml (a guard that caught them all would keep the
    loader correct, and slow)."""
    specs = sorted(ROOT.glob("specs/*.yaml"))
    assert len(specs) >= 15
    for path in specs:
        text = path.read_text(encoding="utf-8")
        guard = loader._PURE_ONLY.search(text)
        assert guard is None, f"{path}: {guard.group()!r} sends it to PyYAML's parser"
        assert not loader._differs(yaml.compose(text, Loader=FAST)), path


# Where libyaml and PyYAML differ: each would load differently without its guard in
# loader.py (the first assertion shows libyaml's difference, the second the guard).
DIFFERENCES = {
    # PyYAML refuses a tab inside a plain value; libyaml reads it.
    "a tab in a plain value": "name: demo\ndescription: one\ttwo\n",
    # A byte-order mark after the start: the two count the columns after it differently.
    "a byte-order mark inside": "  \ufeffname: demo\n",
    # A bare `!` tag: PyYAML resolves the value as if untagged (null), libyaml as a string.
    "a bare tag": "name: demo\ndescription: !\n",
    # An explicit key without a value: the two place the missing value differently.
    "an explicit key": "name: demo\n? description",
    # In [...] and {...}, PyYAML ends a plain value at `?`; libyaml reads on.
    "a question mark in a flow value": "name: demo\nsecrets: [sk-ab?cd]\n",
    # An empty value in {...}: one column apart.
    "an empty value in a flow mapping": "name: demo\nerrors: {ValueError: {status: }}\n",
    # A comment right after a block scalar's indicator: PyYAML refuses it.
    "a comment glued to a block scalar": "name: demo\ndescription: |# note\n  text\n",
    # Deeper than Python's stack lets PyYAML's composer go; libyaml nests to 1,000 levels.
    "nesting 600 levels deep": "name: demo\nx: " + "[" * 600 + "]" * 600 + "\n",
}


def _libyaml_alone(text: str) -> Any:
    """What libyaml's tree would load as, unguarded."""
    try:
        root = yaml.compose(text, Loader=FAST)
    except yaml.YAMLError as exc:
        return ("refused", str(exc))
    try:
        doc = loader._built(root, "spec.yaml")
    except SpecError as exc:
        return ("problems", [str(p) for p in exc.problems])
    return ("document", doc.data, doc.keys, doc.values)


@pytest.mark.parametrize("text", DIFFERENCES.values(), ids=DIFFERENCES.keys())
def test_where_libyaml_differs_pyyaml_reads_the_text(text: str, reference: Any) -> None:
    assert _libyaml_alone(text) != reference(text)
    assert _outcome(text) == reference(text)


def test_nesting_too_deep_says_what_it_said_before(reference: Any) -> None:
    """Past both parsers' depth: PyYAML's message, not libyaml's."""
    text = "name: demo\nx: " + "[" * 1200 + "]" * 1200 + "\n"
    assert (
        _outcome(text)
        == reference(text)
        == (
            "problems",
            ["spec.yaml:1:1: invalid YAML: lists or mappings nested too deeply"],
        )
    )


# Characters that make YAML's structure, and the places a value or key is written.
INDICATORS = " -?:,[]{}#&*!|>'\"%@`a1\n\t"
PLACES = ["k: {}", "k: [{}]", "k: {{{}}}", "- {}", "{}", "k:\n  {}\n", "k: |\n  {}\nz: 1", "? {}"]


def test_every_short_string_of_indicators_loads_as_before(reference: Any) -> None:
    """All strings of up to two of YAML's indicators, in every place: the same outcome.
    (Up to four, over 700,000 texts, were checked the same way when the guards were
    written.)"""
    for size in (1, 2):
        for chars in itertools.product(INDICATORS, repeat=size):
            for place in PLACES:
                text = place.format("".join(chars))
                assert _outcome(text) == reference(text), repr(text)


# Pieces a mutation inserts: YAML's indicators, line breaks of every kind, characters
# outside ASCII and the Basic Multilingual Plane, and a few whole constructs.
PIECES = [
    *INDICATORS,
    *["\r", "\r\n", "\x85", "\u2028", "\u2029", "\xa0", "é", "\U0001f600", "\x7f", "\x01"],
    *["- ", ": ", "  ", "\n  ", "&a ", "*a", "<<: ", "!!str ", "!x ", "~", "0x1F", "1e3"],
    *["2001-12-14", "---\n", "...\n", '"\\u00e9"', "'a''b'", "|-\n  x\n", ">\n  a\n  b\n"],
    *["{a: }", "[a, ]", "{a, b}", "[a: b]", "? ", '"a\\\n  b"'],
]


def _mutated(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        at = rng.randint(0, len(text))
        roll = rng.random()
        if roll < 0.5:
            text = text[:at] + rng.choice(PIECES) + text[at:]
        elif roll < 0.8:
            text = text[:at] + text[at + rng.randint(1, 5) :]
        elif roll < 0.9:
            start = rng.randint(0, len(text))
            text = text[:at] + text[start : start + rng.randint(0, 40)] + text[at:]
        else:
            lines = text.split("\n")
            i = rng.randrange(len(lines))
            lines[i] = rng.choice(["", " ", "  "]) + lines[i].lstrip(" ")
            text = "\n".join(lines)
    return text


def test_variations_of_every_text_load_as_before(reference: Any) -> None:
    """A few thousand random edits (fixed seed) of the texts here: the same outcome.
    (Several hundred thousand were checked the same way when the guards were written.)"""
    rng = random.Random(31)
    texts = [text for text in _decoded().values() if text]
    for _ in range(3000):
        text = _mutated(rng, rng.choice(texts)).encode("utf-8", "surrogatepass")
        assert _outcome(text) == reference(text), text


def test_validate_reads_each_spec_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`validate` checks a spec and finds its warnings from one reading of the file."""
    read: list[str] = []
    load = loader.load

    def counted(path: str | Path) -> loader.Document:
        read.append(str(path))
        return load(path)

    monkeypatch.setattr(loader, "load", counted)
    specs = sorted(ROOT.glob("specs/*.yaml"))
    assert commands.validate(specs) == 0
    assert read == [str(p) for p in specs]
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"{p}: ok" for p in specs]


def test_validate_gives_the_warnings_of_a_spec_without_problems() -> None:
    """`validate(path, warnings)` adds what `warnings(path)` gives, for a spec without
    problems; nothing for one with problems."""
    for path in sorted(ROOT.glob("specs/*.yaml")):
        found: list[Problem] = []
        assert pipeline.validate(path, found) == []
        assert found == pipeline.warnings(path)
    assert any(pipeline.warnings(path) for path in sorted(ROOT.glob("specs/*.yaml")))
    broken = ROOT / "tests" / "spec" / "errors" / "files" / "invalid-utf8.yaml"
    found = []
    assert pipeline.validate(broken, found) and found == []
