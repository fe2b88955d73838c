"""Auth modes against real components: built apps, PyJWT tokens, real Modal decorators.

api_key and bearer compare in constant time against every valid value; jwt pins one
algorithm and checks exp/nbf/aud/iss; proxy checks Modal's proxy-auth headers locally
and asks Modal for `requires_proxy_auth=True` when deployed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import jwt
import pytest
from conftest import build_and_import, gpt2_spec, write_spec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError
from endpointgen.local.serve import load_app
from endpointgen.runtime import auth as runtime_auth

pytestmark = pytest.mark.slow

KEYS = ["key-one", "key-two"]
BODY = {"prompt": "Hello", "max_tokens": 1}
AUDIENCE = "endpointgen-tests"
ISSUER = "https://issuer.example"
HS_SECRET = "an-hs256-signing-secret-that-is-long-enough-for-pyjwt"
HOOK_SECRET = "a webhook signing secret"

Build = Callable[..., tuple[ModuleType, TestClient]]


def model_spec(tiny_gpt2: Path, auth: dict[str, Any], **extra: Any) -> dict[str, Any]:
    spec = gpt2_spec(tiny_gpt2, auth=auth, **extra)
    spec.pop("rate_limit", None)
    return spec


@pytest.fixture
def build(tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> Build:
    """Build a spec (a dict) with `env` set, import it, and wrap its app in a TestClient."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    count = [0]

    def make(
        spec: dict[str, Any], env: dict[str, str] | None = None
    ) -> tuple[ModuleType, TestClient]:
        for name in ("API_KEYS", "JWT_SECRET", "JWT_PUBLIC_KEY", "MODAL_PROXY_TOKENS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in (env or {}).items():
            monkeypatch.setenv(name, value)
        count[0] += 1
        folder = tmp_path / f"spec{count[0]}"
        module = build_and_import(write_spec(folder, spec), folder / "build")
        # Models loaded as `endpointgen serve` and `@modal.enter` load them.
        return module, TestClient(load_app(module, say=lambda _: None))

    return make


def assert_refused(r: Any, secrets: list[str], www: str | None = None) -> None:
    """401 with a JSON body naming no key, and the same shape for every failure."""
    assert r.status_code == 401, r.text
    body = r.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == r.headers["X-Request-ID"]
    shown = r.text + json.dumps(dict(r.headers))
    for secret in secrets:
        assert secret not in shown
    if www is not None:
        assert r.headers["WWW-Authenticate"].startswith(www)


# --- api_key and bearer ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "send"),
    [
        ({"mode": "api_key"}, lambda k: {"X-API-Key": k}),
        ({"mode": "api_key", "header": "X-Custom-Key"}, lambda k: {"X-Custom-Key": k}),
        ({"mode": "bearer"}, lambda k: {"Authorization": f"Bearer {k}"}),
    ],
    ids=["api_key", "api_key-custom-header", "bearer"],
)
def test_static_keys_accept_each_valid_key_and_refuse_everything_else(
    build: Build, tiny_gpt2: Path, auth: dict[str, Any], send: Callable[[str], dict[str, str]]
) -> None:
    """docs/spec.md, Auth (`api_key`, `bearer`): the key goes in `X-API-Key` (or the spec's
    `header`) or as `Authorization: Bearer <token>`; every comma-separated value of `API_KEYS` is
    accepted, and anything else gets 401."""
    _, client = build(model_spec(tiny_gpt2, auth), {"API_KEYS": " key-one , key-two "})
    www = "Bearer" if auth["mode"] == "bearer" else None
    for key in KEYS:  # several valid at once: rotation without downtime
        r = client.post("/generate", json=BODY, headers=send(key))
        assert r.status_code == 200, r.text
        assert r.json()["tokens_generated"] == 1
    wrong = [
        "key-three",
        "key-one,key-two",
        "key-one, key-two",
        "key-on",
        "key-one0",
        "KEY-ONE",
        "x",
    ]
    refusals = [client.post("/generate", json=BODY, headers=send(k)) for k in wrong]
    refusals.append(client.post("/generate", json=BODY))  # nothing sent
    for r in refusals:
        assert_refused(r, KEYS, www)
    # One message for every failure: nothing tells a near miss from a wild guess.
    assert len({r.json()["error"] for r in refusals}) == 1


