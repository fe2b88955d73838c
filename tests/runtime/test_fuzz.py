"""Hypothesis fuzz of headers and bodies against built apps with a real tiny GPT-2.

Requests go through httpx's ASGI transport, which hands the app the raw header bytes as
a server would (latin-1 and all). Whatever arrives: never a 5xx, and every 4xx is JSON
with `error` and the request's `request_id`.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import build_and_import, gpt2_spec, write_spec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endpointgen.local.serve import load_app

pytestmark = pytest.mark.slow

ORIGIN = "https://example.com"
KEY = "key-one"
JWT_SECRET = "fuzz-jwt-secret-that-is-long-enough-for-hs256"
HOOK_SECRET = "fuzz-webhook-signing-secret"
FUZZ = settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


class Runner:
    """One event loop for a module's requests, so sync hypothesis tests can await."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def request(self, app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=app, client=("198.51.100.1", 1234))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                return await http.request(method, path, **kwargs)

        return self.loop.run_until_complete(go())

    def close(self) -> None:
        self.loop.close()


@pytest.fixture(scope="module")
def runner() -> Iterator[Runner]:
    r = Runner()
    yield r
    r.close()


def model_app(folder: Path, tiny_gpt2: Path, auth: dict[str, Any]) -> Any:
    spec = gpt2_spec(tiny_gpt2, auth=auth, rate_limit={"limit": "1000000/hour", "key": "api_key"})
    for route in spec["routes"]:
        if route["action"] == "generate":
            route["max_tokens"] = 2
    module = build_and_import(write_spec(folder, spec), folder / "build")
    return load_app(module, say=lambda _: None)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Iterator[dict[str, Any]]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HF_HUB_OFFLINE", "1")
        env.setenv("API_KEYS", KEY)
        env.setenv("JWT_SECRET", JWT_SECRET)
        env.setenv("HOOK_SECRET", HOOK_SECRET)
        root = tmp_path_factory.mktemp("fuzz")
        out = {
            mode: model_app(root / mode, tiny_gpt2, {"mode": mode})
            for mode in ("bearer", "api_key", "jwt")
        }
        hooks = {
            "name": "hooks",
            "cors": {"origins": [ORIGIN]},
            "rate_limit": {"limit": "1000000/hour", "key": "ip"},
            "routes": [
                {
                    "path": f"/{provider}",
                    "method": "POST",
                    "action": "webhook",
                    "provider": provider,
                    "secret": "hook-secret",
                    "env": "HOOK_SECRET",
                    "max_bytes": 4096,
                }
                for provider in ("github", "slack", "stripe")
            ]
            + [{"path": "/health", "action": "health"}],
        }
        module = build_and_import(write_spec(root / "hooks", hooks), root / "hooks" / "build")
        out["hooks"] = module.create_app()
        yield out


def check(r: httpx.Response, sent_id: bytes | None = None) -> None:
    assert r.status_code < 500, (r.status_code, r.text)
    raw_id = dict(r.headers.raw)[b"x-request-id"].decode("latin-1")
    assert len(raw_id) == 32  # always the server's own
    if sent_id is not None and 0 < len(sent_id) <= 128 and sent_id.decode("latin-1").isprintable():
        assert dict(r.headers.raw)[b"x-client-request-id"] == sent_id
    if r.status_code >= 400:
        assert r.headers["content-type"].startswith("application/json"), r.text
        body = r.json()
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str), body
        assert body.get("request_id") == raw_id, body


# --- strategies -------------------------------------------------------------------------


def header_bytes(max_size: int = 80) -> st.SearchStrategy[bytes]:
    """What an HTTP/1.1 server would pass on: no CR, LF or NUL; no surrounding spaces."""
    return st.binary(max_size=max_size).map(
        lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\x00", b"").strip(b" \t")
    )


def with_prefix(prefix: str) -> st.SearchStrategy[bytes]:
    return st.builds(lambda tail: prefix.encode() + tail, header_bytes(60))


TEXT_BYTES = st.text(max_size=40).map(lambda s: s.encode("utf-8", "replace"))
AUTHORIZATION = st.one_of(
    header_bytes(),
    with_prefix("Bearer "),
    with_prefix("Bearer key-"),
    with_prefix("bearer "),
    with_prefix("Basic "),
    st.builds(lambda s: b"Bearer " + s, TEXT_BYTES),
    st.sampled_from(
        [b"Bearer key-one", b"Bearer", b"Bearer  key-one", b"Bearer e30.e30.", b"Bearer a.b.c"]
    ),
)
CONTENT_TYPE = st.one_of(
    header_bytes(60),
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=utf-8",
            b"application/json; charset=latin-1",
            b"application/json; charset=\xff",
            b"application/x-www-form-urlencoded",
            b"multipart/form-data; boundary=x",
            b"text/plain",
            b"application/merge-patch+json",
            b"",
        ]
    ),
)
ORIGIN_VALUE = st.one_of(
    header_bytes(60), st.sampled_from([ORIGIN.encode(), b"null", b"https://evil.example"])
)

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
ANY_JSON = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
GENERATE_BODY = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=40)},
    optional={
        "max_tokens": st.one_of(st.integers(min_value=1, max_value=2), st.integers(), ANY_JSON),
        "temperature": st.one_of(st.floats(min_value=0, max_value=2), ANY_JSON),
        "top_p": st.one_of(st.floats(min_value=0, max_value=1), ANY_JSON),
        "seed": st.one_of(st.integers(min_value=0, max_value=2**32 - 1), st.integers()),
        "stop": st.one_of(st.text(max_size=5), st.lists(st.text(max_size=5), max_size=3), ANY_JSON),
        "extra": ANY_JSON,
    },
)
BODY = st.one_of(
    st.binary(max_size=200),
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    GENERATE_BODY.map(lambda v: json.dumps(v).encode()),
    GENERATE_BODY.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
)


