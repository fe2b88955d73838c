"""Signed webhooks: the signature is checked on the raw bytes, in constant time, first.

`Webhook("github", env="GITHUB_WEBHOOK_SECRET")` is the whole route: it reads the raw
body, verifies it (GitHub, Stripe, Slack or a generic HMAC, with a replay window where the
provider signs a timestamp), answers 401 when that fails, and acknowledges the delivery.
"""

from __future__ import annotations

import base64
import hmac
import json
import os
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from endpointgen.runtime import defaults, http

__all__ = ["Signature", "Webhook"]

Provider = Literal["github", "stripe", "slack", "generic"]
DEFAULT_TOLERANCE = defaults.WEBHOOK_TOLERANCE


class BadSignature(Exception):
    pass


@dataclass(frozen=True)
class Signature:
    """How a `generic` provider signs: an HMAC of the body (or `timestamp.body`)."""

    header: str
    algorithm: str = "sha256"
    encoding: Literal["hex", "base64"] = "hex"
    prefix: str = ""
    timestamp_header: str | None = None


def same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def hex_hmac(secret: bytes, payload: bytes, algorithm: str = "sha256") -> str:
    return hmac.new(secret, payload, algorithm).hexdigest()


def fresh(timestamp: str, tolerance: int) -> int:
    """The timestamp as a number, if it is within `tolerance` seconds of now."""
    # "²" is a digit to isdigit(); and 400 digits overflow a float: 12 cover year 33658.
    digits = timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
    if not digits or abs(time.time() - int(timestamp)) > tolerance:
        raise BadSignature("timestamp missing or outside the tolerance window")
    return int(timestamp)


Headers = Mapping[str, str]


def verify_github(key: bytes, body: bytes, headers: Headers, hook: Webhook) -> None:
    given = headers.get("x-hub-signature-256", "")
    if not same(given, "sha256=" + hex_hmac(key, body)):
        raise BadSignature("signature mismatch")


def verify_stripe(key: bytes, body: bytes, headers: Headers, hook: Webhook) -> None:
    header = headers.get("stripe-signature", "")
    pairs = [part.strip().split("=", 1) for part in header.split(",")]
    timestamps = [p[1] for p in pairs if len(p) == 2 and p[0] == "t"]
    signatures = [p[1] for p in pairs if len(p) == 2 and p[0] == "v1"]
    if len(timestamps) != 1 or not signatures:
        raise BadSignature("malformed Stripe-Signature header")
    stamp = fresh(timestamps[0], hook.tolerance)
    expected = hex_hmac(key, f"{stamp}.".encode() + body)
    if not any([same(signature, expected) for signature in signatures]):
        raise BadSignature("signature mismatch")


def verify_slack(key: bytes, body: bytes, headers: Headers, hook: Webhook) -> None:
    stamp = headers.get("x-slack-request-timestamp", "")
    fresh(stamp, hook.tolerance)
    expected = "v0=" + hex_hmac(key, b"v0:" + stamp.encode() + b":" + body)
    if not same(headers.get("x-slack-signature", ""), expected):
        raise BadSignature("signature mismatch")


def verify_generic(key: bytes, body: bytes, headers: Headers, hook: Webhook) -> None:
    signature = hook.signature
    if signature is None:
        raise BadSignature("no signature scheme configured")
    given = headers.get(signature.header, "")
    if not given.startswith(signature.prefix):
        raise BadSignature("signature header missing or without its prefix")
    payload = body
    if signature.timestamp_header:
        stamp = headers.get(signature.timestamp_header, "")
        payload = str(fresh(stamp, hook.tolerance)).encode() + b"." + body
    digest = hmac.new(key, payload, signature.algorithm).digest()
    if signature.encoding == "hex":
        expected = digest.hex()
    else:
        expected = base64.b64encode(digest).decode()
    if not same(given[len(signature.prefix) :], expected):
        raise BadSignature("signature mismatch")


Verifier = Callable[[bytes, bytes, Headers, "Webhook"], None]
VERIFIERS: dict[str, Verifier] = {
    "github": verify_github,
    "stripe": verify_stripe,
    "slack": verify_slack,
    "generic": verify_generic,
}


def event_of(provider: str, headers: Headers, payload: Any) -> str | None:
    if provider == "github":
        return headers.get("x-github-event")
    if isinstance(payload, dict):
        value = payload.get("type") or payload.get("command")
        return str(value) if value is not None else None
    return None


def parse_payload(body: bytes, content_type: str) -> Any:
    if content_type.startswith("application/x-www-form-urlencoded"):
        return dict(urllib.parse.parse_qsl(body.decode("utf-8", "replace")))
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):
        return None


class Webhook:
    """Verifies a delivery's signature with the secret in env var `env`, then logs it and
    answers `{"status": "received", "event": ...}` (Slack's URL handshake is answered)."""

    def __init__(
        self,
        provider: Provider,
        env: str,
        tolerance: int = DEFAULT_TOLERANCE,
        signature: Signature | None = None,
    ) -> None:
        self.provider = provider
        self.env = env
        self.tolerance = tolerance
        self.signature = signature
        self.verify = VERIFIERS[provider]
        self.secret = os.environ.get(env, "").encode()
        if not self.secret:
            http.log.error("%s is empty: this webhook refuses every delivery", env)

    async def receive(self, request: Request) -> JSONResponse:
        body = await request.body()
        try:
            if not self.secret:
                raise BadSignature("no signing secret configured")
            self.verify(self.secret, body, request.headers, self)
        except BadSignature as exc:
            http.log.warning("webhook %s refused: %s", request.url.path, exc)
            raise HTTPException(401, "invalid signature") from None
        payload = parse_payload(body, request.headers.get("content-type", ""))
        if isinstance(payload, dict) and payload.get("type") == "url_verification":
            # Slack's handshake when the URL is first registered.
            return JSONResponse({"challenge": payload.get("challenge")})
        event = event_of(self.provider, request.headers, payload)
        line = {"request_id": http.request_id(request), "webhook": self.provider}
        http.log.info({**line, "event": event, "bytes": len(body)})
        return JSONResponse({"status": "received", "event": event})


RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": http.ErrorBody, "description": "Missing or invalid signature"},
}
