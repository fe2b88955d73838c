"""Misused route keys (params, request, response, handler, upload, file, errors, loader)
and the exact line each must give: `spec.yaml:LINE:COL: key.path: message`.

The table of misused keys is data: tests/spec/errors/shapes/*.yaml, each case a spec as a
user writes it and the lines it must give (tests/spec/errors/README.md). Every case is
validated as `spec.yaml` from inside its folder, which also holds a good handler
(`h.py:ok`), a broken one (`bad.py`) and a folder `files/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from test_spec_errors import load_cases
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError

# 1 name / 2 routes / 3 the first route
PLAIN = "name: demo\nroutes:\n"


def respond(*lines: str) -> str:
    """A GET respond route at line 3, its keys from line 6 on."""
    return PLAIN + "  - path: /a\n    action: respond\n    response: x\n" + "".join(lines)


CASES = load_cases(Path(__file__).parent / "errors" / "shapes")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.py").write_text("def ok(data):\n    return data\n")
    (tmp_path / "bad.py").write_text("import json\n\ndef ok(data:\n    return data\n")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    return tmp_path


def write(folder: Path, content: str | bytes) -> Path:
    path = folder / "spec.yaml"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def lines_for(path: str | Path) -> list[str]:
    return [str(problem) for problem in pipeline.validate(path)]


@pytest.mark.parametrize(("content", "expected"), CASES)
def test_misused_key_gives_exact_lines(in_tmp: Path, content: bytes, expected: list[str]) -> None:
    write(in_tmp, content)
    assert lines_for("spec.yaml") == expected


@pytest.mark.parametrize(("content", "expected"), CASES)
def test_build_and_the_command_refuse_with_the_same_lines(
    in_tmp: Path, content: bytes, expected: list[str]
) -> None:
    write(in_tmp, content)
    with pytest.raises(SpecError) as caught:
        pipeline.build("spec.yaml", in_tmp / "out")
    assert sorted(str(p) for p in caught.value.problems) == sorted(expected)
    result = CliRunner().invoke(app, ["validate", "spec.yaml"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.splitlines() == expected


def test_the_fixed_cases_validate(in_tmp: Path) -> None:
    """The same keys, used where they belong, are fine: the checks are not blanket bans."""
    spec = {
        "name": "demo",
        "errors": {"ValueError": {"status": 422, "message": "bad value"}},
        "routes": [
            {
                "path": "/a/{id}",
                "method": "POST",
                "action": "respond",
                "status": 201,
                "response_type": "text",
                "response": "{id}",
                "params": {
                    "id": {"type": "int", "min": 1},
                    "q": {"type": "str", "min_length": 1, "enum": ["x", "y"], "default": "x"},
                },
                "request": {"tags": {"type": "list[str]", "max_items": 3}},
            },
            {"path": "/h", "action": "handler", "handler": "h.py:ok", "response_type": "sse"},
            {
                "path": "/u",
                "method": "PUT",
                "action": "upload",
                "processor": "handler",
                "handler": "h.py:ok",
                "content_types": ["application/pdf"],
            },
            {"path": "/c", "method": "POST", "action": "upload", "processor": "csv", "max_rows": 5},
            {
                "path": "/f/{name:path}",
                "action": "file",
                "folder": "files",
                "media_type": "text/plain",
            },
            {"path": "/v/{name}", "action": "file", "volume": "reports", "download_name": "r.txt"},
        ],
    }
    write(in_tmp, yaml.safe_dump(spec, sort_keys=False))
    assert lines_for("spec.yaml") == []
    pipeline.build("spec.yaml", in_tmp / "out")


# --- values that contradict their own field -------------------------------------------
# A default or an enum value that the field's type or bounds refuse would reach the app
# and be served as-is (a default skips validation): the spec must say so at the field.

CONTRADICTIONS = [
    pytest.param("{type: int, default: oops}", "default", id="default-of-another-type"),
    pytest.param("{type: int, default: 0, min: 1}", "default", id="default-below-min"),
    pytest.param("{type: str, default: xyz, max_length: 2}", "default", id="default-too-long"),
    pytest.param("{type: str, default: c, enum: [a, b]}", "default", id="default-not-in-enum"),
    pytest.param("{type: int, enum: [a, b]}", "enum", id="enum-of-another-type"),
    pytest.param("{type: int, min: 5, max: 1}", "min", id="min-above-max"),
    pytest.param(
        "{type: str, min_length: 5, max_length: 1}", "min_length", id="min-length-above-max"
    ),
]


@pytest.mark.parametrize(("field", "word"), CONTRADICTIONS)
def test_a_field_that_contradicts_itself_is_refused_at_its_line(
    in_tmp: Path, field: str, word: str
) -> None:
    write(in_tmp, respond(f"    params:\n      q: {field}\n"))
    lines = lines_for("spec.yaml")
    assert len(lines) == 1, lines
    assert lines[0].startswith("spec.yaml:7:") and "routes[0].params.q" in lines[0], lines
    assert word in lines[0].split("routes[0].params.q", 1)[1], lines
    with pytest.raises(SpecError):
        pipeline.build("spec.yaml", in_tmp / "out")


# --- messages for malformed values say what is expected, not a regular expression -----

PLAIN_WORDS = [
    pytest.param(
        PLAIN + "  - path: /a\n    action: handler\n    handler: h.py\n",
        "spec.yaml:5:14: routes[0].handler: ",
        "file.py:function",
        id="handler-without-a-function",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    action: handler\n    handler: 'h.py: ok'\n",
        "spec.yaml:5:14: routes[0].handler: ",
        "file.py:function",
        id="handler-with-a-space",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n    processor: csv\n"
        "    content_types: [csv]\n",
        "spec.yaml:7:21: routes[0].content_types[0]: ",
        "type/subtype",
        id="media-type-without-a-slash",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{name}\n    action: file\n    folder: files\n    media_type: text\n",
        "spec.yaml:6:17: routes[0].media_type: ",
        "type/subtype",
        id="media-type-without-a-subtype",
    ),
    pytest.param(
        respond("errors:\n  Value-Error: {status: 400, message: nope}\n"),
        "spec.yaml:7:3: errors.Value-Error: ",
        "exception class name",
        id="exception-name-with-a-dash",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{name}\n    action: file\n    volume: 'my volume'\n",
        "spec.yaml:5:13: routes[0].volume: ",
        "Modal Volume name",
        id="volume-name-with-a-space",
    ),
]


@pytest.mark.parametrize(("content", "prefix", "hint"), PLAIN_WORDS)
def test_malformed_values_get_a_plain_message(
    in_tmp: Path, content: str, prefix: str, hint: str
) -> None:
    write(in_tmp, content)
    [line] = lines_for("spec.yaml")
    assert line.startswith(prefix), line
    message = line.removeprefix(prefix)
    assert "pattern" not in message and "^" not in message, line
    assert hint in message, line
    if "volume" in prefix:
        assert "Secret" not in message, line
