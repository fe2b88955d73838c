"""`endpointgen serve` as users run it: a real uvicorn process, real sockets."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import gpt2_spec, write_spec
from servers import Server

pytestmark = pytest.mark.slow
AUTH = {"Authorization": "Bearer key-one"}


@pytest.fixture(scope="module")
def gpt2_server(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Iterator[Server]:
    spec = gpt2_spec(tiny_gpt2, rate_limit={"limit": "10000/minute", "key": "api_key"})
    server = Server(write_spec(tmp_path_factory.mktemp("serve"), spec))
    server.wait_ready()
    yield server
    server.stop()


def test_serve_prints_progress_and_url_then_answers(gpt2_server: Server) -> None:
    assert gpt2_server.wait_for("serving gpt2 on " + gpt2_server.url)
    assert "loading model" in gpt2_server.output
    r = httpx.post(
        gpt2_server.url + "/generate", json={"prompt": "Hello", "max_tokens": 4}, headers=AUTH
    )
    assert r.status_code == 200
    assert r.json()["tokens_generated"] <= 4


def test_concurrent_requests_all_succeed(gpt2_server: Server) -> None:
    def one(i: int) -> int:
        body = {"prompt": f"Hello {i}", "max_tokens": 8, "seed": i}
        return httpx.post(
            gpt2_server.url + "/generate", json=body, headers=AUTH, timeout=60
        ).status_code

    with ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, range(32))) == [200] * 32


def test_stream_over_a_real_socket(gpt2_server: Server) -> None:
    body = {"prompt": "Hello", "max_tokens": 12, "seed": 2}
    events = []
    with httpx.stream(
        "POST", gpt2_server.url + "/generate/stream", json=body, headers=AUTH, timeout=30
    ) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append(line.removeprefix("event: "))
    assert events[-1] == "done" and events.count("token") >= 1


def test_client_disconnect_stops_generation(gpt2_server: Server) -> None:
    """docs/spec.md, Routes (`generate`): a streaming client that disconnects stops the
    generation."""
    body = {"prompt": "Hello", "max_tokens": 240, "temperature": 1.0, "seed": 5}
    with httpx.stream(
        "POST", gpt2_server.url + "/generate/stream", json=body, headers=AUTH, timeout=30
    ) as r:
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # one event, then hang up
    assert gpt2_server.wait_for("client went away; generation stopped after"), gpt2_server.output
    stopped = [ln for ln in gpt2_server.lines if "generation stopped after" in ln][-1]
    assert int(stopped.split("after ")[1].split()[0]) < 240


def test_one_log_line_per_request(gpt2_server: Server) -> None:
    r = httpx.get(gpt2_server.url + "/health", headers={"X-Request-ID": "trace-me-42"})
    assert gpt2_server.wait_for('"client_request_id": "trace-me-42"')
    line = next(ln for ln in gpt2_server.lines if "trace-me-42" in ln)
    record = json.loads(line)  # docs/spec.md, Every response: the whole line is JSON
    assert record["request_id"] == r.headers["X-Request-ID"]
    assert record["method"] == "GET" and record["path"] == "/health" and record["status"] == 200
    assert record["latency_ms"] >= 0
    assert record["level"] == "info" and record["app"] == "gpt2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}", record["time"])


def test_ctrl_c_shuts_down_cleanly(tmp_path: Path, tiny_gpt2: Path) -> None:
    server = Server(write_spec(tmp_path, gpt2_spec(tiny_gpt2)))
    server.wait_ready()
    assert server.stop() == 0
    assert "Traceback" not in server.output


def test_gpu_spec_serves_on_cpu(tmp_path: Path, tiny_gpt2: Path) -> None:
    spec = gpt2_spec(tiny_gpt2, gpu=["H100:2", "A100-80GB:2"])
    server = Server(write_spec(tmp_path, spec))
    try:
        server.wait_ready()
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
    finally:
        server.stop()


def test_serving_a_broken_model_reports_503(tmp_path: Path) -> None:
    broken = tmp_path / "empty-model"
    broken.mkdir()
    server = Server(write_spec(tmp_path, gpt2_spec(broken)))
    try:
        server.wait_ready()
        health = httpx.get(server.url + "/health")
        assert health.status_code == 503
        assert server.output.count("model failed to load") >= 1
        r = httpx.post(server.url + "/generate", json={"prompt": "x"}, headers=AUTH)
        assert r.status_code == 503 and "Traceback" not in r.text
    finally:
        server.stop()


def test_serve_refuses_a_bad_spec_without_traceback(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, "name: Bad\nroutes: []\n")
    out = subprocess.run(
        [sys.executable, "-m", "endpointgen", "serve", str(spec)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1
    assert f"{spec}:1:7: name:" in out.stderr
    assert "Traceback" not in out.stderr
