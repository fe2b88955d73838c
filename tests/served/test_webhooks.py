"""Signed webhooks against the providers' own test vectors and the official `stripe` package.

GitHub: the "Validating webhook deliveries" example. Slack: the "Verifying requests from
Slack" example (its timestamp is years old, so the vector is checked through the module's
HMAC helper and the live route must refuse it as stale). Stripe: headers made and checked
by `stripe.WebhookSignature` / `stripe.Webhook.construct_event`.

Generic: HMAC made here with `hmac`, in every algorithm and encoding the spec allows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import stripe
from conftest import build_and_import, write_spec
from fastapi.testclient import TestClient

from endpointgen.runtime import webhooks

ORIGIN = "https://example.com"

GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_PAYLOAD = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"

SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TIMESTAMP = "1531420618"
SLACK_BODY = (
    b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow"
    b"&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner"
    b"&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com"
    b"%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
    b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)
SLACK_SIGNATURE = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
FORM = "application/x-www-form-urlencoded"

STRIPE_SECRET = "whsec_endpointgen_test_signing_secret"
STRIPE_EVENT = {
    "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "object": "event",
    "api_version": "2022-11-15",
    "created": 1686089970,
    "type": "payment_intent.succeeded",
    "data": {"object": {"id": "pi_3NG8Dt2eZvKYlo2C0u4Hqk0G", "object": "payment_intent"}},
    "livemode": False,
}
STRIPE_PAYLOAD = json.dumps(STRIPE_EVENT)

ENV = {
    "GITHUB_WEBHOOK_SECRET": GITHUB_SECRET,
    "SLACK_SIGNING_SECRET": SLACK_SECRET,
    "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
    "GENERIC_SECRET": "generic-signing-secret",
}


def hook(path: str, provider: str, env: str, **extra: Any) -> dict[str, Any]:
    return {
        "path": path,
        "method": "POST",
        "action": "webhook",
        "provider": provider,
        "secret": f"{provider}-hook",
        "env": env,
        **extra,
    }


SPEC = {
    "name": "hooks",
    "cors": {"origins": [ORIGIN]},
    "routes": [
        hook("/github", "github", "GITHUB_WEBHOOK_SECRET"),
        hook("/slack", "slack", "SLACK_SIGNING_SECRET"),
        hook("/stripe", "stripe", "STRIPE_WEBHOOK_SECRET"),
        hook("/small", "github", "GITHUB_WEBHOOK_SECRET", max_bytes=64),
        hook(
            "/generic/plain",
            "generic",
            "GENERIC_SECRET",
            signature={"header": "X-Signature", "prefix": "sha256="},
        ),
        hook(
            "/generic/stamped",
            "generic",
            "GENERIC_SECRET",
            signature={
                "header": "X-Signature",
                "algorithm": "sha512",
                "encoding": "base64",
                "timestamp_header": "X-Timestamp",
            },
            tolerance=60,
        ),
        {"path": "/health", "action": "health"},
    ],
}


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    folder = tmp_path_factory.mktemp("hooks")
    return build_and_import(write_spec(folder, SPEC), folder / "build")


@pytest.fixture
def client(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    yield TestClient(module.create_app())


def github_headers(body: bytes, secret: str = GITHUB_SECRET, event: str = "push") -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": event}


def slack_headers(
    body: bytes, timestamp: int | str | None = None, secret: str = SLACK_SECRET
) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": f"v0={digest}"}


def assert_refused(r: Any) -> None:
    assert r.status_code == 401, r.text
    assert r.json() == {"error": "invalid signature", "request_id": r.headers["X-Request-ID"]}
    for secret in ENV.values():
        assert secret not in r.text


# --- GitHub -----------------------------------------------------------------------------


def test_github_documented_vector(client: TestClient) -> None:
    """docs/spec.md, Routes (`webhook`): a delivery whose signature checks gets 200
    `{"status": "received", "event"}`. docs/spec.md, Webhooks (`github`): `X-Hub-Signature-256`
    is `sha256=` and the hex HMAC-SHA256 of the body, as GitHub's own example computes it."""
    digest = hmac.new(GITHUB_SECRET.encode(), GITHUB_PAYLOAD, hashlib.sha256).hexdigest()
    assert f"sha256={digest}" == GITHUB_SIGNATURE
    assert "sha256=" + webhooks.hex_hmac(GITHUB_SECRET.encode(), GITHUB_PAYLOAD) == GITHUB_SIGNATURE
    headers = {
        "X-Hub-Signature-256": GITHUB_SIGNATURE,
        "X-GitHub-Event": "push",
        "Content-Type": "text/plain",
    }
    r = client.post("/github", content=GITHUB_PAYLOAD, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "received", "event": "push"}