def test_bearer_401_says_bearer_and_ignores_other_schemes(build: Build, tiny_gpt2: Path) -> None:
    _, client = build(model_spec(tiny_gpt2, {"mode": "bearer"}), {"API_KEYS": "key-one"})
    for value in ["Basic a2V5LW9uZTo=", "key-one", "Bearer", "Bearer ", "Token key-one"]:
        r = client.post("/generate", json=BODY, headers={"Authorization": value})
        assert_refused(r, ["key-one"], "Bearer")
        assert r.headers["WWW-Authenticate"] == "Bearer"
    # The scheme name is case-insensitive (RFC 7235).
    r = client.post("/generate", json=BODY, headers={"Authorization": "bearer key-one"})
    assert r.status_code == 200


def test_api_key_in_the_wrong_header_is_refused(build: Build, tiny_gpt2: Path) -> None:
    _, client = build(model_spec(tiny_gpt2, {"mode": "api_key"}), {"API_KEYS": "key-one"})
    r = client.post("/generate", json=BODY, headers={"Authorization": "Bearer key-one"})
    assert_refused(r, ["key-one"])
    assert client.post("/generate", json=BODY, headers={"x-api-key": "key-one"}).status_code == 200


def test_rotation_retires_the_old_key_when_it_leaves_the_secret(
    build: Build, tiny_gpt2: Path
) -> None:
    spec = model_spec(tiny_gpt2, {"mode": "bearer"})
    _, during = build(spec, {"API_KEYS": "old-key,new-key"})
    for key in ("old-key", "new-key"):
        assert (
            during.post(
                "/generate", json=BODY, headers={"Authorization": f"Bearer {key}"}
            ).status_code
            == 200
        )
    _, after = build(spec, {"API_KEYS": "new-key"})
    assert (
        after.post("/generate", json=BODY, headers={"Authorization": "Bearer new-key"}).status_code
        == 200
    )
    r = after.post("/generate", json=BODY, headers={"Authorization": "Bearer old-key"})
    assert_refused(r, ["old-key", "new-key"], "Bearer")


def test_no_configured_keys_refuses_everything(build: Build, tiny_gpt2: Path) -> None:
    """Fail closed: an empty or missing secret never opens the app."""
    for env in ({}, {"API_KEYS": ""}, {"API_KEYS": " , ,"}):
        _, client = build(model_spec(tiny_gpt2, {"mode": "bearer"}), env)
        for value in ["Bearer ", "Bearer ,", "Bearer x", None]:
            headers = {"Authorization": value} if value is not None else {}
            assert client.post("/generate", json=BODY, headers=headers).status_code == 401


def test_keys_are_held_and_compared_only_as_digests(
    build: Build, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app keeps SHA-256 digests, never the keys, and checks a presented value by one
    lookup of its digest: no comparison of raw values whose timing could say how close a
    guess came, and the same cost for 3 keys or 10,000."""
    keys = [f"key-{i:05d}" for i in range(10_000)]
    loaded: list[tuple[str, dict[bytes, str]]] = []  # what the app's guard holds, as it loads it
    real_load = runtime_auth.load_credentials

    def recording(env: str) -> dict[bytes, str]:
        held = real_load(env)
        loaded.append((env, held))
        return held

    monkeypatch.setattr(runtime_auth, "load_credentials", recording)
    _, client = build(model_spec(tiny_gpt2, {"mode": "bearer"}), {"API_KEYS": ",".join(keys)})
    assert [env for env, _ in loaded] == ["API_KEYS"]
    held = loaded[0][1]
    assert set(held) == {hashlib.sha256(k.encode()).digest() for k in keys}
    assert set(held.values()) == {hashlib.sha256(k.encode()).hexdigest() for k in keys}
    assert not any(k.encode() in held for k in keys[:10])
    compared: list[Any] = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or real(a, b))
    for token, status in ((keys[0], 200), (keys[-1], 200), ("key-1", 401), (keys[0] + "x", 401)):
        r = client.post("/generate", json=BODY, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == status
    assert compared == []


def test_health_is_public_and_openapi_holds_no_keys(build: Build, tiny_gpt2: Path) -> None:
    _, client = build(model_spec(tiny_gpt2, {"mode": "api_key"}), {"API_KEYS": ",".join(KEYS)})
    assert client.get("/health").status_code == 200
    # The OpenAPI document describes the scheme but holds no key either.
    openapi = client.get("/openapi.json").text
    assert all(key not in openapi for key in KEYS)


# --- per-route `auth: none` and `public: true` -----------------------------------------


def test_route_auth_none_with_public_true_is_open_and_the_rest_stay_closed(
    build: Build, tiny_gpt2: Path
) -> None:
    spec = model_spec(tiny_gpt2, {"mode": "bearer"})
    spec["routes"].append(
        {"path": "/open", "method": "POST", "action": "generate", "auth": "none", "public": True}
    )
    _, client = build(spec, {"API_KEYS": "key-one"})
    assert client.post("/open", json=BODY).status_code == 200
    assert_refused(client.post("/generate", json=BODY), ["key-one"], "Bearer")


def test_public_true_on_a_guarded_route_is_refused(tmp_path: Path, tiny_gpt2: Path) -> None:
    """docs/spec.md, Auth: `public: true` acknowledges an open model route; it does not open
    one. On a route the app's auth still guards it would change nothing, so it is refused."""
    spec = model_spec(tiny_gpt2, {"mode": "bearer"})
    spec["routes"].append(
        {"path": "/acknowledged", "method": "POST", "action": "generate", "public": True}
    )
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path, spec), tmp_path / "build")
    assert "routes[3].public: POST /acknowledged is behind the app's auth (bearer)" in str(
        caught.value
    )


