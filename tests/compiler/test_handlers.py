"""Handler and loader files: what `validate`/`build` find without running them, what
`serve` and a deployed `create_app()` do with one that fails when imported, and a custom
`model.loader` feeding a handler route its model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import modal
import pytest
from conftest import build_and_import, write_spec
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError
from endpointgen.runtime.handlers import HandlerError

#  1 name / 2 routes / 3 path / 4 method / 5 action / 6 handler
HANDLER_SPEC = """\
name: handlers
routes:
  - path: /run
    method: POST
    action: handler
    handler: handler.py:run
"""

#  1 name / 2 model / 3 id / 4 task / 5 loader / 6 auth / 7 mode / 8 routes / 9 path
# 10 method / 11 action / 12 handler
LOADER_SPEC = """\
name: loaded
model:
  id: ./weights
  task: text-classification
  loader: loader.py:load
auth:
  mode: api_key
routes:
  - path: /run
    method: POST
    action: handler
    handler: handler.py:run
  - path: /health
    action: health
"""

GOOD_HANDLER = "def run(data):\n    return data\n"
GOOD_LOADER = "def load(where):\n    return where\n"


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights").mkdir()
    return tmp_path


def lines_for(path: str | Path) -> list[str]:
    return [str(problem) for problem in pipeline.validate(path)]


def refused_everywhere(folder: Path) -> list[str]:
    """validate's lines; `build` (API and command) refuses with the same lines."""
    lines = lines_for("spec.yaml")
    with pytest.raises(SpecError) as caught:
        pipeline.build("spec.yaml", folder / "out")
    assert [str(p) for p in caught.value.problems] == lines
    for command in (["validate", "spec.yaml"], ["build", "spec.yaml", "-o", "out"]):
        result = CliRunner().invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert result.output.splitlines() == lines
    assert not (folder / "out" / "handlers.py").exists()
    return lines


# --- found at build time, without running the file -----------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "def helper():\n    return 1\n\n\ndef run(data:\n    return data\n",
            "spec.yaml:6:14: routes[0].handler: handler.py is not valid Python (line 5): "
            "'(' was never closed",
        ),
        (
            "def run(data):\n    return data\n  oops = 1\n",
            "spec.yaml:6:14: routes[0].handler: handler.py is not valid Python (line 3): "
            "unindent does not match any outer indentation level",
        ),
        (
            "def walk(data):\n    return data\n\n\nrun = 3\n",
            "spec.yaml:6:14: routes[0].handler: handler.py defines no function `run`",
        ),
        (
            "class Holder:\n    def run(self, data):\n        return data\n",
            "spec.yaml:6:14: routes[0].handler: handler.py defines no function `run`",
        ),
        (
            b"def run(data):\n    return '\x00'\n",
            "spec.yaml:6:14: routes[0].handler: handler.py is not valid Python: "
            "source code string cannot contain null bytes",
        ),
    ],
    ids=["syntax-error", "bad-indent", "no-such-function", "method-not-function", "nul-byte"],
)
def test_broken_handler_file_is_reported_at_the_handler_line(
    in_tmp: Path, source: str | bytes, expected: str
) -> None:
    write_spec(in_tmp, HANDLER_SPEC)
    data = source.encode() if isinstance(source, str) else source
    (in_tmp / "handler.py").write_bytes(data)
    assert refused_everywhere(in_tmp) == [expected]


def test_missing_handler_file(in_tmp: Path) -> None:
    write_spec(in_tmp, HANDLER_SPEC)
    assert refused_everywhere(in_tmp) == [
        "spec.yaml:6:14: routes[0].handler: no file handler.py next to the spec"
    ]


@pytest.mark.parametrize(
    "source",
    [
        "import no_such_module_xyz\n\n\ndef run(data):\n    return data\n",
        "from no_such_module_xyz import helper\n\n\ndef run(data):\n    return data\n",
        "import json\nimport no_such_module_xyz.sub as sub\n\n\ndef run(data):\n    return 1\n",
    ],
    ids=["import", "from-import", "dotted-import"],
)
def test_handler_importing_a_missing_module_is_reported_at_the_handler_line(
    in_tmp: Path, source: str
) -> None:
    """The file parses, but `import` would fail: the build says so before any deploy."""
    write_spec(in_tmp, HANDLER_SPEC)
    (in_tmp / "handler.py").write_text(source)
    [line] = refused_everywhere(in_tmp)
    assert line.startswith("spec.yaml:6:14: routes[0].handler: handler.py"), line
    assert "no_such_module_xyz" in line


