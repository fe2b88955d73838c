"""Regression tests for the attacks a red-team pass got through (docs/security.md): each
performs the attack and asserts the safe answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import build_and_import, write_spec
from fastapi.testclient import TestClient
from servers import Server

from endpointgen.compiler import pipeline


def served(tmp_path: Path, spec: dict[str, Any]) -> TestClient:
    """The spec's app, built and imported as a module, in a test client."""
    return TestClient(build_and_import(write_spec(tmp_path, spec), tmp_path / "out").create_app())


def hook_spec(provider: str, method: str = "POST") -> dict[str, Any]:
    """One webhook route at /hook, its key in env var HOOK_SECRET."""
    route = {"path": "/hook", "method": method, "action": "webhook", "provider": provider}
    return {"name": "hooks", "routes": [{**route, "env": "HOOK_SECRET", "secret": "hook-secret"}]}


@pytest.fixture
def get_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    return served(tmp_path, hook_spec("github", "GET"))


def test_a_body_on_a_get_route_is_bounded_too(get_hook: TestClient) -> None:
    """docs/spec.md, Routes (`max_bytes`): every route with a body, a GET one too, refuses one over
    1 MiB (the default) with 413 before it is read whole.

    Hardening 1: a 2 MiB chunked body on `GET /hook` is refused with 413 once it passes
    the route's limit (1 MiB), not read whole and then refused with 401."""

    def chunks() -> object:
        for _ in range(32):
            yield b"x" * 65_536

    answer = get_hook.request("GET", "/hook", content=chunks())
    assert answer.status_code == 413
    assert answer.json()["error"] == "request body too large"
    small = get_hook.request("GET", "/hook", content=b"{}")
    assert small.status_code == 401  # under the limit: the signature is what fails


@pytest.mark.slow
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


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("..", ".. leads out of the spec's folder"),
        ("/etc", "/etc is an absolute path"),
        ("public/../..", "public/../.. leads out of the spec's folder"),
        (".git", ".git is a hidden folder"),
    ],
)
def test_a_file_route_serves_only_what_sits_beside_the_spec(
    tmp_path: Path, folder: str, message: str
) -> None:
    """Hardening 3 (and GitOps 3): `folder: ..` or an absolute folder would ship and serve
    the build machine's files (`GET /static/.git/config`); refused, with the position."""
    (tmp_path / "public").mkdir()
    (tmp_path / ".git").mkdir()
    spec = {
        "name": "files",
        "routes": [{"path": "/static/{name:path}", "action": "file", "folder": folder}],
    }
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert ":" in str(problem).split(" ")[0]  # file:line:col
    assert message in str(problem)


def test_a_handler_outside_the_spec_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "outside.py").write_text("def run(x):\n    return x\n")
    spec = {
        "name": "handlers",
        "routes": [
            {"path": "/h", "method": "POST", "action": "handler", "handler": "../outside.py:run"}
        ],
    }
    (problem,) = pipeline.validate(write_spec(tmp_path / "specs", spec))
    assert "../outside.py leads out of the spec's folder" in str(problem)