def test_open_app_serves_public_model_routes(build: Build, tiny_gpt2: Path) -> None:
    """docs/spec.md, Auth (`none`): the client sends nothing: a request without any credential is
    served."""
    spec = model_spec(tiny_gpt2, {"mode": "none"})
    spec["routes"] = [
        {"path": "/generate", "method": "POST", "action": "generate", "public": True},
        {"path": "/health", "action": "health"},
    ]
    _, client = build(spec)
    assert client.post("/generate", json=BODY).status_code == 200


@pytest.mark.parametrize(
    ("auth", "route"),
    [
        (
            {"mode": "bearer"},
            {"path": "/open", "method": "POST", "action": "generate", "auth": "none"},
        ),
        ({"mode": "none"}, {"path": "/open", "method": "POST", "action": "generate"}),
    ],
    ids=["route-opts-out", "app-without-auth"],
)
def test_a_model_route_without_auth_must_say_public(
    tmp_path: Path, tiny_gpt2: Path, auth: dict[str, Any], route: dict[str, Any]
) -> None:
    spec = model_spec(tiny_gpt2, auth)
    spec["routes"] = [route, {"path": "/health", "action": "health"}]
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path, spec), tmp_path / "build")
    assert "POST /open" in str(caught.value)
    assert "public: true" in str(caught.value)