def test_handler_imports_that_exist_are_fine(in_tmp: Path) -> None:
    write_spec(in_tmp, HANDLER_SPEC)
    source = (
        "import json\nimport os.path\nfrom collections import abc\n"
        "from typing import Any\n\ntry:\n    import no_such_optional_xyz\n"
        "except ImportError:\n    no_such_optional_xyz = None\n\n\n"
        "async def run(data: dict[str, Any]) -> Any:\n    return data\n"
    )
    (in_tmp / "handler.py").write_text(source)
    assert lines_for("spec.yaml") == []


def test_build_checks_the_handler_without_running_it(in_tmp: Path) -> None:
    write_spec(in_tmp, HANDLER_SPEC)
    marker = in_tmp / "ran.txt"
    (in_tmp / "handler.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nraise SystemExit(3)\n\n\n"
        "def run(data):\n    return data\n"
    )
    assert lines_for("spec.yaml") == []
    pipeline.build("spec.yaml", in_tmp / "out")
    result = CliRunner().invoke(app, ["build", "spec.yaml", "-o", "out"])
    assert result.exit_code == 0, result.output
    assert not marker.exists()


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        (
            "def load(where:\n    return where\n",
            "spec.yaml:5:11: model.loader: loader.py is not valid Python (line 1): "
            "'(' was never closed",
        ),
        (
            "def loader(where):\n    return where\n",
            "spec.yaml:5:11: model.loader: loader.py defines no function `load`",
        ),
        (None, "spec.yaml:5:11: model.loader: no file loader.py next to the spec"),
    ],
    ids=["syntax-error", "no-such-function", "missing-file"],
)
def test_broken_loader_file_is_reported_at_the_loader_line(
    in_tmp: Path, source: str | None, expected: str
) -> None:
    write_spec(in_tmp, LOADER_SPEC)
    (in_tmp / "handler.py").write_text("def run(data, model):\n    return model\n")
    if source is not None:
        (in_tmp / "loader.py").write_text(source)
    assert lines_for("spec.yaml") == [expected]
    with pytest.raises(SpecError):
        pipeline.build("spec.yaml", in_tmp / "out")


# --- found when the app starts: a handler that raises as it is imported --------------

RAISES_AT_IMPORT = 'raise RuntimeError("no")\n\n\ndef run(data):\n    return data\n'


def serve_once(spec: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "endpointgen", "serve", str(spec), "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "API_KEYS": "k"},
    )


@pytest.mark.slow
def test_serve_exits_1_naming_a_handler_that_raises_at_import(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, HANDLER_SPEC)
    (tmp_path / "handler.py").write_text(RAISES_AT_IMPORT)
    out = serve_once(spec)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr and "Traceback" not in out.stdout
    [line] = out.stderr.strip().splitlines()
    assert "handler.py" in line and "RuntimeError: no" in line
    assert "serving" not in out.stdout + out.stderr


@pytest.mark.slow
def test_serve_exits_1_naming_a_handler_whose_import_fails(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, HANDLER_SPEC)
    (tmp_path / "handler.py").write_text(
        "import no_such_module_xyz\n\n\ndef run(data):\n    return data\n"
    )
    out = serve_once(spec)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    [line] = out.stderr.strip().splitlines()
    assert "handler.py" in line and "no_such_module_xyz" in line


def test_create_app_raises_handler_error_naming_the_file(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, HANDLER_SPEC)
    (tmp_path / "handler.py").write_text(RAISES_AT_IMPORT)
    module = build_and_import(spec, tmp_path / "out")
    with pytest.raises(HandlerError) as caught:
        module.create_app()
    assert str(caught.value) == "handler.py: RuntimeError: no"


def test_deployed_create_app_without_the_file_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container the handler is read from its place in the image; when it is not
    there, the error names the file as the spec wrote it."""
    spec = write_spec(tmp_path, HANDLER_SPEC.replace("handler.py", "lib/handler.py"))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "handler.py").write_text(GOOD_HANDLER)
    module = build_and_import(spec, tmp_path / "out")
    with TestClient(module.create_app()) as client:  # here, next to the spec: fine
        assert client.post("/run").json() == {}
    monkeypatch.setattr(modal, "is_local", lambda: False)
    with pytest.raises(HandlerError, match=r"^lib/handler\.py: "):
        module.create_app()


# --- model.loader: a custom model handed to handler routes ---------------------------

LOADER = """\
import threading

LOADS = []


class Counter:
    def __init__(self, where):
        self.where = where
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, text):
        with self.lock:
            self.calls += 1
        return text[::-1]


def load(where):
    LOADS.append(where)
    return Counter(where)
