"""Rerank, zero-shot classification and named entities: specs/search.yaml served by a real
`endpointgen serve` (uvicorn) on tiny random-weight models made here, each answer checked
against transformers itself (the pipeline, or the cross-encoder's own logits)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import SPECS, build_and_import, write_spec
from models import make_tiny_cross_encoder, make_tiny_ner, make_tiny_nli
from servers import Server

from endpointgen.compiler import pipeline

KEY = {"X-API-Key": "key-one"}
PASSAGES = [
    "The quick brown fox jumps over the lazy dog.",
    "Modal runs your code in the cloud with GPUs.",
    "Tokens stream back to the client one by one.",
    "A spec describes routes, auth, rate limits and CORS.",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("task-models")
    return {
        "reranker": make_tiny_cross_encoder(root / "reranker"),
        "labeler": make_tiny_nli(root / "labeler"),
        "tagger": make_tiny_ner(root / "tagger"),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]) -> Iterator[Server]:
    spec = yaml.safe_load((SPECS / "search.yaml").read_text())
    for name, path in models.items():
        spec["models"][name]["id"] = str(path)
    spec.pop("rate_limit")
    folder = tmp_path_factory.mktemp("search")
    running = Server(write_spec(folder, spec))
    running.wait_ready()
    yield running
    running.stop()


def post(server: Server, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=KEY, timeout=60)


def cross_encoder_logits(path: Path, query: str, texts: list[str]) -> list[float]:
    """Each pair through the model alone: the oracle for served scores."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    out = []
    for text in texts:
        with torch.inference_mode():
            logits = model(**tokenizer(query, text, return_tensors="pt")).logits
        out.append(float(logits[0, 0]))
    return out


@pytest.mark.slow
def test_rerank_sorts_texts_by_the_cross_encoders_score(
    server: Server, models: dict[str, Path]
) -> None:
    """docs/spec.md, Routes (`rerank`): a query and texts give each text's index and
    score, best first; `top_n` keeps the best N, `return_text` adds the text, and
    `raw_scores` gives logits instead of their sigmoid."""
    query = "Where does the code run?"
    logits = cross_encoder_logits(models["reranker"], query, PASSAGES)
    order = sorted(range(len(PASSAGES)), key=lambda i: -logits[i])
    r = post(server, "/rerank", {"query": query, "texts": PASSAGES})
    assert r.status_code == 200, r.text
    ranked = r.json()
    assert [item["index"] for item in ranked] == order
    for item in ranked:
        expected = 1 / (1 + math.exp(-logits[item["index"]]))
        assert item["score"] == pytest.approx(expected, abs=1e-5)
        assert item["text"] is None
    body = {"query": query, "texts": PASSAGES, "top_n": 2, "return_text": True}
    best = post(server, "/rerank", {**body, "raw_scores": True}).json()
    assert [b["index"] for b in best] == order[:2]
    assert best[0]["text"] == PASSAGES[order[0]]
    assert best[0]["score"] == pytest.approx(logits[order[0]], abs=1e-5)


@pytest.mark.slow
def test_zero_shot_scores_every_label_as_the_pipeline_does(
    server: Server, models: dict[str, Path]
) -> None:
    """docs/spec.md, Routes (`classify`): on a zero-shot-classification model, `classify`
    takes `labels` (and `multi_label`, `hypothesis_template`) and answers the best label
    and every label's score, best first, as transformers' pipeline does."""
    from transformers import pipeline as hf_pipeline

    oracle = hf_pipeline("zero-shot-classification", model=str(models["labeler"]))
    labels = ["animal", "cloud computing", "sports"]
    for multi in (False, True):
        body = {"texts": PASSAGES[:2], "labels": labels, "multi_label": multi}
        r = post(server, "/labels", body)
        assert r.status_code == 200, r.text
        for answer, text in zip(r.json(), PASSAGES[:2], strict=True):
            expected = oracle(text, candidate_labels=labels, multi_label=multi)
            assert answer["labels"] == expected["labels"]
            assert answer["scores"] == pytest.approx(expected["scores"], abs=1e-5)
            assert (answer["label"], answer["score"]) == (answer["labels"][0], answer["scores"][0])
    one = post(server, "/labels", {"text": PASSAGES[0], "labels": ["a", "b"]}).json()
    assert set(one) == {"label", "score", "labels", "scores"}
    assert sum(one["scores"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"text": "hi", "labels": []}, "labels"),
        ({"text": "hi", "labels": ["a", "a"]}, "a label twice"),
        ({"text": "hi", "labels": ["a"], "hypothesis_template": "no slot"}, "hypothesis_template"),
        ({"labels": ["a"]}, "either `text` or `texts`"),
    ],
)
@pytest.mark.slow
def test_zero_shot_mistakes_are_422s(server: Server, body: dict[str, Any], field: str) -> None:
    r = post(server, "/labels", body)
    assert r.status_code == 422 and field in r.text, r.text


@pytest.mark.slow
def test_entities_are_the_pipelines_grouped_spans(server: Server, models: dict[str, Path]) -> None:
    """docs/spec.md, Routes (`classify`): on a token-classification model, `classify`
    answers `entities`: typed spans with their score, text and character offsets, tokens of
    one entity grouped as transformers' `simple` aggregation groups them."""
    from transformers import pipeline as hf_pipeline

    oracle = hf_pipeline("token-classification", model=str(models["tagger"]))
    r = post(server, "/entities", {"texts": PASSAGES})
    assert r.status_code == 200, r.text
    for answer, text in zip(r.json(), PASSAGES, strict=True):
        expected = oracle(text, aggregation_strategy="simple")
        got = answer["entities"]
        assert [(e["entity_group"], e["start"], e["end"]) for e in got] == [
            (e["entity_group"], e["start"], e["end"]) for e in expected
        ]
        assert [e["score"] for e in got] == pytest.approx([float(e["score"]) for e in expected])
        assert all(e["word"].strip() in text for e in got)