def maybe(strategy: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes | None]:
    return st.one_of(st.none(), strategy)


def headers_of(**values: bytes | None) -> list[tuple[bytes, bytes]]:
    return [(name.replace("_", "-").encode(), v) for name, v in values.items() if v is not None]


def jwt_token(payload: dict[str, Any]) -> str:
    import jwt

    return jwt.encode(payload, JWT_SECRET, algorithm="HS256")


VALID_AUTH = {
    "bearer": lambda: [(b"authorization", f"Bearer {KEY}".encode())],
    "api_key": lambda: [(b"x-api-key", KEY.encode())],
    "jwt": lambda: [
        (b"authorization", f"Bearer {jwt_token({'exp': int(time.time()) + 60})}".encode())
    ],
}


# --- model apps -------------------------------------------------------------------------


@FUZZ
@given(
    path=st.sampled_from(["/generate", "/generate/stream"]),
    authorization=maybe(AUTHORIZATION),
    api_key=maybe(st.one_of(header_bytes(), st.just(KEY.encode()))),
    content_type=maybe(CONTENT_TYPE),
    request_id=maybe(header_bytes(160)),
    origin=maybe(ORIGIN_VALUE),
    body=BODY,
    mode=st.sampled_from(["bearer", "api_key", "jwt"]),
    valid_auth=st.booleans(),
)
def test_fuzz_generate_headers_and_bodies(
    apps: dict[str, Any],
    runner: Runner,
    path: str,
    authorization: bytes | None,
    api_key: bytes | None,
    content_type: bytes | None,
    request_id: bytes | None,
    origin: bytes | None,
    body: bytes,
    mode: str,
    valid_auth: bool,
) -> None:
    headers = headers_of(
        authorization=authorization,
        x_api_key=api_key,
        content_type=content_type,
        x_request_id=request_id,
        origin=origin,
    )
    if valid_auth:  # often let the body through to the model
        headers += VALID_AUTH[mode]()
    r = runner.request(apps[mode], "POST", path, content=body, headers=headers)
    check(r, request_id)