"""

HANDLER_WITH_MODEL = """\
async def run(data, model):
    return {"reversed": model(data["text"]), "where": model.where, "calls": model.calls}
"""


# The loader spec, with a declared body on its handler route.
LOADER_SPEC_WITH_BODY = LOADER_SPEC.replace(
    "    handler: handler.py:run\n",
    "    handler: handler.py:run\n    request:\n      text: str\n",
)


@pytest.fixture
def loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("API_KEYS", "k")
    (tmp_path / "weights").mkdir()
    (tmp_path / "handler.py").write_text(HANDLER_WITH_MODEL)
    return tmp_path


def imported_from(file: Path) -> ModuleType:
    """The one module a handler or loader file was imported as (`endpointgen_handler_...`)."""
    [module] = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("endpointgen_handler_")
        and getattr(module, "__file__", None) == str(file.resolve())
    ]
    return module


def test_loader_feeds_a_handler_route_its_model(loaded: Path) -> None:
    """docs/spec.md, Model (`loader`): `file.py:function` gets where the model is (here `./weights`,
    relative to the spec file), is imported and called once, and handler routes receive what it
    returns as `model`."""
    folder = loaded
    (folder / "loader.py").write_text(LOADER)
    spec = write_spec(folder, LOADER_SPEC_WITH_BODY)
    module = build_and_import(spec, folder / "out")
    model = module.model.load()
    assert model.status == "ready", model.error
    loader_module = imported_from(folder / "loader.py")
    with TestClient(module.create_app(model)) as client:
        headers = {"X-API-Key": "k"}
        first = client.post("/run", json={"text": "abc"}, headers=headers)
        second = client.post("/run", json={"text": "xyz"}, headers=headers)
        assert first.status_code == 200, first.text
        assert first.json()["reversed"] == "cba" and second.json()["reversed"] == "zyx"
        assert first.json()["where"] == str((folder / "weights").resolve())
        assert second.json()["calls"] == first.json()["calls"] + 1
        assert client.get("/health").json()["status"] == "ok"
        assert client.post("/run", json={"text": "a"}).status_code == 401
    assert imported_from(folder / "loader.py") is loader_module  # not imported again
    assert loader_module.LOADS == [str((folder / "weights").resolve())]  # loaded once


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("def load(where):\n    raise OSError('weights are gone')\n", "weights are gone"),
        ("raise RuntimeError('no')\n\n\ndef load(where):\n    return 1\n", "loader.py"),
    ],
    ids=["load-raises", "import-raises"],
)
def test_failing_loader_makes_health_503(loaded: Path, source: str, error: str) -> None:
    folder = loaded
    (folder / "loader.py").write_text(source)
    module = build_and_import(write_spec(folder, LOADER_SPEC_WITH_BODY), folder / "out")
    model = module.model.load()
    assert model.status == "failed" and error in model.error
    with TestClient(module.create_app(model)) as client:
        health = client.get("/health")
        assert health.status_code == 503 and error in health.json()["error"]
        r = client.post("/run", json={"text": "a"}, headers={"X-API-Key": "k"})
        assert r.status_code == 503 and "Traceback" not in r.text


@pytest.mark.slow
def test_sse_from_a_plain_generator_sends_each_event_as_it_is_yielded(tmp_path: Path) -> None:
    """docs/spec.md, Routes without a model (`response_type: sse`): a sync generator's
    events reach the client one by one, not all together at the end."""
    import time

    import httpx
    from servers import Server

    (tmp_path / "h.py").write_text(
        "import time\n"
        "def ticks(body):\n"
        "    for i in range(3):\n"
        "        time.sleep(0.4)\n"
        "        yield {'i': i}\n"
    )
    spec = {
        "name": "ticks",
        "routes": [
            {
                "path": "/ticks",
                "method": "GET",
                "action": "handler",
                "handler": "h.py:ticks",
                "response_type": "sse",
            }
        ],
    }
    server = Server(write_spec(tmp_path, spec))
    try:
        server.wait_ready()
        started, arrivals = time.monotonic(), []
        with httpx.stream("GET", server.url + "/ticks", timeout=10) as answer:
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    arrivals.append(time.monotonic() - started)
    finally:
        server.stop()
    assert len(arrivals) == 3
    assert arrivals[0] < arrivals[2] - 0.6, arrivals  # spread out, about 0.4 s apart


# --- an upload route with `processor: handler` ----------------------------------------

UPLOAD_SPEC = """\
name: uploads
routes:
  - path: /take
    method: POST
    action: upload
    processor: handler
    handler: handler.py:take
    content_types: [application/pdf]