@pytest.mark.slow
def test_concurrent_requests_answer_as_they_would_alone(server: Server) -> None:
    """docs/spec.md, Top level (`batching`): the three models batch concurrent requests,
    and every answer equals the one the request gets alone."""
    calls = (
        [("/rerank", {"query": f"query {i}", "texts": PASSAGES[i % 3 :]}) for i in range(8)]
        + [
            ("/labels", {"text": PASSAGES[i % 4], "labels": ["x", "y", f"z{i % 2}"]})
            for i in range(8)
        ]
        + [("/entities", {"text": PASSAGES[i % 4]}) for i in range(8)]
    )
    alone = [post(server, p, b).json() for p, b in calls]
    with ThreadPoolExecutor(24) as pool:
        together = list(pool.map(lambda c: post(server, *c).json(), calls))
    for a, b in zip(alone, together, strict=True):
        assert yaml.safe_dump(a) == yaml.safe_dump(b) or _close(a, b)


def _close(a: Any, b: Any) -> bool:
    """Equal but for float sums that padding moves in the last digits."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, abs_tol=1e-5)
    return bool(a == b)


@pytest.mark.slow
def test_openapi_documents_each_tasks_schemas(server: Server) -> None:
    doc = httpx.get(server.url + "/openapi.json", headers=KEY, timeout=30).json()
    schemas = doc["components"]["schemas"]
    assert {"RerankRequest", "Ranked", "ZeroShotRequest", "ZeroShotResult", "Entities"} <= set(
        schemas
    )
    assert set(schemas["RerankRequest"]["properties"]) == {
        "query",
        "texts",
        "top_n",
        "return_text",
        "raw_scores",
        "truncate",
        "truncation_direction",
    }


def test_actions_and_tasks_must_match(tmp_path: Path) -> None:
    """docs/spec.md, Model (`task`): `rerank` needs a rerank model, and `classify` one of
    the classification tasks; a mismatch is refused at its place."""
    spec = {
        "name": "mixed",
        "model": {"id": "org/reranker", "task": "rerank"},
        "auth": {"mode": "api_key"},
        "routes": [{"path": "/c", "method": "POST", "action": "classify"}],
    }
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert "`classify` needs a text-classification, zero-shot-classification or " in str(problem)
    spec["routes"] = [{"path": "/r", "method": "POST", "action": "rerank"}]
    spec["model"]["task"] = "text-classification"
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert "`rerank` needs a rerank model, but model.task is text-classification" in str(problem)


def png(color: str, size: tuple[int, int] = (40, 30)) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


@pytest.mark.slow
def test_image_and_text_embeddings_share_one_space(tmp_path: Path, env_keys: list[str]) -> None:
    """docs/spec.md, Routes (`embed`): on an image-text-embeddings model (CLIP), `embed`
    gives texts' vectors and an `upload` with `processor: image-embeddings` an image's,
    L2-normalised in the same space: the model's own text and image features."""
    import io

    import torch
    from fastapi.testclient import TestClient
    from models import make_tiny_clip
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    from endpointgen.local.serve import load_app

    path = make_tiny_clip(tmp_path / "clip")
    spec = {
        "name": "clip",
        "model": {"id": str(path), "task": "image-text-embeddings"},
        "auth": {"mode": "api_key"},
        "batching": {"max_batch_size": 16, "wait_ms": 5},
        "routes": [
            {"path": "/embed", "method": "POST", "action": "embed"},
            {
                "path": "/image",
                "method": "POST",
                "action": "upload",
                "processor": "image-embeddings",
                "max_upload_pixels": 10_000,
            },
        ],
    }
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    client = TestClient(load_app(module, say=lambda _: None))
    model = CLIPModel.from_pretrained(path).eval()
    tokenizer, processor = (
        AutoTokenizer.from_pretrained(path),
        AutoImageProcessor.from_pretrained(path),
    )
    texts = ["a red square", "a blue sky"]
    with torch.inference_mode():
        text_features = model.get_text_features(
            **tokenizer(texts, padding=True, return_tensors="pt")
        )
        image = Image.open(io.BytesIO(png("red"))).convert("RGB")
        image_features = model.get_image_features(**processor(images=[image], return_tensors="pt"))

    def norm(found: Any, dim: int) -> Any:  # a tensor, or an output holding it
        return torch.nn.functional.normalize(getattr(found, "pooler_output", found), dim=dim)

    r = client.post("/embed", json={"texts": texts}, headers=KEY)
    assert r.status_code == 200, r.text
    assert r.json()["dim"] == 16
    for got, want in zip(r.json()["embeddings"], norm(text_features, dim=-1).tolist(), strict=True):
        assert got == pytest.approx(want, abs=1e-5)
    files = {"file": ("red.png", png("red"), "image/png")}
    r = client.post("/image", files=files, headers=KEY)
    assert r.status_code == 200, r.text
    assert r.json()["embedding"] == pytest.approx(
        norm(image_features, dim=-1)[0].tolist(), abs=1e-5
    )
    big = {"file": ("big.png", png("red", (200, 100)), "image/png")}
    assert client.post("/image", files=big, headers=KEY).status_code == 413
