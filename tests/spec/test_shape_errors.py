"""Misused route keys (params, request, response, handler, upload, file, errors, loader)
and the exact line each must give: `spec.yaml:LINE:COL: key.path: message`.

Every case is validated as `spec.yaml` from inside its folder, which also holds a good
handler (`h.py:ok`), a broken one (`bad.py`) and a folder `files/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError

# 1 name / 2 model / 3 id / 4 task / 5 auth / 6 mode / 7 routes / 8 path / 9 method
# 10 action
BASE = """\
name: demo
model:
  id: gpt2
  task: text-generation
auth:
  mode: bearer
routes:
  - path: /generate
    method: POST
    action: generate
"""
# 1 name / 2 routes / 3 the first route
PLAIN = "name: demo\nroutes:\n"
# 1 name / 2 model / 3 id / 4 task / 5 auth / 6 mode / 7 routes / 8 the first route
IMAGES = (
    "name: demo\nmodel:\n  id: org/vit\n  task: image-classification\n"
    "auth:\n  mode: bearer\nroutes:\n"
)
FILE_ROUTE = "a file route's path ends with the file's name, e.g. /files/{name:path}"
ONE_SOURCE = "a file route needs exactly one of `folder` and `volume`"


def with_loader(ref: str) -> str:
    """BASE with `model.loader` at line 5 (the routes move down one line)."""
    return BASE.replace("  task: text-generation\n", f"  task: text-generation\n  loader: {ref}\n")


def respond(*lines: str) -> str:
    """A GET respond route at line 3, its keys from line 6 on."""
    return PLAIN + "  - path: /a\n    action: respond\n    response: x\n" + "".join(lines)


CASES = [
    # --- a key on an action that does not read it ------------------------------------
    pytest.param(
        BASE + "    response: hi\n",
        ["spec.yaml:11:15: routes[0].response: `response` applies to respond routes, not generate"],
        id="response-on-generate",
    ),
    pytest.param(
        BASE + "    status: 201\n    params:\n      q: str\n",
        [
            "spec.yaml:11:13: routes[0].status: `status` applies to respond routes, not generate",
            "spec.yaml:13:7: routes[0].params: `params` applies to file, handler, respond, "
            "upload routes, not generate",
        ],
        id="status-and-params-on-generate",
    ),
    pytest.param(
        respond("    download_name: a.txt\n    max_rows: 5\n"),
        [
            "spec.yaml:6:20: routes[0].download_name: `download_name` applies to file routes, "
            "not respond",
            "spec.yaml:7:15: routes[0].max_rows: `max_rows` applies to upload routes, not respond",
        ],
        id="file-and-upload-keys-on-respond",
    ),
    pytest.param(
        respond("    handler: h.py:ok\n"),
        [
            "spec.yaml:6:14: routes[0].handler: `handler` applies to handler, upload routes, "
            "not respond"
        ],
        id="handler-on-respond",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{name}\n    action: file\n    folder: files\n"
        "    response_type: text\n",
        [
            "spec.yaml:6:20: routes[0].response_type: `response_type` applies to "
            "handler, respond routes, not file"
        ],
        id="response-type-on-file",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n    processor: csv\n"
        "    request:\n      a: str\n",
        [
            "spec.yaml:8:7: routes[0].request: `request` applies to handler, respond routes, "
            "not upload"
        ],
        id="request-on-upload",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    action: handler\n    handler: h.py:ok\n    status: 201\n",
        ["spec.yaml:6:13: routes[0].status: `status` applies to respond routes, not handler"],
        id="status-on-handler",
    ),
    # --- request bodies and respond --------------------------------------------------
    pytest.param(
        respond("    request:\n      a: str\n"),
        ["spec.yaml:7:7: routes[0].request: a GET request has no body; use params"],
        id="request-on-a-get",
    ),
    pytest.param(
        respond("    request: {a: str}\n"),
        ["spec.yaml:6:14: routes[0].request: a GET request has no body; use params"],
        id="request-on-a-get-flow-style",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    action: respond\n",
        ["spec.yaml:3:5: routes[0]: a respond route needs `response`"],
        id="respond-without-response",
    ),
    pytest.param(
        respond("    status: 404\n"),
        ["spec.yaml:6:13: routes[0].status: must be at most 299, not 404"],
        id="respond-with-an-error-status",
    ),
    pytest.param(
        respond("    response_type: html\n"),
        [
            "spec.yaml:6:20: routes[0].response_type: 'html' is not one of json, text, "
            "stream, sse, binary"
        ],
        id="unknown-response-type",
    ),
    # --- handlers --------------------------------------------------------------------
    pytest.param(
        PLAIN + "  - path: /a\n    action: handler\n",
        ["spec.yaml:3:5: routes[0]: a handler route needs `handler: file.py:function`"],
        id="handler-without-handler",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    action: handler\n    handler: nope.py:ok\n",
        ["spec.yaml:5:14: routes[0].handler: no file nope.py next to the spec"],
        id="handler-file-missing",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    action: handler\n    handler: bad.py:ok\n",
        [
            "spec.yaml:5:14: routes[0].handler: bad.py is not valid Python (line 3): "
            "'(' was never closed"
        ],
        id="handler-syntax-error",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    action: handler\n    handler: h.py:missing\n",
        ["spec.yaml:5:14: routes[0].handler: h.py defines no function `missing`"],
        id="handler-without-the-function",
    ),
    # --- uploads ---------------------------------------------------------------------
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n",
        [
            "spec.yaml:3:5: routes[0]: an upload route needs `processor`: csv, "
            "image-classification, image-embeddings, object-detection, speech-recognition or "
            "handler"
        ],
        id="upload-without-processor",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n    processor: handler\n",
        ["spec.yaml:3:5: routes[0]: `processor: handler` needs `handler: file.py:function`"],
        id="processor-handler-without-handler",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n    processor: csv\n"
        "    handler: h.py:ok\n",
        ["spec.yaml:7:14: routes[0].handler: `handler` applies with `processor: handler`"],
        id="handler-with-the-csv-processor",
    ),
    pytest.param(
        IMAGES + "  - path: /a\n    method: POST\n    action: upload\n"
        "    processor: image-classification\n    max_rows: 3\n",
        ["spec.yaml:12:15: routes[0].max_rows: `max_rows` applies with `processor: csv`"],
        id="max-rows-with-the-image-processor",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n    processor: csv\n"
        "    max_pixels: 100\n",
        [
            "spec.yaml:7:17: routes[0].max_pixels: `max_pixels` applies with "
            "`processor: image-classification`, image-embeddings or object-detection"
        ],
        id="max-pixels-with-the-csv-processor",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n"
        "    processor: image-classification\n",
        [
            "spec.yaml:6:16: routes[0].processor: image-classification needs an "
            "image-classification model"
        ],
        id="image-upload-without-a-model",
    ),
    pytest.param(
        BASE + "  - path: /a\n    method: POST\n    action: upload\n"
        "    processor: image-classification\n",
        [
            "spec.yaml:14:16: routes[1].processor: image-classification needs an "
            "image-classification model"
        ],
        id="image-upload-with-a-text-model",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    action: upload\n    processor: csv\n",
        ["spec.yaml:3:5: routes[0].method: an upload route takes POST or PUT"],
        id="upload-on-a-get",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n    processor: csv\n"
        "    max_rows: 0\n",
        ["spec.yaml:7:15: routes[0].max_rows: must be at least 1, not 0"],
        id="max-rows-zero",
    ),
    # --- files -----------------------------------------------------------------------
    pytest.param(
        PLAIN + "  - path: /f/{name:path}\n    action: file\n",
        [f"spec.yaml:3:5: routes[0]: {ONE_SOURCE}"],
        id="file-without-folder-or-volume",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{name:path}\n    action: file\n    folder: files\n"
        "    volume: reports\n",
        [f"spec.yaml:3:5: routes[0]: {ONE_SOURCE}"],
        id="file-with-folder-and-volume",
    ),
    pytest.param(
        PLAIN + "  - path: /f\n    action: file\n    folder: files\n",
        [f"spec.yaml:3:11: routes[0].path: {FILE_ROUTE}"],
        id="file-path-without-a-param",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{name}/raw\n    action: file\n    folder: files\n",
        [f"spec.yaml:3:11: routes[0].path: {FILE_ROUTE}"],
        id="file-param-not-at-the-end",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{kind}/{name}\n    action: file\n    folder: files\n",
        [f"spec.yaml:3:11: routes[0].path: {FILE_ROUTE}"],
        id="file-path-with-two-params",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{name:path}\n    action: file\n    folder: nowhere\n",
        ["spec.yaml:5:13: routes[0].folder: no folder nowhere next to the spec"],
        id="file-folder-missing",
    ),
    pytest.param(
        PLAIN + "  - path: /f/{name:path}\n    action: file\n    folder: h.py\n",
        ["spec.yaml:5:13: routes[0].folder: no folder h.py next to the spec"],
        id="file-folder-is-a-file",
    ),
    # --- params ----------------------------------------------------------------------
    pytest.param(
        PLAIN + "  - path: /a/{id}\n    action: respond\n    response: x\n"
        "    params:\n      id: {in: query}\n",
        ["spec.yaml:7:11: routes[0].params.id: `id` is in the path, so it is a path parameter"],
        id="path-param-declared-in-query",
    ),
    pytest.param(
        PLAIN + "  - path: /a/{id}\n    action: respond\n    response: x\n"
        "    params:\n      id: {type: int, default: 3}\n",
        ["spec.yaml:7:11: routes[0].params.id: a path parameter cannot have a default"],
        id="path-param-with-a-default",
    ),
    pytest.param(
        respond("    params:\n      x: {in: path}\n"),
        ["spec.yaml:7:10: routes[0].params.x: path parameter `x` is not in the path /a"],
        id="path-param-not-in-the-path",
    ),
    pytest.param(
        respond("    params:\n      q: {type: str, min: 1}\n"),
        ["spec.yaml:7:10: routes[0].params.q: min/max apply to int and float fields, not str"],
        id="min-on-a-str",
    ),
    pytest.param(
        respond("    params:\n      q: {type: int, min_length: 1}\n"),
        ["spec.yaml:7:10: routes[0].params.q: min_length/max_length apply to str fields, not int"],
        id="min-length-on-an-int",
    ),
    pytest.param(
        respond("    params:\n      q: {type: str, max_items: 3}\n"),
        ["spec.yaml:7:10: routes[0].params.q: min_items/max_items apply to list fields, not str"],
        id="max-items-on-a-str",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: respond\n    response: x\n"
        "    request:\n      q: {type: 'list[str]', enum: [a]}\n",
        [
            "spec.yaml:8:10: routes[0].request.q: enum applies to str, int and float "
            "fields, not list[str]"
        ],
        id="enum-on-a-list",
    ),
    pytest.param(
        respond("    params:\n      q: {type: bool, enum: [a]}\n"),
        ["spec.yaml:7:10: routes[0].params.q: enum applies to str, int and float fields, not bool"],
        id="enum-on-a-bool",
    ),
    pytest.param(
        respond("    params:\n      q: {type: float, max: .inf}\n"),
        ["spec.yaml:7:10: routes[0].params.q: min/max must be finite numbers"],
        id="infinite-max",
    ),
    pytest.param(
        respond("    params:\n      q: 'list[str]'\n"),
        ["spec.yaml:7:10: routes[0].params.q: 'list[str]' is not one of str, int, float, bool"],
        id="list-as-a-query-param",
    ),
    pytest.param(
        respond("    params:\n      request_body: str\n"),
        [
            "spec.yaml:7:21: routes[0].params.request_body: `request_body` is reserved; "
            "name the parameter otherwise"
        ],
        id="param-named-request-body",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: upload\n    processor: csv\n"
        "    params:\n      file: str\n",
        ["spec.yaml:8:13: routes[0].params.file: `file` is reserved; name the parameter otherwise"],
        id="param-named-file",
    ),
    pytest.param(
        PLAIN + "  - path: /a\n    method: POST\n    action: respond\n    response: x\n"
        "    params:\n      q: str\n    request:\n      q: str\n",
        ["spec.yaml:10:10: routes[0].request.q: `q` is also a parameter"],
        id="param-and-body-field-of-one-name",
    ),
    # --- errors: and model.loader ----------------------------------------------------
    pytest.param(
        respond("errors:\n  ValueError: {status: 200, message: fine}\n"),
        ["spec.yaml:7:24: errors.ValueError.status: must be at least 400, not 200"],
        id="error-mapped-to-a-success",
    ),
    pytest.param(
        respond("errors:\n  ValueError: {status: 400}\n"),
        ["spec.yaml:7:15: errors.ValueError.message: required key is missing"],
        id="error-without-a-message",
    ),
    pytest.param(
        with_loader("h.py:ok")
        .replace("task: text-generation", "task: text-classification")
        .replace("action: generate", "action: classify"),
        [
            "spec.yaml:11:13: routes[0].action: a model from a custom loader serves "
            "handler routes (and, for text-generation, `generate` and `openai`), not "
            "`classify`: call your model from a `handler` route, or drop `loader` to use the "
            "built-in text-classification engine"
        ],
        id="loader-with-a-classify-route",
    ),
    pytest.param(
        with_loader("bad.py:ok"),
        ["spec.yaml:5:11: model.loader: bad.py is not valid Python (line 3): '(' was never closed"],
        id="broken-loader-with-a-generate-route",
    ),
]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "h.py").write_text("def ok(data):\n    return data\n")
    (tmp_path / "bad.py").write_text("import json\n\ndef ok(data:\n    return data\n")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "a.txt").write_text("a")
    return tmp_path


def write(folder: Path, content: str) -> Path:
    path = folder / "spec.yaml"
    path.write_text(content, encoding="utf-8")
    return path


def lines_for(path: str | Path) -> list[str]:
    return [str(problem) for problem in pipeline.validate(path)]


@pytest.mark.parametrize(("content", "expected"), CASES)
def test_misused_key_gives_exact_lines(in_tmp: Path, content: str, expected: list[str]) -> None:
    write(in_tmp, content)
    assert lines_for("spec.yaml") == expected


@pytest.mark.parametrize(("content", "expected"), CASES)
def test_build_and_the_command_refuse_with_the_same_lines(
    in_tmp: Path, content: str, expected: list[str]
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
