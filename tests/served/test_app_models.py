"""Embeddings (the real all-MiniLM-L6-v2) and classification (a tiny BERT), batched or not."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from conftest import build_and_import, write_spec
from fastapi.testclient import TestClient

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": "key-one"}


def embed_spec(
    model_dir: Path, batching: dict[str, int] | None = None, **route: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "embedder",
        "model": {"id": str(model_dir), "task": "embeddings"},
        "auth": {"mode": "api_key"},
        "routes": [
            {"path": "/embed", "method": "POST", "action": "embed", **route},
            {"path": "/health", "action": "health"},
        ],
    }
    if batching:
        spec["batching"] = batching
    return spec


def classify_spec(model_dir: Path, batching: dict[str, int] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "classifier",
        "model": {"id": str(model_dir), "task": "text-classification"},
        "auth": {"mode": "api_key"},
        "routes": [{"path": "/classify", "method": "POST", "action": "classify", "max_items": 4}],
    }
    if batching:
        spec["batching"] = batching
    return spec


def loaded(tmp_path: Path, spec: dict[str, Any]) -> tuple[ModuleType, Any]:
    """The built module and its model (`module.model`), loaded."""
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "build")
    model = module.model.load()
    assert model.status == "ready", model.error
    return module, model


@pytest.fixture(scope="module")
def minilm_module(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> tuple[ModuleType, Any]:
    return loaded(tmp_path_factory.mktemp("minilm"), embed_spec(minilm, max_items=8))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_are_normalised_and_semantic(
    minilm_module: tuple[ModuleType, Any], env_keys: list[str]
) -> None:
    """docs/spec.md, Routes (`embed`): `{texts}` gives `{embeddings, dim}`, each vector
    L2-normalised, similar texts closer."""
    module, model = minilm_module
    client = TestClient(module.create_app(model))
    texts = [
        "A man is playing a guitar.",
        "Someone strums an acoustic guitar on stage.",
        "The stock market fell sharply on Tuesday.",
    ]
    r = client.post("/embed", json={"texts": texts}, headers=KEY)
    assert r.status_code == 200
    body = r.json()
    assert body["dim"] == 384
    vectors = body["embeddings"]
    assert len(vectors) == 3
    for v in vectors:
        assert math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3


def test_embed_limits_are_enforced_before_the_model(
    minilm_module: tuple[ModuleType, Any], env_keys: list[str]
) -> None:
    """docs/spec.md, Routes (`max_items`): an embed route refuses more texts than its `max_items`
    with 422."""
    module, model = minilm_module
    client = TestClient(module.create_app(model))
    assert client.post("/embed", json={"texts": ["a"] * 9}, headers=KEY).status_code == 422
    assert client.post("/embed", json={"texts": []}, headers=KEY).status_code == 422
    assert (
        client.post("/embed", json={"texts": ["a"]}, headers={"X-API-Key": "nope"}).status_code
        == 401
    )
    assert client.post("/embed", json={"texts": ["a"]}).status_code == 401


async def _concurrent(app: Any, path: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await asyncio.gather(*(client.post(path, json=b, headers=KEY) for b in bodies))


def test_batched_embeddings_equal_single_ones(
    tmp_path: Path, minilm: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Top level (`batching`): concurrent `embed` requests are gathered into batched
    model calls, and each result equals the unbatched one to within 1e-6."""
    module, model = loaded(tmp_path, embed_spec(minilm, {"max_batch_size": 16, "wait_ms": 50}))
    calls: list[int] = []
    run = model.engine.__call__

    def counting(texts: list[str]) -> Any:
        calls.append(len(texts))
        return run(texts)

    model.serve(counting)  # answer through the counting engine, batched as the spec says
    app = module.create_app(model)
    sentences = [f"sentence number {i} about {'cats' if i % 2 else 'finance'}" for i in range(12)]
    responses = asyncio.run(_concurrent(app, "/embed", [{"texts": [s]} for s in sentences]))
    assert all(r.status_code == 200 for r in responses)
    assert max(calls) > 1, f"requests were not gathered into batches: {calls}"
    single = [run([s])[0] for s in sentences]
    for r, expected in zip(responses, single, strict=True):
        got = r.json()["embeddings"][0]
        assert (
            max(abs(a - b) for a, b in zip(got, expected, strict=True)) < 1e-6
        )  # docs/spec.md, Top level: `batching`