def test_github_json_delivery(client: TestClient) -> None:
    body = json.dumps({"zen": "Speak like a human.", "hook_id": 1}).encode()
    headers = {**github_headers(body, event="ping"), "Content-Type": "application/json"}
    r = client.post("/github", content=body, headers=headers)
    assert r.status_code == 200
    assert r.json() == {"status": "received", "event": "ping"}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="unsigned"),
        pytest.param({"X-Hub-Signature-256": ""}, id="empty"),
        pytest.param(
            {"X-Hub-Signature-256": GITHUB_SIGNATURE.removeprefix("sha256=")}, id="no-prefix"
        ),
        pytest.param({"X-Hub-Signature-256": "sha1=" + GITHUB_SIGNATURE[7:]}, id="sha1-prefix"),
        pytest.param(
            {
                "X-Hub-Signature": "sha1="
                + hmac.new(GITHUB_SECRET.encode(), GITHUB_PAYLOAD, "sha1").hexdigest()
            },
            id="legacy-sha1-header-only",
        ),
        pytest.param(github_headers(GITHUB_PAYLOAD, secret="another secret"), id="other-secret"),
        pytest.param(github_headers(b"Hello, World?"), id="tampered-body"),
        pytest.param({"X-Hub-Signature-256": GITHUB_SIGNATURE[:-1]}, id="truncated"),
        pytest.param({"X-Hub-Signature-256": GITHUB_SIGNATURE + "00"}, id="extended"),
        pytest.param(
            {"X-Hub-Signature-256": f"{GITHUB_SIGNATURE},{GITHUB_SIGNATURE}"}, id="doubled"
        ),
    ],
)
def test_github_refuses(client: TestClient, headers: dict[str, str]) -> None:
    """docs/spec.md, Webhooks (`github`): any other signature, or none, is a 401
    `invalid signature`."""
    assert_refused(client.post("/github", content=GITHUB_PAYLOAD, headers=headers))


# --- Slack ------------------------------------------------------------------------------


def test_slack_documented_vector_and_its_staleness(client: TestClient) -> None:
    base = b"v0:" + SLACK_TIMESTAMP.encode() + b":" + SLACK_BODY
    assert "v0=" + webhooks.hex_hmac(SLACK_SECRET.encode(), base) == SLACK_SIGNATURE
    assert slack_headers(SLACK_BODY, SLACK_TIMESTAMP)["X-Slack-Signature"] == SLACK_SIGNATURE
    # Signed correctly, but in 2018: a replay, refused.
    headers = {"X-Slack-Request-Timestamp": SLACK_TIMESTAMP, "X-Slack-Signature": SLACK_SIGNATURE}
    assert_refused(
        client.post("/slack", content=SLACK_BODY, headers={**headers, "Content-Type": FORM})
    )