"""

TAKE = """\
def take(data):
    return {"keys": sorted(data), "name": data["filename"], "type": data["content_type"],
            "size": len(data["content"]), "bytes": isinstance(data["content"], bytes)}
"""


def test_an_upload_handler_gets_the_file_name_type_and_bytes(tmp_path: Path) -> None:
    """docs/spec.md, Routes without a model: with `processor: handler` your function gets
    `filename`, `content_type` and `content` (bytes) of the uploaded file. (A spec whose
    only handler was an upload's once built a module that did not import `handlers`.)"""
    (tmp_path / "handler.py").write_text(TAKE)
    module = build_and_import(write_spec(tmp_path, UPLOAD_SPEC), tmp_path / "out")
    client = TestClient(module.create_app())
    pdf = b"%PDF-1.4 a small document"
    r = client.post("/take", files={"file": ("doc.pdf", pdf, "application/pdf")})
    assert r.status_code == 200, r.text
    assert r.json() == {
        "keys": ["content", "content_type", "filename"],
        "name": "doc.pdf",
        "type": "application/pdf",
        "size": len(pdf),
        "bytes": True,
    }
    refused = client.post("/take", files={"file": ("a.txt", b"hi", "text/plain")})
    assert refused.status_code == 415


DRAW = """\
from PIL import Image
from starlette.responses import Response


def image(data):
    return Image.new("RGBA", (data["w"], 3), (255, 0, 0, 128))


def raw(data):
    return b"\\x00\\xffbytes"


def made(data):
    return Response(b"<svg/>", media_type="image/svg+xml", headers={"X-Made": "1"})


def wrong(data):
    return {"not": "bytes"}
"""


def binary_spec(**routes: dict[str, object]) -> dict[str, object]:
    return {
        "name": "drawing",
        "routes": [
            {"path": f"/{name}", "method": "POST", "action": "handler", **route}
            for name, route in routes.items()
        ],
    }


def test_handlers_answer_bytes_images_and_responses(tmp_path: Path) -> None:
    """docs/spec.md, Routes without a model (`handler`): a handler may return bytes, a PIL
    image or a Starlette Response. `response_type: binary` sends them as `media_type`;
    bytes from a JSON route go out as application/octet-stream instead of a 500."""
    import io

    from PIL import Image

    (tmp_path / "draw.py").write_text(DRAW)
    body = {"request": {"w": {"type": "int", "default": 4}}}
    spec = binary_spec(
        png={"handler": "draw.py:image", "response_type": "binary", "media_type": "image/png"},
        jpeg={"handler": "draw.py:image", "response_type": "binary", "media_type": "image/jpeg"},
        raw={"handler": "draw.py:raw", "response_type": "binary"},
        json_bytes={"handler": "draw.py:raw"},
        made={"handler": "draw.py:made", "response_type": "binary", "media_type": "image/png"},
        wrong={"handler": "draw.py:wrong", "response_type": "binary"},
    )
    for route in spec["routes"]:  # type: ignore[union-attr]
        route.update(body)  # type: ignore[union-attr]
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    client = TestClient(module.create_app(), raise_server_exceptions=False)
    png = client.post("/png", json={"w": 5})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(png.content)).size == (5, 3)
    jpeg = client.post("/jpeg", json={})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    for path in ("/raw", "/json_bytes"):
        raw = client.post(path, json={})
        assert raw.status_code == 200, path
        assert raw.content == b"\x00\xffbytes"
        assert raw.headers["content-type"] == "application/octet-stream"
    made = client.post("/made", json={})
    assert (made.content, made.headers["x-made"]) == (b"<svg/>", "1")
    wrong = client.post("/wrong", json={})
    assert wrong.status_code == 500 and wrong.json()["error"] == "internal server error"
    doc = client.get("/openapi.json").json()
    answers = doc["paths"]["/png"]["post"]["responses"]["200"]["content"]
    assert answers == {"image/png": {"schema": {"type": "string", "format": "binary"}}}


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            {"handler": "draw.py:raw", "media_type": "image/png"},
            "routes[0].media_type: `media_type` applies with `response_type: binary`",
        ),
        (
            {"action": "respond", "response": "x", "response_type": "binary"},
            "routes[0].response_type: a respond route answers JSON or text",
        ),
    ],
)
def test_binary_keys_where_they_do_nothing_are_refused(
    tmp_path: Path, route: dict[str, object], message: str
) -> None:
    (tmp_path / "draw.py").write_text(DRAW)
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path, binary_spec(one=route)), tmp_path / "out")
    assert message in str(caught.value)