# --- jwt --------------------------------------------------------------------------------


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {
        "sub": "user-1",
        "aud": AUDIENCE,
        "iss": ISSUER,
        "iat": now,
        "exp": now + 600,
    }
    for name, value in overrides.items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict[str, Any], payload: Any, key: bytes | None) -> str:
    """A JWT built by hand, for tokens PyJWT refuses to make (`none`, a PEM as HMAC key)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    return signing_input + "." + b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


JWT_AUTH = {"mode": "jwt", "audience": AUDIENCE, "issuer": ISSUER}


@pytest.fixture
def hs_client(build: Build, tiny_gpt2: Path) -> TestClient:
    return build(model_spec(tiny_gpt2, JWT_AUTH), {"JWT_SECRET": HS_SECRET})[1]


def hs(payload: dict[str, Any], secret: str = HS_SECRET, **kwargs: Any) -> str:
    return jwt.encode(payload, secret, algorithm="HS256", **kwargs)


def test_jwt_hs256_valid_token_passes(hs_client: TestClient) -> None:
    """docs/spec.md, Auth (`jwt`): `Authorization: Bearer <JWT>` signed with the HS256 secret of
    `JWT_SECRET` passes."""
    r = hs_client.post("/generate", json=BODY, headers=bearer(hs(claims())))
    assert r.status_code == 200, r.text
    # A token without `sub` still works; a token with nbf in the past too.
    assert (
        hs_client.post("/generate", json=BODY, headers=bearer(hs(claims(sub=None)))).status_code
        == 200
    )
    past = int(time.time()) - 100
    assert (
        hs_client.post("/generate", json=BODY, headers=bearer(hs(claims(nbf=past)))).status_code
        == 200
    )


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda: hs(claims(exp=int(time.time()) - 600)), id="expired"),
        pytest.param(lambda: hs(claims(nbf=int(time.time()) + 600)), id="not-yet-valid"),
        pytest.param(lambda: hs(claims(exp=None)), id="missing-exp"),
        pytest.param(lambda: hs(claims(aud="someone-else")), id="wrong-audience"),
        pytest.param(lambda: hs(claims(aud=None)), id="missing-audience"),
        pytest.param(lambda: hs(claims(iss="https://evil.example")), id="wrong-issuer"),
        pytest.param(lambda: hs(claims(iss=None)), id="missing-issuer"),
        pytest.param(lambda: hs(claims(), secret=HS_SECRET + "x"), id="wrong-secret"),
        pytest.param(
            lambda: hand_made({"alg": "none", "typ": "JWT"}, claims(), None), id="alg-none"
        ),
        pytest.param(
            lambda: hand_made({"alg": "None", "typ": "JWT"}, claims(), None), id="alg-None"
        ),
        pytest.param(
            lambda: hand_made({"alg": "HS512", "typ": "JWT"}, claims(), HS_SECRET.encode()),
            id="other-hmac-alg",
        ),
        pytest.param(lambda: hs(claims())[:-4] + "AAAA", id="tampered-signature"),
        pytest.param(lambda: "not.a.jwt", id="garbage"),
        pytest.param(lambda: "a" * 300, id="garbage-no-dots"),
        pytest.param(lambda: "e30.e30.", id="empty-header-and-payload"),
        pytest.param(
            lambda: hand_made({"alg": "HS256"}, [1, 2], HS_SECRET.encode()), id="payload-not-object"
        ),
    ],
)
def test_jwt_hs256_refuses_bad_tokens(hs_client: TestClient, token: Callable[[], str]) -> None:
    r = hs_client.post("/generate", json=BODY, headers=bearer(token()))
    assert_refused(r, [HS_SECRET], "Bearer")


def test_jwt_refuses_missing_or_misplaced_token(hs_client: TestClient) -> None:
    good = hs(claims())
    for headers in (
        {},
        {"Authorization": good},
        {"Authorization": f"Basic {good}"},
        {"X-API-Key": good},
    ):
        assert_refused(
            hs_client.post("/generate", json=BODY, headers=headers), [HS_SECRET], "Bearer"
        )


def test_jwt_without_a_configured_key_refuses_everything(build: Build, tiny_gpt2: Path) -> None:
    _, client = build(model_spec(tiny_gpt2, JWT_AUTH))
    for token in (
        hs(claims()),
        hand_made({"alg": "HS256"}, claims(), b""),
        hand_made({"alg": "none"}, claims(), None),
    ):
        assert_refused(client.post("/generate", json=BODY, headers=bearer(token)), [])


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[str, str, str]:
    """(private PEM, public PEM, another private PEM)."""

    def private() -> Any:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    key, other = private(), private()
    pem = serialization.Encoding.PEM

    def private_pem(k: Any) -> str:
        return k.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    public = key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem(key), public.decode(), private_pem(other)


@pytest.mark.parametrize("one_line", [False, True], ids=["multiline-pem", "one-line-pem"])
def test_jwt_rs256(
    build: Build, tiny_gpt2: Path, rsa_keys: tuple[str, str, str], one_line: bool
) -> None:
    """docs/spec.md, Auth (`jwt`): with RS256 the valid tokens are those signed by the private half
    of the PEM public key in `JWT_PUBLIC_KEY`, written with line breaks or on one line with each
    break as the two characters backslash and n."""
    private, public, other = rsa_keys
    env_value = public.replace("\n", "\\n") if one_line else public
    assert ("\n" in env_value) is not one_line
    _, client = build(
        model_spec(tiny_gpt2, {**JWT_AUTH, "algorithm": "RS256"}), {"JWT_PUBLIC_KEY": env_value}
    )

    def send(token: str) -> Any:
        return client.post("/generate", json=BODY, headers=bearer(token))

    assert send(jwt.encode(claims(), private, algorithm="RS256")).status_code == 200
    refused = {
        "signed-by-another-key": jwt.encode(claims(), other, algorithm="RS256"),
        "expired": jwt.encode(claims(exp=int(time.time()) - 600), private, algorithm="RS256"),
        "wrong-audience": jwt.encode(claims(aud="x"), private, algorithm="RS256"),
        "other-rsa-alg": jwt.encode(claims(), private, algorithm="RS512"),
        "pss-alg": jwt.encode(claims(), private, algorithm="PS256"),
        # The classic key-confusion attack: HMAC-sign with the public key as the secret,
        # hoping the server feeds its RSA key to HS256.
        "hs256-with-public-key": hand_made(
            {"alg": "HS256", "typ": "JWT"}, claims(), public.encode()
        ),
        "hs256-with-one-line-key": hand_made(
            {"alg": "HS256", "typ": "JWT"}, claims(), env_value.encode()
        ),
        "hs256-with-some-secret": hs(claims()),
        "alg-none": hand_made({"alg": "none", "typ": "JWT"}, claims(), None),
    }
    for name, token in refused.items():
        r = send(token)
        assert r.status_code == 401, name
        assert_refused(r, [], "Bearer")


# --- proxy ------------------------------------------------------------------------------

PROXY_TOKENS = "wk-alpha:ws-alpha-secret,wk-beta:ws-beta-secret"


def proxy(key: str, secret: str) -> dict[str, str]:
    return {"Modal-Key": key, "Modal-Secret": secret}


def test_proxy_mode_checks_modal_headers_locally(build: Build, tiny_gpt2: Path) -> None:
    """docs/spec.md, Auth (`proxy`): outside Modal the app checks the `Modal-Key` and `Modal-Secret`
    headers itself, against the `key:secret` pairs of `MODAL_PROXY_TOKENS`."""
    spec = model_spec(tiny_gpt2, {"mode": "proxy"})
    _, client = build(spec, {"MODAL_PROXY_TOKENS": PROXY_TOKENS})
    for key, secret in (("wk-alpha", "ws-alpha-secret"), ("wk-beta", "ws-beta-secret")):
        assert client.post("/generate", json=BODY, headers=proxy(key, secret)).status_code == 200
    refused = [
        {},
        proxy("wk-alpha", ""),
        proxy("", "ws-alpha-secret"),
        proxy("wk-alpha", "ws-beta-secret"),  # a key with another pair's secret
        proxy("wk-alpha", "ws-alpha-secre"),
        {"Modal-Key": "wk-alpha:ws-alpha-secret"},
        proxy("wk-alpha:ws-alpha-secret", ""),
        proxy("wk-alpha:ws-alpha-secret,wk-beta", "ws-beta-secret"),
        {"Authorization": "Bearer wk-alpha:ws-alpha-secret"},
    ]
    for headers in refused:
        r = client.post("/generate", json=BODY, headers=headers)
        assert_refused(r, ["ws-alpha-secret", "ws-beta-secret"])
    assert client.get("/health").status_code == 200


def test_proxy_mode_without_tokens_refuses_everything(build: Build, tiny_gpt2: Path) -> None:
    _, client = build(model_spec(tiny_gpt2, {"mode": "proxy"}))
    for headers in ({}, proxy("", ""), proxy(":", ":")):
        assert client.post("/generate", json=BODY, headers=headers).status_code == 401


def test_proxy_mode_route_cannot_opt_out(tmp_path: Path, tiny_gpt2: Path) -> None:
    spec = model_spec(tiny_gpt2, {"mode": "proxy"})
    spec["routes"].append(
        {"path": "/open", "method": "POST", "action": "generate", "auth": "none", "public": True}
    )
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path, spec), tmp_path / "build")
    assert "proxy" in str(caught.value)


def web_unauthenticated(module: ModuleType) -> bool:
    if hasattr(module, "Server"):  # a model app: the ASGI app is a method of `Server`
        info = module.Server._get_class_service_function().info()
        return bool(info.method_details["web"].unauthenticated)
    return bool(module.web.info().web_info.unauthenticated)  # no model: a function `web`


def hook_spec(auth: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "hooks",
        "auth": auth,
        "routes": [
            {
                "path": "/hook",
                "method": "POST",
                "action": "webhook",
                "provider": "github",
                "secret": "gh-hook",
                "env": "GITHUB_SECRET",
            },
            {"path": "/health", "action": "health"},
        ],
    }


def test_proxy_mode_asks_modal_for_proxy_auth(build: Build, tiny_gpt2: Path) -> None:
    """docs/spec.md, Auth (`proxy`): deployed, Modal checks them at its edge
    (`requires_proxy_auth=True`)."""
    module, _ = build(model_spec(tiny_gpt2, {"mode": "proxy"}))
    assert web_unauthenticated(module) is False
    assert "requires_proxy_auth=True" in Path(module.__file__).read_text()
    # An app of webhooks and health alone is guarded at Modal's edge too...
    hooks, client = build(hook_spec({"mode": "proxy"}), {"GITHUB_SECRET": HOOK_SECRET})
    assert web_unauthenticated(hooks) is False
    # ...while locally its webhook still answers on its signature alone.
    body = b'{"zen": "ok"}'
    signature = "sha256=" + hmac.new(HOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    r = client.post("/hook", content=body, headers={"X-Hub-Signature-256": signature})
    assert r.status_code == 200


@pytest.mark.parametrize("mode", ["none", "api_key", "bearer", "jwt"])
def test_other_modes_leave_the_endpoint_reachable_without_proxy_auth(
    build: Build, tiny_gpt2: Path, mode: str
) -> None:
    spec = model_spec(tiny_gpt2, {"mode": mode})
    if mode == "none":
        for route in spec["routes"]:
            route["public"] = route["action"] != "health"
    module, _ = build(spec, {"API_KEYS": "key-one", "JWT_SECRET": HS_SECRET})
    assert web_unauthenticated(module) is True
    assert "requires_proxy_auth" not in Path(module.__file__).read_text()