def test_slack_fresh_signature_passes(client: TestClient) -> None:
    """docs/spec.md, Webhooks (`slack`): `X-Slack-Signature: v0=<hex>` over `v0:<timestamp>:<body>`
    passes while the timestamp is within 300 s."""
    r = client.post(
        "/slack", content=SLACK_BODY, headers={**slack_headers(SLACK_BODY), "Content-Type": FORM}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "received", "event": "/webhook-collect"}
    # 4 minutes old is still inside the 5-minute window.
    old = slack_headers(SLACK_BODY, int(time.time()) - 240)
    assert (
        client.post("/slack", content=SLACK_BODY, headers={**old, "Content-Type": FORM}).status_code
        == 200
    )


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: slack_headers(SLACK_BODY, int(time.time()) - 301), id="stale"),
        pytest.param(lambda: slack_headers(SLACK_BODY, int(time.time()) + 310), id="future"),
        pytest.param(lambda: slack_headers(SLACK_BODY, secret="0" * 32), id="other-secret"),
        pytest.param(lambda: slack_headers(SLACK_BODY + b"&x=1"), id="tampered-body"),
        pytest.param(
            lambda: {
                **slack_headers(SLACK_BODY),
                "X-Slack-Request-Timestamp": str(int(time.time()) - 1),
            },
            id="timestamp-swapped",
        ),
        pytest.param(
            lambda: {"X-Slack-Signature": slack_headers(SLACK_BODY)["X-Slack-Signature"]},
            id="no-timestamp",
        ),
        pytest.param(
            lambda: {"X-Slack-Request-Timestamp": str(int(time.time()))}, id="no-signature"
        ),
        pytest.param(
            lambda: slack_headers(SLACK_BODY, f"{int(time.time())}.0"), id="float-timestamp"
        ),
        pytest.param(
            lambda: slack_headers(SLACK_BODY, f"-{int(time.time())}"), id="negative-timestamp"
        ),
        pytest.param(lambda: {}, id="unsigned"),
    ],
)
def test_slack_refuses(client: TestClient, make: Any) -> None:
    """docs/spec.md, Webhooks (`slack`): a stale or future timestamp, another secret, a tampered
    body or a missing header is a 401."""
    r = client.post("/slack", content=SLACK_BODY, headers={**make(), "Content-Type": FORM})
    assert_refused(r)


def test_slack_url_verification_returns_the_challenge(client: TestClient) -> None:
    """docs/spec.md, Webhooks (`slack`): the signed `url_verification` handshake is answered with
    its challenge."""
    challenge = "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    body = json.dumps(
        {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": challenge, "type": "url_verification"}
    )
    headers = {**slack_headers(body.encode()), "Content-Type": "application/json"}
    r = client.post("/slack", content=body, headers=headers)
    assert r.status_code == 200
    assert r.json() == {"challenge": challenge}
    # The handshake is signed like any delivery: unsigned, it is refused.
    assert_refused(
        client.post("/slack", content=body, headers={"Content-Type": "application/json"})
    )


# --- Stripe -----------------------------------------------------------------------------


def stripe_header(
    payload: str = STRIPE_PAYLOAD, timestamp: int | None = None, secret: str = STRIPE_SECRET
) -> str:
    return stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp=timestamp)


def stripe_accepts(header: str, payload: str = STRIPE_PAYLOAD) -> bool:
    try:
        stripe.Webhook.construct_event(payload, header, STRIPE_SECRET, tolerance=300)
    except stripe.SignatureVerificationError:
        return False
    return True


def post_stripe(client: TestClient, header: str | None, payload: str = STRIPE_PAYLOAD) -> Any:
    headers = {"Content-Type": "application/json"}
    if header is not None:
        headers["Stripe-Signature"] = header
    return client.post("/stripe", content=payload.encode(), headers=headers)


def test_stripe_signature_from_the_stripe_package(client: TestClient) -> None:
    """docs/spec.md, Webhooks (`stripe`): `Stripe-Signature: t=...,v1=...` as Stripe's own package
    makes it passes, `t` up to 300 s old."""
    header = stripe_header()
    assert stripe_accepts(header)
    r = post_stripe(client, header)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "received", "event": "payment_intent.succeeded"}
    inside = stripe_header(timestamp=int(time.time()) - 200)
    assert stripe_accepts(inside)
    assert post_stripe(client, inside).status_code == 200


