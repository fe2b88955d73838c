"""The module's templates (templates/module/) and the layout that follows them.

The templates write each statement on one line; `pycode.layout` lays out the long ones
as `ruff format` does. Every golden module is ruff's own layout (test_build checks that
with ruff), so turning each golden back into one-line statements and laying it out again
must give the golden back, byte for byte.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from endpointgen.compiler import render
from endpointgen.compiler.pycode import layout
from endpointgen.spec.models import ROUTE_CLASSES

ROOT = Path(__file__).parents[2]
GOLDEN = sorted((ROOT / "tests" / "golden").glob("*.py"))


def _depth(text: str) -> int:
    """How many brackets `text` leaves open (strings skipped)."""
    depth, at = 0, 0
    while at < len(text):
        ch = text[at]
        if ch in "\"'":
            at += 1
            while at < len(text) and text[at] != ch:
                at += 2 if text[at] == "\\" else 1
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        at += 1
    return depth


def one_line_statements(source: str) -> str:
    """`source` with every statement that ruff split joined back onto one line, its
    trailing commas and the brackets ruff added around a chain dropped."""
    out: list[str] = []
    joined: str | None = None
    depth = 0
    in_docstring = False
    for line in source.split("\n"):
        if joined is None:
            quotes = line.count('"""')
            if in_docstring or quotes:
                out.append(line)
                in_docstring ^= quotes % 2 == 1
                continue
            depth = _depth(line)
            if depth > 0:
                joined = line.rstrip()
            else:
                out.append(line)
            continue
        part = line.strip()
        depth += _depth(part)
        if part[0] in ")]}" and joined.endswith(","):
            joined = joined[:-1]
        glued = joined.endswith(("(", "[", "{")) or part[0] in ")]}" or part.startswith(".")
        joined += part if glued else " " + part
        if depth == 0:
            wrapped = re.fullmatch(r"(\s*(?:\w+ = |return ))\((.*)\)", joined)
            if wrapped and _depth(wrapped.group(2)) == 0 and ", " not in wrapped.group(2)[:1]:
                joined = wrapped.group(1) + wrapped.group(2)
            out.append(joined)
            joined = None
    return "\n".join(out)


@pytest.mark.parametrize("golden", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_layout_is_ruffs_on_every_golden(golden: Path) -> None:
    source = golden.read_text(encoding="utf-8")
    flat = one_line_statements(source)
    assert flat != source  # there was something to lay out
    assert max(len(line) for line in flat.splitlines()) > 88
    assert layout(flat) == source


def test_layout_leaves_strings_that_span_lines_alone() -> None:
    long = "x" * 100
    source = f'def f() -> None:\n    """{long}\n    {long}(a, b)\n    """\n'
    assert layout(source) == source
    # A string holding three quotes is not a docstring: the call after it is laid out.
    call = f'    value = call({"a" * 30!r}, \'"""\', {"b" * 30!r})'
    assert layout(call) == "\n".join(
        ["    value = call(", f'        {"a" * 30!r}, \'"""\', {"b" * 30!r}', "    )"]
    )


def test_every_action_has_a_macro() -> None:
    """A route action is written by its own macro in templates/module/routes.py.jinja."""
    macros = render.environment().get_template("module/routes.py.jinja").module
    for action in ROUTE_CLASSES:
        assert callable(getattr(macros, action, None)), f"no macro for `{action}` routes"


def test_the_module_is_the_same_bytes_in_every_process(tmp_path: Path) -> None:
    """Builds in processes with different hash seeds (set and dict orders) agree."""
    specs = [str(ROOT / "specs" / name) for name in ("multi.yaml", "jobs.yaml", "hello.yaml")]
    built = []
    for seed in ("1", "2"):
        out = tmp_path / seed
        env = {**os.environ, "PYTHONHASHSEED": seed, "ENDPOINTGEN_NO_QUICK": ""}
        subprocess.run(
            [sys.executable, "-m", "endpointgen", "build", *specs, "-o", str(out)],
            check=True,
            capture_output=True,
            env=env,
        )
        built.append({p.name: p.read_bytes() for p in sorted(out.glob("*.py"))})
    assert built[0] == built[1]
    assert len(built[0]) == 3