def test_classify_one_and_many(tmp_path: Path, tiny_bert: Path, env_keys: list[str]) -> None:
    """docs/spec.md, Routes (`classify`): `{text}` gives `{label, score}`, `{texts: [...]}` a list
    of them."""
    module, model = loaded(tmp_path, classify_spec(tiny_bert))
    client = TestClient(module.create_app(model))
    one = client.post("/classify", json={"text": "what a lovely day"}, headers=KEY)
    assert one.status_code == 200
    assert one.json()["label"] in {"negative", "neutral", "positive"}
    assert 0 < one.json()["score"] <= 1
    many = client.post("/classify", json={"texts": ["good", "bad", "fine"]}, headers=KEY)
    assert many.status_code == 200
    assert len(many.json()) == 3
    assert client.post("/classify", json={"texts": ["a"] * 5}, headers=KEY).status_code == 422
    assert (
        client.post("/classify", json={"text": "a", "texts": ["b"]}, headers=KEY).status_code == 422
    )
    assert client.post("/classify", json={}, headers=KEY).status_code == 422


def test_batched_classification_isolates_a_failing_input(
    tmp_path: Path, tiny_bert: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Top level (`batching`): concurrent `classify` requests are batched; when a
    batched call fails each request is retried alone, so only the failing input's request gets a
    500 and the others get their unbatched answers."""
    module, model = loaded(tmp_path, classify_spec(tiny_bert, {"max_batch_size": 8, "wait_ms": 50}))
    run = model.engine

    def fragile(texts: list[str]) -> Any:
        if "poison" in texts:
            raise ValueError("cannot classify poison")
        return run(texts)

    model.serve(fragile)  # answer through the fragile engine, batched as the spec says
    app = module.create_app(model)
    bodies = [{"text": t} for t in ("good", "poison", "bad", "fine")]
    responses = asyncio.run(_concurrent(app, "/classify", bodies))
    assert [r.status_code for r in responses] == [200, 500, 200, 200]
    assert responses[1].json()["error"] == "internal server error"
    for body, r in zip(bodies, responses, strict=True):
        if r.status_code == 200:
            assert r.json() == run([body["text"]])[0] | {"score": pytest.approx(r.json()["score"])}


def test_max_items_is_128_unless_the_route_says(
    tmp_path: Path, tiny_bert: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Routes (`max_items`): a classify route without `max_items` takes up to
    128 texts a request; 129 are a 422 naming `texts`, refused before any model work."""
    spec = classify_spec(tiny_bert)
    del spec["routes"][0]["max_items"]
    module, model = loaded(tmp_path, spec)
    calls: list[int] = []
    run = model.engine

    def counting(texts: list[str]) -> Any:
        calls.append(len(texts))
        return run(texts)

    model.serve(counting)
    client = TestClient(module.create_app(model))
    full = client.post("/classify", json={"texts": ["good"] * 128}, headers=KEY)
    assert full.status_code == 200 and len(full.json()) == 128
    over = client.post("/classify", json={"texts": ["good"] * 129}, headers=KEY)
    assert over.status_code == 422
    assert over.json()["detail"][0]["loc"] == ["body", "texts"]
    assert calls == [128]


@pytest.mark.parametrize(
    ("pooling", "normalize"),
    [("cls", True), ("mean", False), ("max", True), ("lasttoken", True)],
)
def test_embeddings_pool_as_the_models_sentence_transformers_config_says(
    tmp_path: Path, env_keys: list[str], pooling: str, normalize: bool
) -> None:
    """docs/spec.md, Routes (`embed`): a model in sentence-transformers' layout is pooled
    as its `1_Pooling/config.json` says (CLS for BGE-style models, not mean) and
    normalised only when `modules.json` has a Normalize module: the served vectors equal
    sentence-transformers' own for the same weights."""
    from models import make_tiny_sentence_encoder
    from sentence_transformers import SentenceTransformer

    folder = make_tiny_sentence_encoder(tmp_path / "encoder", pooling, normalize)
    texts = ["The quick brown fox.", "Hello world! Serving models over HTTP is easy."]
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts).tolist()
    module, model = loaded(tmp_path, embed_spec(folder))
    client = TestClient(module.create_app(model))
    got = client.post("/embed", json={"texts": texts}, headers=KEY).json()["embeddings"]
    for ours, theirs in zip(got, expected, strict=True):
        assert max(abs(a - b) for a, b in zip(ours, theirs, strict=True)) < 1e-5
    assert math.isclose(sum(x * x for x in got[0]), 1.0, rel_tol=1e-5) is normalize
    if pooling != "mean":  # the test can fail: mean pooling gives other vectors
        mean = SentenceTransformer(str(make_tiny_sentence_encoder(tmp_path / "m", "mean")))
        assert max(abs(a - b) for a, b in zip(got[0], mean.encode(texts)[0], strict=True)) > 1e-3