def test_stripe_several_v1_signatures_one_valid(client: TestClient) -> None:
    """docs/spec.md, Webhooks (`stripe`): several `v1` values are allowed; one valid is enough.

    During a secret roll Stripe signs with both secrets: any one v1 may match."""
    stamp = int(time.time())
    good = stripe_header(timestamp=stamp).split(",")[1]
    bad = stripe_header(timestamp=stamp, secret="whsec_old_rolled_secret").split(",")[1]
    for header in (
        f"t={stamp},{bad},{good}",
        f"t={stamp},{good},{bad}",
        f"t={stamp},{bad},{good},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
        f"{good},t={stamp},{bad}",
    ):
        assert stripe_accepts(header), header
        assert post_stripe(client, header).status_code == 200, header
    only_bad = f"t={stamp},{bad},{bad}"
    assert not stripe_accepts(only_bad)
    assert_refused(post_stripe(client, only_bad))


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: stripe_header(timestamp=int(time.time()) - 301), id="stale"),
        pytest.param(lambda: stripe_header(timestamp=int(time.time()) - 3600), id="an-hour-old"),
        pytest.param(lambda: stripe_header(secret="whsec_someone_else"), id="other-secret"),
        pytest.param(lambda: stripe_header(payload=STRIPE_PAYLOAD + " "), id="signed-other-body"),
        pytest.param(lambda: "t=1686089970,v1=" + "0" * 64, id="bad-signature"),
        pytest.param(lambda: stripe_header().split(",")[1], id="no-timestamp"),
        pytest.param(lambda: stripe_header().split(",")[0], id="no-v1"),
        pytest.param(lambda: stripe_header().replace("v1=", "v0="), id="v0-only"),
        pytest.param(lambda: "garbage", id="garbage"),
    ],
)
def test_stripe_refuses(client: TestClient, make: Any) -> None:
    """docs/spec.md, Webhooks (`stripe`): a `t` older than 300 s, another secret or body, or a
    malformed header is a 401."""
    header = make()
    assert not stripe_accepts(header)
    assert_refused(post_stripe(client, header))


def test_stripe_refuses_a_future_timestamp_and_duplicate_timestamps(client: TestClient) -> None:
    """Stricter than the package, which accepts a timestamp from the future."""
    future = stripe_header(timestamp=int(time.time()) + 3600)
    assert_refused(post_stripe(client, future))
    stamp = int(time.time())
    v1 = stripe_header(timestamp=stamp).split(",")[1]
    assert_refused(post_stripe(client, f"t={stamp},t={stamp - 1000},{v1}"))


def test_stripe_unsigned_and_tampered(client: TestClient) -> None:
    assert_refused(post_stripe(client, None))
    header = stripe_header()
    tampered = STRIPE_PAYLOAD.replace("payment_intent.succeeded", "payment_intent.canceled")
    assert not stripe_accepts(header, tampered)
    assert_refused(post_stripe(client, header, tampered))


# --- every provider ---------------------------------------------------------------------


