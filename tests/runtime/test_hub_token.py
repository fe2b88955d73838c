"""A private or gated Hub model (docs/spec.md, "Model"): the token in `HF_TOKEN` reaches the
Hub, and without it the load fails with a 503 that says why. The Hub is a local HTTP server
(`HF_ENDPOINT`) that serves a tiny classifier's files only to `Authorization: Bearer
<token>`, as the Hub does for a gated repo; `endpointgen serve` runs the spec as a user
would, with the token in its environment (in a Modal container it comes from the Secret
the spec lists)."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import write_spec
from servers import Server, free_port

from endpointgen.compiler import pipeline

pytestmark = pytest.mark.slow

REPO = "acme/private-classifier"
TOKEN = "hf_test_token_4c1d"


class GatedHub(http.server.ThreadingHTTPServer):
    """The Hub's download routes for one gated repo: `HEAD`/`GET <repo>/resolve/<rev>/<file>`
    with the headers `huggingface_hub` reads; 401 without the token, as the Hub answers."""

    def __init__(self, files: Path) -> None:
        self.files = files
        self.asked: list[tuple[str, str | None]] = []  # (path, Authorization) per request
        self.refusal = "GatedRepo"  # the X-Error-Code of a 401: GatedRepo or RepoNotFound
        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: GatedHub

    def log_message(self, format: str, *args: object) -> None:
        pass

    def answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        path = self.path.split("?")[0]
        given = self.headers.get("Authorization")
        if REPO not in path:
            return self.answer(404, {})
        self.server.asked.append((path, given))
        if given != f"Bearer {TOKEN}":
            message = f"Access to model {REPO} is restricted. You must have access to it."
            if self.server.refusal == "RepoNotFound":
                message = "Repository not found"
            refused = {"X-Error-Code": self.server.refusal, "X-Error-Message": message}
            return self.answer(401, refused)
        prefix = f"/{REPO}/resolve/"
        name = path[len(prefix) :].partition("/")[2] if path.startswith(prefix) else ""
        file = self.server.files / name
        if not name or not file.is_file():
            return self.answer(404, {"X-Error-Code": "EntryNotFound"})
        data = file.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        self.answer(200, {"X-Repo-Commit": "a" * 40, "ETag": f'"{digest}"'}, data)

    do_GET = do_HEAD


@pytest.fixture
def hub(tiny_bert: Path) -> Iterator[GatedHub]:
    server = GatedHub(tiny_bert)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def serve(tmp_path: Path, hub: GatedHub, task: str = "text-classification", **env: str) -> Server:
    action = "generate" if task == "text-to-image" else "classify"
    spec = {
        "name": "private",
        "model": {"id": REPO, "task": task},
        "auth": {"mode": "api_key"},
        "secrets": ["hf-token"],  # the Modal Secret that holds HF_TOKEN when deployed
        "routes": [
            {"path": f"/{action}", "method": "POST", "action": action},
            {"path": "/health", "action": "health"},
        ],
    }
    path = write_spec(tmp_path, spec)
    assert TOKEN not in pipeline.build(path, tmp_path / "build").source
    hub_env = {"HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf")}
    server = Server(path, env={**hub_env, **env})
    server.wait_ready()
    return server


def health_when_settled(server: Server) -> httpx.Response:
    for _ in range(300):
        answer = httpx.get(server.url + "/health", timeout=5)
        if answer.status_code == 200 or answer.json()["status"] == "failed":
            return answer
        time.sleep(0.1)
    raise AssertionError(f"the model neither loaded nor failed:\n{server.output}")


def test_the_token_in_hf_token_reaches_the_hub_and_the_model_serves(
    tmp_path: Path, hub: GatedHub
) -> None:
    """docs/spec.md, Model (a private or gated Hub model): with `HF_TOKEN` set, every
    request for the repo carries it, and the model loads and answers."""
    server = serve(tmp_path, hub, HF_TOKEN=TOKEN)
    try:
        assert health_when_settled(server).status_code == 200, server.output
        answer = httpx.post(
            server.url + "/classify",
            json={"text": "hello"},
            headers={"X-API-Key": "key-one"},
            timeout=30,
        )
        assert answer.status_code == 200 and "label" in answer.json()
    finally:
        server.stop()
    downloads = [path for path, _ in hub.asked if "/resolve/" in path]
    assert any(path.endswith("/model.safetensors") for path in downloads)
    assert {given for _, given in hub.asked} == {f"Bearer {TOKEN}"}


@pytest.mark.parametrize(
    ("refusal", "said"),
    [("GatedRepo", "the model is gated"), ("RepoNotFound", "no such model, or it is private")],
)
def test_without_the_token_the_load_fails_with_a_503_that_says_why(
    tmp_path: Path, hub: GatedHub, refusal: str, said: str
) -> None:
    """docs/spec.md, Routes (`health`): a gated or private model without `HF_TOKEN` fails
    its load; health answers 503 `failed` with one line that says which and to set
    `HF_TOKEN`, never a traceback, and model routes answer 503."""
    hub.refusal = refusal
    server = serve(tmp_path, hub, HF_TOKEN="")
    try:
        health = health_when_settled(server)
        classify = httpx.post(
            server.url + "/classify", json={"text": "hello"}, headers={"X-API-Key": "key-one"}
        )
    finally:
        server.stop()
    assert health.status_code == 503, server.output
    body = health.json()
    assert body["status"] == "failed" and "Traceback" not in body["error"]
    assert "\n" not in body["error"]
    assert f"({said}: set HF_TOKEN to a token with access" in body["error"], body
    assert classify.status_code == 503
    assert hub.asked and all(given is None for _, given in hub.asked)


def test_a_pipeline_already_in_the_cache_loads_without_asking_the_hub(
    tmp_path: Path, hub: GatedHub, tiny_diffusion: Path
) -> None:
    """docs/spec.md, Model: a Hub model already in the cache (the app's Volume, after a
    first start) loads without asking the Hub anything: a gated text-to-image pipeline,
    whose snapshot has `model_index.json` at its top rather than `config.json`, loads
    and draws with no token, and the Hub is asked nothing."""
    commit = "a" * 40
    repo = tmp_path / "hf" / "hub" / f"models--{REPO.replace('/', '--')}"
    shutil.copytree(tiny_diffusion, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    server = serve(tmp_path, hub, task="text-to-image", HF_TOKEN="")
    try:
        assert health_when_settled(server).status_code == 200, server.output
        body = {"prompt": "a cat", "width": 64, "height": 64, "steps": 1, "seed": 1}
        image = httpx.post(
            server.url + "/generate", json=body, headers={"X-API-Key": "key-one"}, timeout=60
        )
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    finally:
        server.stop()
    assert hub.asked == []
