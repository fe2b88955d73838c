"""`endpointgen deploy` and a model's weights: an unpinned Hub model is pinned to the
commit its `main` is at deploy time, and `--warm-cache` fills the Hub cache Volume
before the first cold start. A stand-in `modal` records each call; a local HTTP server
answers as the Hub does."""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SPECS, write_spec
from typer.testing import CliRunner

from endpointgen.cli import app

runner = CliRunner()
SHA = "0123456789abcdef0123456789abcdef01234567"
STAND_IN = """\
import json, os, sys

with open(os.environ["FAKE_MODAL_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


@pytest.fixture
def modal_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`ENDPOINTGEN_MODAL` runs a stand-in that records its argv, one JSON line each."""
    script = tmp_path / "stand_in_modal.py"
    script.write_text(STAND_IN)
    log = tmp_path / "modal-calls.jsonl"
    monkeypatch.setenv("ENDPOINTGEN_MODAL", f"{sys.executable} {script}")
    monkeypatch.setenv("FAKE_MODAL_LOG", str(log))
    return log


def recorded(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """A local Hub whose `main` of every model is SHA; the paths it was asked for."""
    asked: list[str] = []

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            if self.path.endswith("/revision/main") and "missing" not in self.path:
                body = json.dumps({"id": "x", "sha": SHA}).encode()
                self.send_response(200)
            else:
                body = b'{"error": "Repository Not Found"}'
                self.send_response(404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    yield asked
    server.shutdown()


def gpt2_from_the_hub(folder: Path, model_id: str = "openai-community/gpt2") -> Path:
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["model"]["id"] = model_id
    return write_spec(folder, spec)


def test_deploy_pins_an_unpinned_hub_model_to_mains_commit(
    tmp_path: Path, modal_calls: Path, hub: list[str]
) -> None:
    """docs/spec.md, Model (`revision`): every container of one deploy loads the same
    weights, whatever is pushed to the model's repo after."""
    spec = gpt2_from_the_hub(tmp_path)
    out = tmp_path / "build"
    result = runner.invoke(app, ["deploy", str(spec), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"openai-community/gpt2 pinned to {SHA}" in result.output
    assert hub == ["/api/models/openai-community/gpt2/revision/main"]
    module = (out / "gpt2.py").read_text()
    assert f'MODEL_REVISION = "{SHA}"' in module
    assert "# The Hub's `main` when this module was built" in module
    assert recorded(modal_calls) == [["deploy", str(out / "gpt2.py"), "--name", "gpt2"]]
    # `build` never asks: its output is the same on every run, and offline.
    hub.clear()
    built = runner.invoke(app, ["build", str(spec), "-o", str(tmp_path / "plain")])
    assert built.exit_code == 0, built.output
    assert "MODEL_REVISION = None" in (tmp_path / "plain" / "gpt2.py").read_text()
    assert hub == []


def test_a_hub_that_does_not_answer_leaves_the_revision_unpinned(
    tmp_path: Path, modal_calls: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    out = tmp_path / "build"
    result = runner.invoke(app, ["deploy", str(gpt2_from_the_hub(tmp_path)), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "openai-community/gpt2: the Hub could not be reached" in result.output
    assert "stays unpinned" in result.output
    assert "MODEL_REVISION = None" in (out / "gpt2.py").read_text()
    assert len(recorded(modal_calls)) == 1


def test_no_pin_and_a_pinned_spec_ask_the_hub_nothing(
    tmp_path: Path, modal_calls: Path, hub: list[str]
) -> None:
    spec = gpt2_from_the_hub(tmp_path)
    result = runner.invoke(app, ["deploy", str(spec), "-o", str(tmp_path / "a"), "--no-pin"])
    assert result.exit_code == 0, result.output
    pinned = yaml.safe_load(spec.read_text())
    pinned["model"]["revision"] = "v2"
    other = write_spec(tmp_path / "pinned", pinned)
    result = runner.invoke(app, ["deploy", str(other), "-o", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    assert hub == []
    assert 'MODEL_REVISION = "v2"' in (tmp_path / "b" / "gpt2.py").read_text()


def test_warm_cache_runs_each_apps_download_after_the_deploy(
    tmp_path: Path, modal_calls: Path, hub: list[str]
) -> None:
    """docs/spec.md, The generated module: `--warm-cache` runs `modal run
    MODULE::download` for each app with a Hub model, after its deploy; an app whose
    models ship in the image has no download to run."""
    model_app = gpt2_from_the_hub(tmp_path / "a")
    plain = write_spec(tmp_path / "b", (SPECS / "hello.yaml").read_text(), name="hello.yaml")
    out = tmp_path / "build"
    args = ["deploy", str(model_app), str(plain), "-o", str(out), "--modal-env", "dev"]
    result = runner.invoke(app, [*args, "--warm-cache"])
    assert result.exit_code == 0, result.output
    assert recorded(modal_calls) == [
        ["deploy", str(out / "gpt2.py"), "--name", "gpt2", "--env", "dev"],
        ["deploy", str(out / "hello.py"), "--name", "hello", "--env", "dev"],
        ["run", f"{out / 'gpt2.py'}::download", "--env", "dev"],
    ]
    assert "def download() -> None:" not in (out / "hello.py").read_text()


def test_a_failed_warm_cache_is_an_error_after_the_deploy(
    tmp_path: Path, modal_calls: Path, hub: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = tmp_path / "failing_modal.py"
    failing.write_text(
        STAND_IN + "if sys.argv[1] == 'run':\n    print('Error: out of quota')\n    sys.exit(1)\n"
    )
    monkeypatch.setenv("ENDPOINTGEN_MODAL", f"{sys.executable} {failing}")
    out = tmp_path / "build"
    result = runner.invoke(
        app, ["deploy", str(gpt2_from_the_hub(tmp_path)), "-o", str(out), "--warm-cache"]
    )
    assert result.exit_code == 1
    assert "deployed gpt2" in result.output
    assert "modal run failed: Error: out of quota" in result.output
    assert "their Hub cache could not be filled" in result.output
    assert os.path.isfile(out / "gpt2.py")
