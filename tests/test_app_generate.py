"""The built gpt2 app, driven over HTTP with a real (tiny) GPT-2: what a client sees."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import build_and_import, gpt2_spec, write_spec
from fastapi.testclient import TestClient

from endpointgen.local.serve import load_app

ORIGIN = "https://example.com"
AUTH = {"Authorization": "Bearer key-one"}


@pytest.fixture
def gpt2_module(tmp_path: Path, tiny_gpt2: Path, env_keys: list[str]) -> ModuleType:
    return build_and_import(write_spec(tmp_path, gpt2_spec(tiny_gpt2)), tmp_path / "build")


def client_for(module: ModuleType) -> TestClient:
    """The served app with its model loaded, as `endpointgen serve` makes it."""
    return TestClient(load_app(module, say=lambda _: None))


@pytest.fixture
def client(gpt2_module: ModuleType) -> TestClient:
    return client_for(gpt2_module)


def generate(client: TestClient, **body: Any) -> Any:
    return client.post("/generate", json={"prompt": "Hello world", **body}, headers=AUTH)


def test_health_reports_the_loaded_model(client: TestClient, tiny_gpt2: Path) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    # A local model is named by its folder: no path of this machine in an answer.
    assert r.json() == {"status": "ok", "model": tiny_gpt2.name, "task": "text-generation"}


def test_generate_returns_text_and_counts(client: TestClient) -> None:
    r = generate(client, max_tokens=8, seed=3)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"text", "tokens_generated", "finish_reason"}
    assert isinstance(body["text"], str)
    assert 1 <= body["tokens_generated"] <= 8
    assert body["finish_reason"] in ("length", "stop")


def test_seed_makes_sampling_reproducible(client: TestClient) -> None:
    first = generate(client, max_tokens=12, seed=7, temperature=1.5).json()
    assert generate(client, max_tokens=12, seed=7, temperature=1.5).json() == first
    others = {
        generate(client, max_tokens=12, seed=s, temperature=1.5).json()["text"]
        for s in range(8, 14)
    }
    assert len(others | {first["text"]}) > 1, "different seeds should give different text"


def test_temperature_zero_is_greedy(client: TestClient) -> None:
    outs = {generate(client, max_tokens=10, temperature=0).json()["text"] for _ in range(3)}
    assert len(outs) == 1


def test_stop_strings_cut_the_text(client: TestClient) -> None:
    full = generate(client, max_tokens=20, temperature=0).json()
    assert len(full["text"]) > 2
    stop = full["text"][1:3]
    cut = generate(client, max_tokens=20, temperature=0, stop=[stop]).json()
    assert cut["finish_reason"] == "stop"
    assert stop not in cut["text"]
    assert full["text"].startswith(cut["text"])


def test_route_ceiling_on_max_tokens_and_prompt(client: TestClient) -> None:
    r = generate(client, max_tokens=1025)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "max_tokens"]
    r = client.post("/generate", json={"prompt": "x" * 20_001}, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "prompt"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": ""},
        {"prompt": 5},
        {"prompt": "hi", "temperature": -1},
        {"prompt": "hi", "extra": 1},
    ],
)
def test_bad_bodies_get_422_json(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/generate", json=body, headers=AUTH)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid request"
    assert r.json()["request_id"] == r.headers["X-Request-ID"]


def test_malformed_json_gets_422(client: TestClient) -> None:
    r = client.post(
        "/generate", content=b"{not json", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 422
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer key-one,key-two"},
        {"Authorization": "Basic a2V5LW9uZTo="},
        {"Authorization": "Bearer "},
    ],
)
def test_auth_refuses_without_saying_which_keys_exist(
    client: TestClient, headers: dict[str, str]
) -> None:
    r = client.post("/generate", json={"prompt": "hi"}, headers=headers)
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert r.json()["error"] == "missing or invalid bearer token"
    assert "key-one" not in r.text and "key-two" not in r.text


def test_every_listed_key_works(client: TestClient, env_keys: list[str]) -> None:
    for key in env_keys:
        r = client.post(
            "/generate",
            json={"prompt": "hi", "max_tokens": 1},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 200


def test_health_needs_no_auth_and_no_rate_limit(client: TestClient) -> None:
    for _ in range(70):
        assert client.get("/health").status_code == 200


def test_cors_on_success_errors_and_preflight(client: TestClient) -> None:
    ok = client.post(
        "/generate", json={"prompt": "hi", "max_tokens": 1}, headers={**AUTH, "Origin": ORIGIN}
    )
    unauthorized = client.post("/generate", json={"prompt": "hi"}, headers={"Origin": ORIGIN})
    invalid = client.post("/generate", json={}, headers={**AUTH, "Origin": ORIGIN})
    for r, status in ((ok, 200), (unauthorized, 401), (invalid, 422)):
        assert r.status_code == status
        assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    preflight = client.options(
        "/generate",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
    other = client.post(
        "/generate", json={"prompt": "hi"}, headers={**AUTH, "Origin": "https://evil.example"}
    )
    assert "Access-Control-Allow-Origin" not in other.headers


def test_rate_limit_counts_per_key_and_answers_429(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One window for the whole test: a real clock can cross a minute boundary mid-way.
    from types import SimpleNamespace

    from endpointgen.runtime import limits

    monkeypatch.setattr(limits, "time", SimpleNamespace(time=lambda: 1_700_000_000.0))
    statuses = []
    for _ in range(61):
        r = client.post(
            "/generate", json={"prompt": "hi", "max_tokens": 1}, headers={**AUTH, "Origin": ORIGIN}
        )
        statuses.append(r.status_code)
    assert statuses.count(200) == 60 and statuses[-1] == 429
    assert int(r.headers["Retry-After"]) >= 1
    assert r.headers["RateLimit-Remaining"] == "0"
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    # A different key has its own budget.
    other = client.post(
        "/generate",
        json={"prompt": "hi", "max_tokens": 1},
        headers={"Authorization": "Bearer key-two"},
    )
    assert other.status_code == 200
    assert other.headers["RateLimit-Limit"] == "60"
    assert other.headers["RateLimit-Remaining"] == "59"


def test_request_ids_are_the_servers_and_the_clients_is_kept_beside(
    client: TestClient,
) -> None:
    """docs/spec.md, Every response: `X-Request-ID` is always the server's own id, so a
    client cannot choose another request's; the client's id comes back beside it."""
    made = client.get("/health").headers
    assert len(made["X-Request-ID"]) == 32 and "X-Client-Request-ID" not in made
    first = client.get("/health", headers={"X-Request-ID": made["X-Request-ID"]})
    assert first.headers["X-Request-ID"] != made["X-Request-ID"]
    assert first.headers["X-Client-Request-ID"] == made["X-Request-ID"]
    second = client.get("/health", headers={"X-Client-Request-ID": "abc-123"})
    assert second.headers["X-Client-Request-ID"] == "abc-123"
    bad = client.get("/health", headers={"X-Request-ID": "x" * 129})
    assert "X-Client-Request-ID" not in bad.headers


def test_oversized_body_gets_413_before_the_model(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str]
) -> None:
    spec = gpt2_spec(tiny_gpt2)
    spec["routes"][0]["max_bytes"] = 100
    client = client_for(build_and_import(write_spec(tmp_path, spec), tmp_path / "b"))
    r = client.post("/generate", json={"prompt": "x" * 200}, headers={**AUTH, "Origin": ORIGIN})
    assert r.status_code == 413
    assert r.json()["error"] == "request body too large"
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN

    def chunks() -> Any:
        for _ in range(10):
            yield b"x" * 50

    r = client.post(
        "/generate", content=chunks(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 413


def test_model_failure_is_a_500_without_a_stack_trace(gpt2_module: ModuleType) -> None:
    model = gpt2_module.model.load()
    assert model.status == "ready", model.error

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory at /secret/path")

    model.engine.generate = broken
    client = TestClient(gpt2_module.create_app(model))
    r = client.post("/generate", json={"prompt": "hi"}, headers={**AUTH, "Origin": ORIGIN})
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error", "request_id": r.headers["X-Request-ID"]}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN


def test_a_model_that_fails_to_load_answers_503(tmp_path: Path, env_keys: list[str]) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    spec = gpt2_spec(broken)
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "b")
    model = module.model.load()
    assert model.status == "failed"
    client = TestClient(module.create_app(model))
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json()["status"] == "failed" and health.json()["error"]
    r = client.post("/generate", json={"prompt": "hi"}, headers=AUTH)
    assert r.status_code == 503
    assert "Traceback" not in r.text


def test_health_is_503_while_loading(gpt2_module: ModuleType) -> None:
    assert gpt2_module.model.status == "loading"
    client = TestClient(gpt2_module.create_app(gpt2_module.model))
    assert client.get("/health").status_code == 503
    assert client.post("/generate", json={"prompt": "hi"}, headers=AUTH).status_code == 503


def test_stream_sends_token_events_then_totals(client: TestClient) -> None:
    with client.stream(
        "POST",
        "/generate/stream",
        json={"prompt": "Hello", "max_tokens": 6, "seed": 1},
        headers=AUTH,
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = r.read().decode()
    events = [block for block in text.split("\n\n") if block]
    parsed = [
        (
            e.split("\n")[0].removeprefix("event: "),
            json.loads(e.split("\n")[1].removeprefix("data: ")),
        )
        for e in events
    ]
    assert parsed[-1][0] == "done"
    tokens = [data["text"] for kind, data in parsed if kind == "token"]
    assert tokens, "at least one token event"
    assert "".join(tokens) == parsed[-1][1]["text"]
    assert parsed[-1][1]["tokens_generated"] <= 6
    plain = generate(client, prompt="Hello", max_tokens=6, seed=1).json()
    assert plain["text"] == parsed[-1][1]["text"]


def test_openapi_lists_routes_and_schemas(client: TestClient) -> None:
    """The document is behind the app's auth (spec.md, `docs`)."""
    assert client.get("/openapi.json").status_code == 401
    doc = client.get("/openapi.json", headers=AUTH).json()
    assert {"/generate", "/generate/stream", "/health"} <= set(doc["paths"])
    assert "GenerateRequest" in doc["components"]["schemas"]
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