@FUZZ
@given(
    claims=st.dictionaries(
        st.sampled_from(["exp", "nbf", "iat", "sub", "aud", "iss", "jti"]), ANY_JSON, max_size=6
    ),
    header=st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "crit", "jku", "x5u"]), ANY_JSON, max_size=3
    ),
)
def test_fuzz_jwt_claims_and_headers(
    apps: dict[str, Any], runner: Runner, claims: dict[str, Any], header: dict[str, Any]
) -> None:
    """Validly signed tokens with arbitrary claims and header fields: a 200 or a 401."""
    try:
        token = jwt_token_with(claims, header)
    except (TypeError, ValueError, OverflowError):
        return  # PyJWT cannot encode it; nothing to send
    r = runner.request(
        apps["jwt"],
        "POST",
        "/generate",
        json={"prompt": "Hi", "max_tokens": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    check(r)
    assert r.status_code in (200, 401), r.text


def jwt_token_with(claims: dict[str, Any], header: dict[str, Any]) -> str:
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = {"alg": "HS256", "typ": "JWT", **{k: v for k, v in header.items() if k != "alg"}}
    signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(JWT_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_valid_jwt_passes_the_fuzz_app(apps: dict[str, Any], runner: Runner) -> None:
    token = jwt_token({"sub": "u", "exp": int(time.time()) + 60})
    r = runner.request(
        apps["jwt"],
        "POST",
        "/generate",
        json={"prompt": "Hi", "max_tokens": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert r.status_code == 200, r.text


# --- webhooks ---------------------------------------------------------------------------


def sign(provider: str, body: bytes, stamp: bytes) -> list[tuple[bytes, bytes]]:
    key = HOOK_SECRET.encode()
    if provider == "github":
        return [
            (
                b"x-hub-signature-256",
                b"sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest().encode(),
            )
        ]
    if provider == "slack":
        digest = hmac.new(key, b"v0:" + stamp + b":" + body, hashlib.sha256).hexdigest()
        return [
            (b"x-slack-request-timestamp", stamp),
            (b"x-slack-signature", b"v0=" + digest.encode()),
        ]
    digest = hmac.new(key, stamp + b"." + body, hashlib.sha256).hexdigest()
    return [(b"stripe-signature", b"t=" + stamp + b",v1=" + digest.encode())]


# Timestamp-like values: ASCII digits mixed with latin-1's superscript digits and signs.
DIGITISH = st.lists(
    st.sampled_from(list(b"0123456789\xb2\xb3\xb9+-. ")), min_size=1, max_size=12
).map(bytes)
SIGNATURE_HEADERS = [
    b"x-hub-signature-256",
    b"x-slack-request-timestamp",
    b"x-slack-signature",
    b"stripe-signature",
]


@FUZZ
@given(
    provider=st.sampled_from(["github", "slack", "stripe"]),
    body=st.one_of(st.binary(max_size=300), ANY_JSON.map(lambda v: json.dumps(v).encode())),
    content_type=maybe(CONTENT_TYPE),
    signed=st.booleans(),
    garbage=st.lists(st.tuples(st.sampled_from(SIGNATURE_HEADERS), header_bytes()), max_size=3),
    stamp_style=st.one_of(st.just("now"), header_bytes(16)),
    origin=maybe(ORIGIN_VALUE),
)
def test_fuzz_webhook_headers_and_bodies(
    apps: dict[str, Any],
    runner: Runner,
    provider: str,
    body: bytes,
    content_type: bytes | None,
    signed: bool,
    garbage: list[tuple[bytes, bytes]],
    stamp_style: str | bytes,
    origin: bytes | None,
) -> None:
    stamp = str(int(time.time())).encode() if stamp_style == "now" else stamp_style
    assert isinstance(stamp, bytes)
    headers = list(garbage)
    if signed:
        headers = sign(provider, body, stamp) + headers
    headers += headers_of(content_type=content_type, origin=origin)
    r = runner.request(apps["hooks"], "POST", f"/{provider}", content=body, headers=headers)
    check(r)
    if signed and not garbage and stamp_style == "now":
        assert r.status_code == 200, r.text
        assert r.json().get("status") == "received" or "challenge" in r.json()


@FUZZ
@given(provider=st.sampled_from(["slack", "stripe"]), stamp=st.one_of(DIGITISH, header_bytes(16)))
def test_fuzz_webhook_timestamps(
    apps: dict[str, Any], runner: Runner, provider: str, stamp: bytes
) -> None:
    """Correctly signed over whatever timestamp is sent: stale or unreadable ones are 401."""
    r = runner.request(
        apps["hooks"], "POST", f"/{provider}", content=b"{}", headers=sign(provider, b"{}", stamp)
    )
    check(r)
    fresh = stamp.isdigit() and abs(time.time() - int(stamp)) <= 300
    assert r.status_code == (200 if fresh else 401), r.text


# --- regressions the fuzz found, pinned ---------------------------------------------------


@pytest.mark.parametrize("provider", ["slack", "stripe"])
@pytest.mark.parametrize("stamp", [b"\xb2", b"\xb9\xb2\xb3", "١٢٣".encode(), b"\xbd"])
def test_non_ascii_digit_timestamps_are_refused_not_500(
    apps: dict[str, Any], runner: Runner, provider: str, stamp: bytes
) -> None:
    """`str.isdigit` is true for '²' (a latin-1 header byte), which `int` cannot read."""
    headers = sign(provider, b"{}", stamp)
    r = runner.request(apps["hooks"], "POST", f"/{provider}", content=b"{}", headers=headers)
    check(r)
    assert r.status_code == 401


def test_deeply_nested_signed_payload_is_not_a_500(apps: dict[str, Any], runner: Runner) -> None:
    body = b"[" * 4000
    headers = [*sign("github", body, b""), (b"content-type", b"application/json")]
    r = runner.request(apps["hooks"], "POST", "/github", content=body, headers=headers)
    check(r)


def test_deeply_nested_generate_body_is_a_json_4xx(apps: dict[str, Any], runner: Runner) -> None:
    body = b"[" * 4000
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = runner.request(apps["bearer"], "POST", "/generate", content=body, headers=headers)
    check(r)
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nowhere"), ("GET", "/generate"), ("DELETE", "/health")]
)
def test_unknown_route_and_wrong_method_are_json_errors(
    apps: dict[str, Any], runner: Runner, method: str, path: str
) -> None:
    r = runner.request(apps["bearer"], method, path, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code in (404, 405)
    check(r)


@pytest.mark.parametrize("temperature", [5e-324, 1e-320, 1e-45])
def test_tiny_temperature_is_not_a_500(
    apps: dict[str, Any], runner: Runner, temperature: float
) -> None:
    body = {"prompt": "Hello", "max_tokens": 1, "temperature": temperature}
    r = runner.request(
        apps["bearer"], "POST", "/generate", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    check(r)


def test_prompt_longer_than_the_model_context_is_not_a_500(
    apps: dict[str, Any], runner: Runner
) -> None:
    """The tiny GPT-2 has 256 positions; this prompt is well within max_chars."""
    body = {"prompt": "x y z " * 200, "max_tokens": 1}
    r = runner.request(
        apps["bearer"], "POST", "/generate", json=body, headers={"Authorization": f"Bearer {KEY}"}
    )
    check(r)
