"""The built gpt2 app, driven over HTTP with a real (tiny) GPT-2: what a client sees."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import build_and_import, gpt2_spec, write_spec
from fastapi.testclient import TestClient

from endpointgen.local.serve import load_app

pytestmark = pytest.mark.slow

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
    """docs/spec.md, Top level (`model`): the app serves the spec's model.
    docs/spec.md, Routes (`health`): once it is loaded, `/health` answers 200 with the model, a
    local one named by its folder, and its task."""
    r = client.get("/health")
    assert r.status_code == 200
    # A local model is named by its folder: no path of this machine in an answer.
    assert r.json() == {"status": "ok", "model": tiny_gpt2.name, "task": "text-generation"}


def test_generate_returns_text_and_counts(client: TestClient) -> None:
    """docs/spec.md, Routes (`generate`): the answer is
    `{text, tokens_generated, finish_reason}`."""
    r = generate(client, max_tokens=8, seed=3)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"text", "tokens_generated", "finish_reason"}
    assert isinstance(body["text"], str)
    assert 1 <= body["tokens_generated"] <= 8
    assert body["finish_reason"] in ("length", "stop")


def test_seed_makes_sampling_reproducible(client: TestClient) -> None:
    """docs/spec.md, Routes (`generate`): the same `seed` gives the same text."""
    first = generate(client, max_tokens=12, seed=7, temperature=1.5).json()
    assert generate(client, max_tokens=12, seed=7, temperature=1.5).json() == first
    others = {
        generate(client, max_tokens=12, seed=s, temperature=1.5).json()["text"]
        for s in range(8, 14)
    }
    assert len(others | {first["text"]}) > 1, "different seeds should give different text"


def test_temperature_zero_is_greedy(client: TestClient) -> None:
    """docs/spec.md, Routes (`generate`): `temperature: 0` is greedy."""
    outs = {generate(client, max_tokens=10, temperature=0).json()["text"] for _ in range(3)}
    assert len(outs) == 1


def test_stop_strings_cut_the_text(client: TestClient) -> None:
    """docs/spec.md, Routes (`generate`): a `stop` string ends the text, with `finish_reason`
    `stop`."""
    full = generate(client, max_tokens=20, temperature=0).json()
    assert len(full["text"]) > 2
    stop = full["text"][1:3]
    cut = generate(client, max_tokens=20, temperature=0, stop=[stop]).json()
    assert cut["finish_reason"] == "stop"
    assert stop not in cut["text"]
    assert full["text"].startswith(cut["text"])


def test_route_ceiling_on_max_tokens_and_prompt(client: TestClient) -> None:
    """docs/spec.md, Routes (`max_tokens`, `max_chars`): by default a generate route refuses
    `max_tokens` over 1024, and a prompt over 20000 characters, with 422."""
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
    """docs/spec.md, Top level (`cors`): with `cors` set, an allowed origin gets the CORS headers on
    200, 401 and 422 answers, and a preflight needs no auth; another origin gets none."""
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
    """docs/spec.md, Routes (`max_bytes`): a body over the route's `max_bytes`, with or without a
    Content-Length, is a 413."""
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

    model.engine.model.forward = broken  # fails inside the decode loop (the spec batches)
    client = TestClient(gpt2_module.create_app(model))
    r = client.post("/generate", json={"prompt": "hi"}, headers={**AUTH, "Origin": ORIGIN})
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error", "request_id": r.headers["X-Request-ID"]}
    assert "secret" not in r.text and "Traceback" not in r.text
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    del model.engine.model.forward  # the model recovers: the loop goes on
    r = client.post("/generate", json={"prompt": "hi"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["tokens_generated"] > 0


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
    """docs/spec.md, Routes (`health`): 503 before the model is loaded."""
    assert gpt2_module.model.status == "loading"
    client = TestClient(gpt2_module.create_app(gpt2_module.model))
    assert client.get("/health").status_code == 503
    assert client.post("/generate", json={"prompt": "hi"}, headers=AUTH).status_code == 503


def test_stream_sends_token_events_then_totals(client: TestClient) -> None:
    """docs/spec.md, Routes (`generate`): with `stream: true`, `event: token` with the text as it
    arrives, then `event: done` with the totals."""
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


def test_cors_is_off_unless_the_spec_sets_it(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Top level (`cors`): off by default: without `cors`, no origin is
    allowed, so a browser on another site can neither read an answer nor pass a
    preflight."""
    spec = gpt2_spec(tiny_gpt2)
    del spec["cors"]
    client = client_for(build_and_import(write_spec(tmp_path, spec), tmp_path / "b"))
    r = client.post(
        "/generate", json={"prompt": "hi", "max_tokens": 1}, headers={**AUTH, "Origin": ORIGIN}
    )
    assert r.status_code == 200
    assert not any(h.lower().startswith("access-control-") for h in r.headers)
    preflight = client.options(
        "/generate", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers


def test_a_model_id_is_a_hub_repo_or_a_folder_next_to_the_spec(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Model (`id`): an id that names an existing directory next to the spec
    (relative to the spec file, not to where the command runs) is that local model, copied
    into the image at `/model` and named by its folder; an id with no such folder is a
    Hugging Face repo id."""
    specs = tmp_path / "specs"
    shutil.copytree(tiny_gpt2, specs / "weights" / "tiny")
    spec = gpt2_spec(tiny_gpt2)
    for local_id in ("weights/tiny", "./weights/tiny"):
        spec["model"]["id"] = local_id
        module = build_and_import(write_spec(specs, spec), tmp_path / "b")
        assert module.MODEL_DIR.local == specs / "weights" / "tiny"
        assert module.MODEL_DIR.remote == "/model"
        health = client_for(module).get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["model"] == "tiny"
    spec["model"]["id"] = "org/tiny"  # no such folder beside the spec: the Hub
    module = build_and_import(write_spec(specs, spec), tmp_path / "b")
    assert not hasattr(module, "MODEL_DIR") and module.model.path is None
    assert module.model.name == "org/tiny"


@pytest.mark.parametrize(
    ("saved", "dtype", "loaded"),
    [
        ("float32", "auto", "float32"),
        ("bfloat16", "auto", "bfloat16"),
        ("bfloat16", "float32", "float32"),
        ("float32", "bfloat16", "bfloat16"),
        ("float32", "float16", "float16 on a GPU, else float32"),
    ],
)
def test_dtype_sets_how_the_weights_load(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str], saved: str, dtype: str, loaded: str
) -> None:
    """docs/spec.md, Model (`dtype`): `auto` loads the checkpoint's own dtype, `float32`,
    `float16` and `bfloat16` load that one; `float16` on a machine without a GPU loads
    `float32`."""
    import torch
    from transformers import AutoModelForCausalLM

    weights = tmp_path / "weights"
    shutil.copytree(tiny_gpt2, weights)
    if saved != "float32":
        checkpoint = AutoModelForCausalLM.from_pretrained(tiny_gpt2, dtype=getattr(torch, saved))
        checkpoint.save_pretrained(weights)
    spec = gpt2_spec(weights)
    spec["model"]["dtype"] = dtype
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "b")
    model = module.model.load()
    assert model.status == "ready", model.error
    if loaded.startswith("float16"):
        loaded = "float16" if torch.cuda.is_available() else "float32"
    assert model.engine.model.dtype == getattr(torch, loaded)
    client = TestClient(module.create_app(model))
    assert generate(client, max_tokens=2).status_code == 200
