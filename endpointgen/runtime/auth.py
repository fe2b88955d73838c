"""Auth guards: FastAPI dependencies for `api_key`, `bearer`, `jwt` and `proxy`.

Valid values come from an env var, which a Modal Secret provides when deployed and this
process's environment provides under `endpointgen serve`. A refusal is a 401 that never
says which keys exist. Each guard leaves `request.state.credential`, a digest that rate
limits count by, never the credential itself.

A WebSocket's client may carry its credential another way (a browser cannot set headers
on one): `presented(guard)` says which header the guard reads, so the same guard checks
it there, and holds the key that signs the app's WebSocket tickets.
"""

import hashlib
import hmac
import importlib
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.exceptions import HTTPException

from endpointgen.runtime import http
from endpointgen.runtime.metrics import METRICS

__all__ = ["Presented", "api_key", "bearer", "jwt", "presented", "proxy"]

Guard = Callable[[Request], Awaitable[None] | None]
REFUSED = http.documented(401, "Missing or invalid credentials")
BEARER = {"HTTPBearer": {"type": "http", "scheme": "bearer"}}


def only_header(request: Request, name: bytes) -> str | None:
    """The value of header `name` (lowercase), when the request has it exactly once: with
    two, which one a proxy or a framework reads first differs, so neither counts."""
    found: bytes | None = None
    for key, value in request.scope["headers"]:
        if key == name:
            if found is not None:
                return None
            found = value
    return found.decode("latin-1") if found else None