def test_no_signing_secret_refuses_every_delivery(
    module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ENV:
        monkeypatch.setenv(name, "")
    client = TestClient(module.create_app())
    empty = hmac.new(b"", GITHUB_PAYLOAD, hashlib.sha256).hexdigest()
    assert_refused(
        client.post(
            "/github", content=GITHUB_PAYLOAD, headers={"X-Hub-Signature-256": f"sha256={empty}"}
        )
    )
    assert_refused(
        client.post("/slack", content=SLACK_BODY, headers=slack_headers(SLACK_BODY, secret=""))
    )
    stamp = int(time.time())
    v1 = hmac.new(b"", f"{stamp}.{STRIPE_PAYLOAD}".encode(), hashlib.sha256).hexdigest()
    assert_refused(post_stripe(client, f"t={stamp},v1={v1}"))


def test_body_over_max_bytes_is_413_before_verification(client: TestClient) -> None:
    fits = b"x" * 64
    assert client.post("/small", content=fits, headers=github_headers(fits)).status_code == 200
    big = b"x" * 65
    for headers in (github_headers(big), {}, {"X-Hub-Signature-256": "sha256=00"}):
        r = client.post("/small", content=big, headers={**headers, "Origin": ORIGIN})
        assert r.status_code == 413, r.text
        assert r.json() == {
            "error": "request body too large",
            "request_id": r.headers["X-Request-ID"],
        }
        assert r.headers["Access-Control-Allow-Origin"] == ORIGIN

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(5):
            yield b"x" * 20

    assert (
        client.post("/small", content=chunks(), headers=github_headers(b"x" * 100)).status_code
        == 413
    )


def test_cors_headers_on_refusals_for_allowed_origins_only(client: TestClient) -> None:
    for path in ("/github", "/slack", "/stripe"):
        r = client.post(path, content=b"{}", headers={"Origin": ORIGIN})
        assert_refused(r)
        assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
        assert "X-Request-ID" in r.headers["Access-Control-Expose-Headers"]
        other = client.post(path, content=b"{}", headers={"Origin": "https://evil.example"})
        assert_refused(other)
        assert "Access-Control-Allow-Origin" not in other.headers
    preflight = client.options(
        "/github",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_signing_secrets_stay_out_of_the_generated_code(module: ModuleType) -> None:
    source = Path(module.__file__).read_text()
    for secret in ENV.values():
        assert secret not in source
    # Each named Modal Secret once, attached to the web function (no model: no `Server`).
    assert not hasattr(module, "Server")
    info = module.web.info()
    names = ["generic-hook", "github-hook", "slack-hook", "stripe-hook"]
    assert sorted(info.secrets) == [f"modal.Secret.from_name('{n}')" for n in names]


# --- generic ----------------------------------------------------------------------------


def generic_signature(payload: bytes, algorithm: str = "sha256", encoding: str = "hex") -> str:
    digest = hmac.new(ENV["GENERIC_SECRET"].encode(), payload, algorithm).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def test_generic_plain_signature_with_prefix(client: TestClient) -> None:
    """docs/spec.md, Webhooks (`generic`): the HMAC of the body in the spec's `header`, after its
    `prefix` (sha256, hex by default)."""
    body = b'{"type": "thing.created"}'
    good = {"X-Signature": "sha256=" + generic_signature(body), "Content-Type": "application/json"}
    r = client.post("/generic/plain", content=body, headers=good)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "received", "event": "thing.created"}
    no_prefix = {"X-Signature": generic_signature(body)}
    assert_refused(client.post("/generic/plain", content=body, headers=no_prefix))
    assert_refused(client.post("/generic/plain", content=body + b" ", headers=good))


def test_generic_timestamped_sha512_base64(client: TestClient) -> None:
    """docs/spec.md, Webhooks (`generic`): with `timestamp_header`, the HMAC (here sha512, base64)
    of `<timestamp>.<body>`, the timestamp checked against `tolerance`."""
    body = b"payload"
    now = str(int(time.time()))
    signed = generic_signature(f"{now}.".encode() + body, "sha512", "base64")
    headers = {"X-Signature": signed, "X-Timestamp": now}
    assert client.post("/generic/stamped", content=body, headers=headers).status_code == 200
    old = str(int(time.time()) - 120)  # past the route's 60 s tolerance
    stale = {"X-Signature": generic_signature(f"{old}.".encode() + body, "sha512", "base64")}
    assert_refused(
        client.post("/generic/stamped", content=body, headers={**stale, "X-Timestamp": old})
    )
    unstamped = {"X-Signature": generic_signature(body, "sha512", "base64")}
    assert_refused(client.post("/generic/stamped", content=body, headers=unstamped))