def test_hidden_files_in_a_served_folder_are_not_served(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.txt").write_text("hello")
    (tmp_path / "public" / ".env").write_text("AWS_SECRET=x")
    (tmp_path / "public" / ".hidden").mkdir()
    (tmp_path / "public" / ".hidden" / "key").write_text("x")
    spec = {
        "name": "files",
        "routes": [{"path": "/static/{name:path}", "action": "file", "folder": "public"}],
    }
    client = served(tmp_path, spec)
    assert client.get("/static/index.txt").text == "hello"
    for hidden in ("/static/.env", "/static/.hidden/key", "/static/%2Eenv"):
        assert client.get(hidden).status_code == 404


def test_an_ipv6_slash_64_is_one_client() -> None:
    """Hardening 8: every address of one /64 shares one `key: ip` budget."""
    from starlette.requests import Request

    from endpointgen.runtime import limits

    def who(host: str) -> str:
        return limits.client_address(Request({"type": "http", "client": (host, 1234)}))

    assert who("2001:db8:1:2::1") == who("2001:db8:1:2:ffff:ffff:ffff:ffff") == "2001:db8:1:2::/64"
    assert who("2001:db8:1:3::1") != who("2001:db8:1:2::1")
    assert who("::ffff:192.0.2.7") == "192.0.2.7" and who("192.0.2.7") == "192.0.2.7"


@pytest.mark.parametrize("provider", ["stripe", "slack"])
def test_an_oversized_webhook_timestamp_is_a_401(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str
) -> None:
    """Hardening 6: a 400-digit timestamp is refused (401), not a 500 with a traceback."""
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    spec = hook_spec(provider)
    client = served(tmp_path, spec)
    huge = "9" * 400
    headers = (
        {"Stripe-Signature": f"t={huge},v1=00"}
        if provider == "stripe"
        else {"X-Slack-Request-Timestamp": huge, "X-Slack-Signature": "v0=00"}
    )
    answer = client.post("/hook", content=b"{}", headers=headers)
    assert answer.status_code == 401
    assert "Traceback" not in answer.text


def test_two_credential_headers_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hardening 9: two `X-API-Key` headers get 401, whatever their order."""
    monkeypatch.setenv("API_KEYS", "good")
    spec = {
        "name": "keys",
        "auth": {"mode": "api_key"},
        "routes": [{"path": "/r", "action": "respond", "response": {"ok": True}}],
    }
    client = served(tmp_path, spec)
    assert client.get("/r", headers=[("X-API-Key", "good")]).status_code == 200
    for pair in (["good", "bad"], ["bad", "good"], ["good", "good"]):
        headers = [("X-API-Key", value) for value in pair]
        assert client.get("/r", headers=headers).status_code == 401, pair


def test_two_modal_proxy_keys_are_refused_under_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hardening 9: proxy mode, checked here as Modal checks it at its edge: two
    `Modal-Key` headers get 401 whatever their order, as two API keys do."""
    monkeypatch.setenv("MODAL_PROXY_TOKENS", "wk-1:ws-1")
    spec = {
        "name": "proxied",
        "auth": {"mode": "proxy"},
        "routes": [{"path": "/r", "action": "respond", "response": {"ok": True}}],
    }
    client = served(tmp_path, spec)
    secret = ("Modal-Secret", "ws-1")
    assert client.get("/r", headers=[("Modal-Key", "wk-1"), secret]).status_code == 200
    for pair in (["wk-1", "other"], ["other", "wk-1"], ["wk-1", "wk-1"]):
        headers = [*(("Modal-Key", key) for key in pair), secret]
        assert client.get("/r", headers=headers).status_code == 401, pair


def test_nan_and_infinity_are_refused_in_bodies_and_parameters(tmp_path: Path) -> None:
    """Hardening 7: NaN, Infinity and 1e400 pass as floats, then fail as a 500 when
    echoed; every declared body and parameter refuses them with 422."""
    spec = {
        "name": "floats",
        "routes": [
            {
                "path": "/echo",
                "method": "POST",
                "action": "respond",
                "request": {
                    "x": {"type": "float"},
                    "xs": {"type": "list[float]", "default": []},
                },
                "response": {"x": "{x}"},
            },
            {
                "path": "/scale",
                "action": "respond",
                "params": {"factor": {"type": "float", "in": "query"}},
                "response": {"factor": "{factor}"},
            },
        ],
    }
    client = served(tmp_path, spec)
    assert client.post("/echo", json={"x": 1.5}).json() == {"x": 1.5}
    for raw in (b'{"x": NaN}', b'{"x": Infinity}', b'{"x": 1e400}', b'{"x": 1, "xs": [-Infinity]}'):
        answer = client.post("/echo", content=raw, headers={"Content-Type": "application/json"})
        assert answer.status_code == 422, raw
    assert client.get("/scale", params={"factor": "2.5"}).json() == {"factor": 2.5}
    for text in ("nan", "inf", "-Infinity", "1e400"):
        assert client.get("/scale", params={"factor": text}).status_code == 422, text


def test_auth_comes_before_body_parsing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hardening 9: a malformed body without credentials gets 401, not 422 with positions."""
    monkeypatch.setenv("API_KEYS", "good")
    spec = {
        "name": "bodies",
        "auth": {"mode": "api_key"},
        "routes": [
            {
                "path": "/echo",
                "method": "POST",
                "action": "respond",
                "request": {"x": {"type": "int"}},
                "response": {"x": "{x}"},
            }
        ],
    }
    client = served(tmp_path, spec)
    raw = {"content": b'{"x": 1,,', "headers": {"Content-Type": "application/json"}}
    refused = client.post("/echo", **raw)  # type: ignore[arg-type]
    assert refused.status_code == 401 and "detail" not in refused.json()
    keyed = client.post(
        "/echo", content=raw["content"], headers={**raw["headers"], "X-API-Key": "good"}
    )  # type: ignore[dict-item]
    assert keyed.status_code == 422 and keyed.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("docs", "anonymous", "keyed"),
    [("auth", 401, 200), ("public", 200, 200), ("off", 404, 404)],
)
def test_docs_pages_follow_the_docs_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docs: str, anonymous: int, keyed: int
) -> None:
    """docs/spec.md, Top level (`docs`): `auth` (the default) puts `/docs`, `/redoc` and
    `/openapi.json` behind the app's auth, `public` serves them to anyone, `off` not at all.

    Hardening 9: `/docs`, `/redoc` and `/openapi.json` of an authenticated app are
    behind its auth by default (`docs: auth`); `public` serves them to anyone and `off`
    not at all. The route table is what a caller without a key must not read."""
    monkeypatch.setenv("API_KEYS", "good")
    spec = {
        "name": "documented",
        "auth": {"mode": "api_key"},
        "routes": [{"path": "/secret-route", "action": "respond", "response": {"ok": True}}],
    }
    if docs != "auth":
        spec["docs"] = docs
    client = served(tmp_path, spec)
    for page in ("/openapi.json", "/docs", "/redoc"):
        refused = client.get(page)
        assert refused.status_code == anonymous, page
        if anonymous != 200:
            assert "secret-route" not in refused.text
            assert refused.headers["content-type"] == "application/json"
        assert client.get(page, headers={"X-API-Key": "good"}).status_code == keyed, page
    if keyed == 200:
        doc = client.get("/openapi.json", headers={"X-API-Key": "good"}).json()
        assert list(doc["paths"]) == ["/secret-route"]


def test_docs_are_public_for_an_app_without_auth(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`docs`): on an app without auth the pages are public.

    `docs: auth` on an app with no auth leaves nothing to check: the pages are public,
    and the built module says so by not passing `docs`."""
    spec = {"name": "open", "routes": [{"path": "/r", "action": "respond", "response": {}}]}
    built = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    assert "docs=" not in Path(built.__file__).read_text()
    assert TestClient(built.create_app()).get("/openapi.json").status_code == 200


@pytest.mark.slow
def test_serve_cuts_slow_headers_slow_bodies_and_idle_connections(tmp_path: Path) -> None:
    """Hardening 9: under `endpointgen serve`, a connection that sends nothing, headers a
    byte at a time, or a body that never ends is cut off (408 while no answer has begun),
    so a few slow clients cannot hold the server's connections; requests in time work."""
    import socket
    import time

    spec = {
        "name": "slow",
        "routes": [
            {
                "path": "/echo",
                "method": "POST",
                "action": "respond",
                "request": {"x": {"type": "int"}},
                "response": {"x": "{x}"},
            }
        ],
    }
    server = Server(
        write_spec(tmp_path, spec), args=["--timeout-headers", "1", "--timeout-body", "2"]
    )

    def connect() -> socket.socket:
        return socket.create_connection(("127.0.0.1", server.port), timeout=10)

    def answer(sock: socket.socket) -> tuple[bytes, float]:
        started, data = time.monotonic(), b""
        while chunk := sock.recv(4096):
            data += chunk
        return data, time.monotonic() - started

    try:
        server.wait_ready()
        silent = connect()
        data, waited = answer(silent)
        assert data.startswith(b"HTTP/1.1 408 ") and b'"error"' in data
        assert 0.5 < waited < 3
        slowloris = connect()
        started = time.monotonic()
        for byte in b"POST /echo HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaa":
            try:
                slowloris.sendall(bytes([byte]))
            except OSError:
                break  # cut off
            time.sleep(0.1)
        data, _ = answer(slowloris)
        assert data.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 4
        slow_body = connect()
        slow_body.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        data, waited = answer(slow_body)
        assert waited < 4 and b" 500 " not in data
        kept = connect()
        kept.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 8\r\n\r\n{"x": 1}'
        )
        data, waited = answer(kept)  # answered, then closed once idle (keep-alive: 5 s)
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b'{"x":1}')
        assert 4 < waited < 8
        assert httpx.post(server.url + "/echo", json={"x": 2}).json() == {"x": 2}
    finally:
        server.stop()
    assert "Traceback" not in server.output
