"""`rerank`'s `truncate` and `truncation_direction` (Text Embeddings Inference's): a
text too long for the cross-encoder is cut from the side asked, or refused with a 422
when `truncate` is false. A real `endpointgen serve` of a tiny cross-encoder (256
positions, a tokenizer that states no `model_max_length`, weights drawn wide enough that
which tokens it reads moves its logit), each score checked against the model run by hand
on the pair cut here."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_spec
from models import make_tiny_cross_encoder
from servers import Server

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": "key-one"}
POSITIONS = 256  # the tiny cross-encoder's max_position_embeddings
QUERY = "Where does the code run?"
SHORT = "Modal runs your code in the cloud with GPUs."
# Its start and its end differ, so a cut from the left scores unlike one from the right.
LONG = "Modal runs your code in the cloud with GPUs. " * 12 + "The lazy dog sleeps. " * 20


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Its logits move with its input: at BERT's usual 0.02, every pair scores -0.0088."""
    folder = tmp_path_factory.mktemp("models") / "wide-reranker"
    return make_tiny_cross_encoder(folder, initializer_range=0.5)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_cross_encoder: Path) -> Iterator[Server]:
    spec = {
        "name": "reranker",
        "model": {"id": str(tiny_cross_encoder), "task": "rerank"},
        "auth": {"mode": "api_key"},
        "batching": {"max_batch_size": 64, "wait_ms": 50},
        "metrics": {"enabled": True, "public": True},
        "routes": [{"path": "/rerank", "method": "POST", "action": "rerank"}],
    }
    running = Server(write_spec(tmp_path_factory.mktemp("reranker"), spec))
    running.wait_ready()
    yield running
    running.stop()


def rerank(server: Server, **body: Any) -> httpx.Response:
    body = {"query": QUERY, "raw_scores": True, **body}
    return httpx.post(server.url + "/rerank", json=body, headers=KEY, timeout=60)


def logits(server: Server, **body: Any) -> list[float]:
    """Each text's logit, in the request's order."""
    answer = rerank(server, **body)
    assert answer.status_code == 200, answer.text
    return [r["score"] for r in sorted(answer.json(), key=lambda r: r["index"])]


def batches(server: Server) -> float:
    """How many batched model calls the server has made (its `/metrics`)."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(float(n) for n in re.findall(r"^endpointgen_batch_size_count\S* (\S+)$", text, re.M))


def by_hand(path: Path, query: str, text: str, side: str | None) -> float:
    """The pair's logit from the model itself: query then text, the text cut to fit the
    model's positions from `side` (None: not cut)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    q = tokenizer(query, add_special_tokens=False)["input_ids"]
    t = tokenizer(text, add_special_tokens=False)["input_ids"]
    room = POSITIONS - len(q)
    if side == "right":
        t = t[:room]
    elif side == "left":
        t = t[len(t) - room :]
    assert len(q) + len(t) <= POSITIONS
    with torch.inference_mode():
        return float(model(input_ids=torch.tensor([q + t])).logits[0, 0])


def test_truncate_cuts_from_the_side_asked(server: Server, tiny_cross_encoder: Path) -> None:
    """docs/spec.md, Routes (`rerank`): with `truncate: true` a text longer than the model
    reads (with the query) is cut to its length, from the right or, with
    `truncation_direction: Left`, the left; a text that fits is not cut either way."""
    texts = [SHORT, LONG]
    right = logits(server, texts=texts, truncate=True)
    left = logits(server, texts=texts, truncate=True, truncation_direction="Left")
    assert right[0] == pytest.approx(by_hand(tiny_cross_encoder, QUERY, SHORT, None), abs=1e-4)
    assert left[0] == pytest.approx(right[0], abs=1e-5)
    assert right[1] == pytest.approx(by_hand(tiny_cross_encoder, QUERY, LONG, "right"), abs=1e-4)
    assert left[1] == pytest.approx(by_hand(tiny_cross_encoder, QUERY, LONG, "left"), abs=1e-4)
    assert abs(left[1] - right[1]) > 0.1  # the two cuts kept different tokens
    lower = logits(server, texts=texts, truncate=True, truncation_direction="left")
    assert lower == pytest.approx(left, abs=1e-5)  # TEI takes either spelling


def test_unset_truncate_cuts_at_the_right(server: Server) -> None:
    """docs/spec.md, Routes (`rerank`): `truncate` unset (or null) cuts as TEI's default
    `--auto-truncate` does, from `truncation_direction` (default right): a model whose
    tokenizer states no limit is cut at its position embeddings, not failed."""
    texts = [SHORT, LONG]
    assert logits(server, texts=texts) == pytest.approx(
        logits(server, texts=texts, truncate=True), abs=1e-5
    )
    assert logits(server, texts=texts, truncate=None, truncation_direction="Left") == (
        pytest.approx(logits(server, texts=texts, truncate=True, truncation_direction="Left"))
    )


def test_truncate_false_refuses_a_text_too_long(server: Server, tiny_cross_encoder: Path) -> None:
    """docs/spec.md, Routes (`rerank`): with `truncate: false` a text that, with the query,
    is longer than the model reads is a 422 on `texts` naming the text and its length (as
    TEI's "Input validation error"); texts that fit answer as they do when cut."""
    from transformers import AutoTokenizer

    answer = rerank(server, texts=[SHORT, LONG, SHORT], truncate=False)
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    length = len(AutoTokenizer.from_pretrained(tiny_cross_encoder)(QUERY, LONG)["input_ids"])
    assert problem["loc"] == ["body", "texts"]
    assert problem["msg"].startswith(f"texts[1]: {length} tokens with the query")
    assert f"at most {POSITIONS}" in problem["msg"] and "`truncate: true`" in problem["msg"]
    fits = logits(server, texts=[SHORT, SHORT], truncate=False)
    assert fits == pytest.approx(logits(server, texts=[SHORT, SHORT]), abs=1e-5)


def test_batched_requests_keep_their_own_truncation(server: Server) -> None:
    """docs/spec.md, Top level (`batching`): concurrent rerank requests batched together
    each keep their own `truncate` and `truncation_direction`: each answers as it does
    alone, and a refused one fails alone."""
    asks: list[dict[str, Any]] = [
        {"texts": [LONG, SHORT], "truncate": True, "truncation_direction": "Left"},
        {"texts": [LONG, SHORT], "truncate": True, "truncation_direction": "Right"},
        {"texts": [SHORT, LONG], "truncate": False},
        {"texts": [SHORT], "truncate": False},
    ] * 4
    alone = [rerank(server, **ask) for ask in asks]
    before = batches(server)
    with ThreadPoolExecutor(len(asks)) as pool:
        together = list(pool.map(lambda ask: rerank(server, **ask), asks))
    assert 0 < batches(server) - before < len(asks)  # some requests shared a model call
    for one, other in zip(alone, together, strict=True):
        assert one.status_code == other.status_code
        if one.status_code == 200:
            assert [r["index"] for r in one.json()] == [r["index"] for r in other.json()]
            assert [r["score"] for r in one.json()] == pytest.approx(
                [r["score"] for r in other.json()], abs=1e-4
            )
    assert [a.status_code for a in together[:4]] == [200, 200, 422, 200]


@pytest.mark.parametrize(
    "body",
    [
        {"texts": [SHORT], "truncation_direction": "Up"},
        {"texts": [SHORT], "truncate": "yes"},
    ],
)
def test_wrong_truncation_keys_are_422s(server: Server, body: dict[str, Any]) -> None:
    answer = rerank(server, **body)
    assert answer.status_code == 422, answer.text
