"""Regression tests for the attacks a red-team pass got through (docs/security.md): each
performs the attack and asserts the safe answer."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from conftest import build_and_import, write_spec
from fastapi.testclient import TestClient
from test_serve import Server


@pytest.fixture
def get_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    spec = {
        "name": "hooks",
        "routes": [
            {
                "path": "/hook",
                "method": "GET",
                "action": "webhook",
                "provider": "github",
                "env": "HOOK_SECRET",
                "secret": "hook-secret",
            }
        ],
    }
    return TestClient(build_and_import(write_spec(tmp_path, spec), tmp_path / "out").create_app())


def test_a_body_on_a_get_route_is_bounded_too(get_hook: TestClient) -> None:
    """Hardening 1: a 2 MiB chunked body on `GET /hook` is refused with 413 once it passes
    the route's limit (1 MiB), not read whole and then refused with 401."""

    def chunks() -> object:
        for _ in range(32):
            yield b"x" * 65_536

    answer = get_hook.request("GET", "/hook", content=chunks())
    assert answer.status_code == 413
    assert answer.json()["error"] == "request body too large"
    small = get_hook.request("GET", "/hook", content=b"{}")
    assert small.status_code == 401  # under the limit: the signature is what fails


def test_serve_ignores_x_forwarded_for(tmp_path: Path) -> None:
    """Hardening 2: under `endpointgen serve`, a client on this machine cannot pose as
    many addresses with `X-Forwarded-For` to dodge a `key: ip` limit."""
    spec = {
        "name": "guessing",
        "rate_limit": {"limit": "3/minute", "key": "ip"},
        "routes": [{"path": "/echo", "action": "respond", "response": {"ok": True}}],
    }
    server = Server(write_spec(tmp_path, spec))
    try:
        server.wait_ready()
        statuses = [
            httpx.get(server.url + "/echo", headers={"X-Forwarded-For": f"10.0.0.{i}"}).status_code
            for i in range(6)
        ]
    finally:
        server.stop()
    assert statuses == [200, 200, 200, 429, 429, 429]
