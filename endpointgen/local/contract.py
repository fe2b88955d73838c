"""Contract tests: run each route's `examples:` against the app, in-process or at a URL."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from endpointgen.compiler.pipeline import build
from endpointgen.compiler.plan import auth_settings
from endpointgen.compiler.resolved import AuthPlan
from endpointgen.errors import UsageError
from endpointgen.spec import Spec
from endpointgen.spec.models import Example, Route, job_of

_MISSING = object()


@dataclass
class Outcome:
    route: Route
    example: Example
    request: dict[str, Any]
    status: int = 0
    body: Any = None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        label = self.example.name or f"example {self.route.examples.index(self.example) + 1}"
        return f"{self.route.method} {self.route.path}: {label}"

    def report(self) -> str:
        """What was sent, what came back, and what differed."""
        body = json.dumps(self.body, indent=2)[:2000] if self.body is not None else "(empty)"
        lines = [f"FAIL {self.name}"]
        lines += [f"  request: {json.dumps(self.request)}", f"  response: {self.status}"]
        lines += ["    " + line for line in body.splitlines()]
        lines += [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


def credentials(spec: Spec, environ: dict[str, str]) -> dict[str, str]:
    """The headers a client of this app sends, from the same env vars the app reads."""
    auth = auth_settings(spec)
    mode, env = auth.mode, auth.env or ""
    if mode in ("api_key", "bearer"):
        first = next((v.strip() for v in environ.get(env, "").split(",") if v.strip()), "")
        if not first:
            raise UsageError(f"set {env} to a valid {'key' if mode == 'api_key' else 'token'}")
        if mode == "api_key":
            return {auth.header or "X-API-Key": first}
        return {"Authorization": f"Bearer {first}"}
    if mode == "jwt":
        return {"Authorization": f"Bearer {_jwt(spec, auth, environ)}"}
    if mode == "proxy":
        pair = next((p for p in environ.get(env, "").split(",") if ":" in p), "")
        if not pair:
            raise UsageError(f"set {env} to key:secret (a Modal proxy auth token)")
        key, secret = pair.strip().split(":", 1)
        return {"Modal-Key": key, "Modal-Secret": secret}
    return {}


def _jwt(spec: Spec, auth: AuthPlan, environ: dict[str, str]) -> str:
    """ENDPOINTGEN_JWT when set; else a 5-minute token signed with the HS256 secret."""
    if environ.get("ENDPOINTGEN_JWT"):
        return environ["ENDPOINTGEN_JWT"]
    secret = environ.get(auth.env or "", "")
    if auth.algorithm != "HS256" or not secret:
        raise UsageError("set ENDPOINTGEN_JWT to a valid token for this app")
    import jwt

    claims: dict[str, Any] = {"sub": "endpointgen-test", "exp": int(time.time()) + 300}
    if auth.audience:
        claims["aud"] = auth.audience
    if auth.issuer:
        claims["iss"] = auth.issuer
    return str(jwt.encode(claims, secret, algorithm="HS256"))


def check(example: Example, status: int, body: Any) -> list[str]:
    problems = []
    if status != example.status:
        problems.append(f"status: expected {example.status}, got {status}")
    for key in example.keys:
        if _lookup(body, key) is _MISSING:
            problems.append(f"missing key {key!r}")
    for key, expected in example.values.items():
        got = _lookup(body, key)
        if got is _MISSING:
            problems.append(f"missing key {key!r} (expected {expected!r})")
        elif got != expected:
            problems.append(f"{key}: expected {expected!r}, got {got!r}")
    return problems


JOB_WAIT = 600  # seconds an example waits for its job


def _job_answer(send: Any, submitted: Any, headers: dict[str, str]) -> tuple[int, Any]:
    """A job route's example: polls the job until it ends, then judges what the route
    itself would have answered (its result, or its error's status and message)."""
    url = submitted.headers["location"]
    deadline = time.monotonic() + JOB_WAIT
    while True:
        found = send(method="GET", url=url, headers=headers)
        if found.status_code != 200:
            return found.status_code, found.json()
        status = found.json()
        if status["status"] == "succeeded":
            return 200, status.get("result")
        if status["status"] in ("failed", "cancelled") or time.monotonic() > deadline:
            error = status.get("error") or {"status": 504, "message": status["status"]}
            return int(error["status"]), {"error": error["message"]}
        time.sleep(0.1)


def _lookup(body: Any, key: str) -> Any:
    """`a.b.0` walks into mappings and lists."""
    here = body
    for part in key.split("."):
        if isinstance(here, dict) and part in here:
            here = here[part]
        elif isinstance(here, list) and part.isdigit() and int(part) < len(here):
            here = here[int(part)]
        else:
            return _MISSING
    return here


def run(
    spec_path: str | Path,
    url: str | None = None,
    env: str | None = None,
    environ: dict[str, str] | None = None,
    say: Callable[[str], None] = print,
) -> list[Outcome]:
    """Every example of every route; prints PASS/FAIL lines and returns the outcomes."""
    environ = dict(os.environ if environ is None else environ)
    with _client(spec_path, url, env) as (spec, send):
        sent = credentials(spec, environ) if any(r.examples for r in spec.routes) else {}
        outcomes = []
        for route in spec.routes:
            for example in route.examples:
                headers = {**(sent if example.auth else {}), **example.request.headers}
                path = example.request.path or route.path
                request: dict[str, Any] = {"method": route.method, "url": path}
                if example.request.query:
                    request["params"] = example.request.query
                if example.request.json_body is not None:
                    request["json"] = example.request.json_body
                outcome = Outcome(route, example, request)
                response = send(**request, headers=headers)
                outcome.status = response.status_code
                try:
                    outcome.body = response.json()
                except ValueError:
                    outcome.body = response.text or None
                if job_of(route) is not None and response.status_code == 202:
                    outcome.status, outcome.body = _job_answer(send, response, headers)
                outcome.problems = check(example, outcome.status, outcome.body)
                say(outcome.report() if outcome.problems else f"PASS {outcome.name}")
                outcomes.append(outcome)
        return outcomes


@contextmanager
def _client(spec_path: str | Path, url: str | None, env: str | None) -> Iterator[Any]:
    if url is not None:
        import httpx

        from endpointgen.compiler.pipeline import load_spec

        _, spec = load_spec(spec_path, env)
        with httpx.Client(base_url=url.rstrip("/"), timeout=120) as client:
            yield spec, client.request
        return
    from fastapi.testclient import TestClient

    from endpointgen.local.serve import import_module, load_app

    with tempfile.TemporaryDirectory(prefix="endpointgen-test-") as folder:
        built = build(spec_path, folder, env)
        built.path.write_text(built.source, encoding="utf-8")
        module = import_module(built.path)
        app = load_app(module, say=lambda line: None)
        logging.getLogger("endpointgen").setLevel(logging.WARNING)  # just the verdicts
        with TestClient(app) as client:
            yield built.spec, client.request
