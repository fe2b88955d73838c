"""`endpointgen test`: route examples run in-process and against a live server."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SPECS, write_spec
from servers import Server

from endpointgen.errors import UsageError
from endpointgen.local import contract

HOOK = {
    "name": "contract",
    "auth": {"mode": "api_key"},
    "routes": [
        {
            "path": "/health",
            "action": "health",
            "examples": [
                {"name": "up", "values": {"status": "ok"}},
                {"name": "wrong on purpose", "values": {"status": "down"}, "keys": ["uptime"]},
            ],
        },
        {
            "path": "/hook",
            "method": "POST",
            "action": "webhook",
            "provider": "github",
            "secret": "hook",
            "env": "HOOK_SECRET",
            "examples": [
                {"name": "unsigned", "request": {"json": {"a": 1}}, "status": 401},
                {"name": "expects 200", "request": {"json": {"a": 1}}},
            ],
        },
    ],
}


@pytest.mark.slow
def test_examples_pass_for_specs_in_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "key-one")
    with_examples = [p for p in sorted(SPECS.glob("*.yaml")) if "examples:" in p.read_text()]
    assert with_examples, "at least one spec in specs/ carries examples"
    for spec in with_examples:
        outcomes = contract.run(spec, say=lambda line: None)
        assert outcomes and not [o.report() for o in outcomes if o.problems], spec


def test_a_wrong_example_prints_request_response_and_difference(tmp_path: Path) -> None:
    lines: list[str] = []
    outcomes = contract.run(
        write_spec(tmp_path, HOOK), environ={"API_KEYS": "k", "HOOK_SECRET": "s"}, say=lines.append
    )
    assert [bool(o.problems) for o in outcomes] == [False, True, False, True]
    report = "\n".join(lines)
    assert "PASS GET /health: up" in report
    assert "FAIL GET /health: wrong on purpose" in report
    assert "status: expected 'down', got 'ok'" in report
    assert "missing key 'uptime'" in report
    assert "FAIL POST /hook: expects 200" in report
    assert 'request: {"method": "POST", "url": "/hook", "json": {"a": 1}}' in report
    assert "response: 401" in report and "status: expected 200, got 401" in report
    assert '"error": "invalid signature"' in report


def test_missing_credentials_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="set API_KEYS to a valid key"):
        contract.run(write_spec(tmp_path, HOOK), environ={}, say=lambda line: None)


@pytest.mark.slow
def test_examples_against_a_live_url(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, HOOK)
    server = Server(spec, env={"API_KEYS": "key-one", "HOOK_SECRET": "s"})
    try:
        server.wait_ready()
        outcomes = contract.run(
            spec, url=server.url, environ={"API_KEYS": "key-one"}, say=lambda line: None
        )
    finally:
        server.stop()
    assert [bool(o.problems) for o in outcomes] == [False, True, False, True]


@pytest.mark.slow
def test_the_test_command_as_a_real_process(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    spec = write_spec(tmp_path, HOOK)
    env = {**os.environ, "API_KEYS": "k", "HOOK_SECRET": "s"}
    out = subprocess.run(
        [sys.executable, "-m", "endpointgen", "test", str(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 1
    assert "FAIL GET /health: wrong on purpose" in out.stdout
    assert "2 passed, 2 failed" in out.stderr
    assert "Traceback" not in out.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "endpointgen", "test", str(SPECS / "hello.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "4 passed, 0 failed" in ok.stdout