def bearer_token(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>` (the scheme in any case), else None;
    None for two Authorization headers too."""
    value = only_header(request, b"authorization")
    if not value:
        return None
    scheme, _, token = value.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _sha256() -> Callable[[bytes], Any]:
    """CPython's own SHA-256 (`_sha2`, `_sha256` before 3.12): each OpenSSL 3 hash object
    costs a provider lookup, a microsecond on every authenticated request."""
    for module in ("_sha2", "_sha256"):
        try:
            found: Callable[[bytes], Any] = importlib.import_module(module).sha256
        except ImportError:
            continue
        return found
    return hashlib.sha256


SHA256 = _sha256()


def digest(text: str) -> bytes:
    found: bytes = SHA256(text.encode()).digest()
    return found


def fingerprint(text: str) -> str:
    """What rate limits count by: never the credential itself."""
    found: str = SHA256(text.encode()).hexdigest()
    return found


def load_credentials(env: str) -> dict[bytes, str]:
    """Comma-separated values (several at once, so they can be rotated without downtime),
    kept only as SHA-256 digests (each with its hex, what rate limits count by)."""
    raw = os.environ.get(env, "")
    digests = [digest(v.strip()) for v in raw.split(",") if v.strip()]
    values = {found: found.hex() for found in digests}
    if not values:
        http.log.warning("%s is empty: every authenticated request is refused", env)
    return values


def matches(presented: str | None, valid: dict[bytes, str]) -> str | None:
    """The presented value's digest, in hex, when it is valid: one lookup, however many
    keys.

    The time it takes depends only on the digest of what was sent, which says nothing
    about any valid key: no comparison of the raw values ever happens.
    """
    return valid.get(digest(presented)) if presented else None


@dataclass(frozen=True)
class Presented:
    """Where a guard reads its credential: `header` (lowercase), the credential after
    `prefix`. `secret` signs WebSocket tickets: derived from the guard's own secret (its
    keys, or a JWT's HS256 secret), so every container of the app holds the same one and
    no one else does; None where the guard has no secret (an RS256 public key)."""

    header: bytes
    prefix: str
    secret: bytes | None


_PRESENTED: weakref.WeakKeyDictionary[Any, Presented] = weakref.WeakKeyDictionary()
TICKETS = b"endpointgen websocket tickets v1"


def presented(guard: Any) -> Presented | None:
    """How `guard` reads its credential; None for a check that is no such guard (a rate
    limit, a model's readiness, `proxy`, whose headers Modal checks at its edge)."""
    try:
        return _PRESENTED.get(guard)
    except TypeError:  # not weakly referenceable: no guard
        return None


def _presents(guard: Guard, header: bytes, prefix: str, secret: str) -> Guard:
    key = hmac.new(secret.encode(), TICKETS, hashlib.sha256).digest() if secret else None
    _PRESENTED[guard] = Presented(header, prefix, key)
    return guard


def api_key(env: str = "API_KEYS", header: str = "X-API-Key") -> Guard:
    """A key in `header`, one of the comma-separated keys in env var `env`."""
    valid = load_credentials(env)
    name = header.lower().encode("latin-1")

    def require_key(request: Request) -> None:
        found = matches(only_header(request, name), valid)
        if found is None:
            METRICS.auth_failed("api_key")
            raise HTTPException(401, "missing or invalid API key")
        request.scope.setdefault("state", {})["credential"] = found

    scheme = {"APIKeyHeader": {"type": "apiKey", "in": "header", "name": header}}
    _presents(require_key, name, "", os.environ.get(env, "").strip() if valid else "")
    return http.documents(require_key, REFUSED, scheme)


def bearer(env: str = "API_KEYS") -> Guard:
    """`Authorization: Bearer <token>`, one of the comma-separated tokens in env var `env`."""
    valid = load_credentials(env)

    def require_token(request: Request) -> None:
        found = matches(bearer_token(request), valid)
        if found is None:
            METRICS.auth_failed("bearer")
            challenge = {"WWW-Authenticate": "Bearer"}
            raise HTTPException(401, "missing or invalid bearer token", challenge)
        request.scope.setdefault("state", {})["credential"] = found

    secret = os.environ.get(env, "").strip() if valid else ""
    _presents(require_token, b"authorization", "Bearer ", secret)
    return http.documents(require_token, REFUSED, BEARER)


def jwt(
    env: str = "JWT_SECRET",
    algorithm: str = "HS256",
    audience: str | None = None,
    issuer: str | None = None,
    leeway: int = 0,
) -> Guard:
    """A JWT signed with `algorithm` only (`none` and every other algorithm fail), with
    `exp` required; the key (HS256 secret, RS256 public key) in env var `env`."""
    import jwt as pyjwt

    key = os.environ.get(env, "").strip().replace("\\n", "\n")  # PEM on one line
    if not key:
        http.log.warning("%s is empty: every authenticated request is refused", env)
    refused = {"WWW-Authenticate": 'Bearer error="invalid_token"'}

    def require_jwt(request: Request) -> None:
        token = bearer_token(request)
        if token is None or not key:
            METRICS.auth_failed("jwt")
            raise HTTPException(401, "missing or invalid bearer token", refused)
        try:
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=audience,
                issuer=issuer,
                leeway=leeway,
                options={"require": ["exp"]},
            )
        except pyjwt.PyJWTError:
            METRICS.auth_failed("jwt")
            raise HTTPException(401, "missing or invalid bearer token", refused) from None
        request.state.claims = claims
        request.state.credential = fingerprint(str(claims.get("sub", token)))

    _presents(require_jwt, b"authorization", "Bearer ", key if algorithm == "HS256" else "")
    return http.documents(require_jwt, REFUSED, BEARER)


def proxy(env: str = "MODAL_PROXY_TOKENS") -> Guard:
    """Deployed, Modal checks the proxy-auth headers before a request arrives here
    (`requires_proxy_auth=True`). Outside Modal the same `Modal-Key` and `Modal-Secret`
    headers are checked against env var `env`, which holds `key:secret` pairs, so the app
    behaves the same locally."""
    import modal

    local = modal.is_local()
    valid = load_credentials(env) if local else {}

    def require_proxy(request: Request) -> None:
        key = only_header(request, b"modal-key") or ""
        secret = only_header(request, b"modal-secret") or ""
        if local and (not key or matches(f"{key}:{secret}", valid) is None):
            METRICS.auth_failed("proxy")
            raise HTTPException(401, "missing or invalid Modal proxy auth token")
        client = request.client.host if request.client else "unknown"
        request.state.credential = fingerprint(key or client)

    return http.documents(require_proxy, REFUSED)
