"""Batched text generation: concurrent requests share forward passes, and each gets what
it would have got alone (`endpointgen/runtime/text/batcher.py`)."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import build_and_import, gpt2_spec, write_spec
from fastapi.testclient import TestClient
from models import make_tiny_llama, make_tiny_t5

from endpointgen.local.serve import load_app
from endpointgen.runtime.tasks import GenerateRequest
from endpointgen.runtime.text.transformers import TextGenerator

pytestmark = pytest.mark.slow

AUTH = {"Authorization": "Bearer key-one"}
PROMPTS = [
    "Hello",
    "The quick brown fox jumps over",
    "Tokens stream back to the client one by one and",
    "0123",
    "A spec describes routes, auth, rate limits and CORS. Modal runs your code",
    "Hi",
]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


class Steps:
    """What the decode loop reports: each forward pass's rows."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def __call__(self, rows: int, seconds: float) -> None:
        self.sizes.append(rows)


def engines(source: Path, size: int = 8) -> tuple[TextGenerator, TextGenerator, Steps]:
    """The same model twice: one generating alone, one batching up to `size` rows."""
    alone = TextGenerator(source, None, "auto")
    batched = TextGenerator(source, None, "auto")
    steps = Steps()
    assert batched.batch(size, 5, steps)
    return alone, batched, steps


def requests() -> list[GenerateRequest]:
    """Greedy requests of different lengths; one stops at a string."""
    out = [
        GenerateRequest(prompt=p, max_tokens=4 + 5 * i, temperature=0)
        for i, p in enumerate(PROMPTS)
    ]
    out.append(GenerateRequest(prompt="Hello", max_tokens=40, temperature=0, stop="o"))
    return out


def staggered(engine: TextGenerator, asked: list[GenerateRequest]) -> list[dict[str, Any]]:
    """Each request from its own thread, a few milliseconds apart, so rows join a batch
    that is already running."""
    answers: list[dict[str, Any]] = [{} for _ in asked]

    def ask(i: int) -> None:
        time.sleep(0.004 * i)
        answers[i] = engine.generate(asked[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asked))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


@pytest.mark.parametrize("model", ["tiny_gpt2", "tiny_llama"])
def test_batched_greedy_generations_equal_one_at_a_time(
    model: str, request: pytest.FixtureRequest
) -> None:
    """docs/spec.md, Top level (`batching`): concurrent generations share forward passes,
    and greedy outputs equal unbatched ones, for learned (GPT-2) and rotary (Llama)
    positions, when rows join a running batch and leave it at different lengths."""
    alone, batched, steps = engines(request.getfixturevalue(model))
    asked = requests()
    expected = [alone.generate(r) for r in asked]
    assert staggered(batched, asked) == expected
    together = [batched.batcher.start(r) for r in asked] if batched.batcher else []
    assert [f.result(timeout=60) for f in together] == expected
    assert expected[-1]["finish_reason"] == "stop" and expected[0]["finish_reason"] == "length"
    # Shared: fewer forward passes than tokens, and passes of several rows.
    assert max(steps.sizes) >= 4
    assert len(steps.sizes) < sum(e["tokens_generated"] for e in expected)
    assert batched.batcher is not None and batched.batcher.waiting() == 0


def test_max_batch_size_bounds_the_rows(tiny_gpt2: Path) -> None:
    """docs/spec.md, Top level (`batching`): `max_batch_size` caps the rows of a step;
    the others wait and are served when rows leave."""
    alone, batched, steps = engines(tiny_gpt2, size=3)
    asked = requests()
    assert staggered(batched, asked) == [alone.generate(r) for r in asked]
    assert max(steps.sizes) == 3


def test_a_seed_gives_the_same_text_alone_or_in_a_batch(tiny_gpt2: Path) -> None:
    """docs/spec.md, Routes (`generate`): a request with `seed` samples from its own
    generator, so its text does not depend on what else is in the batch."""
    _, batched, _ = engines(tiny_gpt2)
    assert batched.batcher is not None
    seeded = GenerateRequest(prompt="Hello", max_tokens=16, temperature=1.5, seed=7)
    first = batched.generate(seeded)
    noise = [
        batched.batcher.start(GenerateRequest(prompt=p, max_tokens=12, temperature=1.2))
        for p in PROMPTS
    ]
    again = batched.batcher.start(seeded)
    assert again.result(timeout=60) == first
    for answer in noise:
        answer.result(timeout=60)
    others = {batched.generate(seeded.model_copy(update={"seed": s}))["text"] for s in range(4)}
    assert len(others | {first["text"]}) > 1, "different seeds should give different text"


def test_sampling_settings_are_per_request(tiny_gpt2: Path) -> None:
    """docs/spec.md, Routes (`generate`): each row samples with its own `temperature`
    and `top_p`: a tiny `top_p` keeps only the likeliest token, so it equals greedy even
    beside hot rows in the same batch."""
    alone, batched, _ = engines(tiny_gpt2)
    assert batched.batcher is not None
    greedy = GenerateRequest(prompt="The quick", max_tokens=20, temperature=0)
    narrow = GenerateRequest(prompt="The quick", max_tokens=20, temperature=1.9, top_p=1e-6)
    hot = [
        batched.batcher.start(GenerateRequest(prompt=p, max_tokens=20, temperature=2.0))
        for p in PROMPTS
    ]
    answer = batched.batcher.start(narrow)
    expected = alone.generate(greedy)
    assert answer.result(timeout=60)["text"] == expected["text"]
    hot_texts = {f.result(timeout=60)["text"] for f in hot}
    assert expected["text"] not in hot_texts


def test_a_cancelled_row_leaves_and_frees_its_slot(tiny_gpt2: Path) -> None:
    """docs/spec.md, Routes (`generate`): a client that goes away stops its generation at
    the next token; its row leaves the batch, and the rows beside it finish."""
    alone, batched, _ = engines(tiny_gpt2, size=2)
    assert batched.batcher is not None
    cancelled = threading.Event()
    pieces: list[str] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            cancelled.set()

    long = GenerateRequest(prompt="Hello", max_tokens=200, temperature=1.0, seed=1)
    stopped = batched.batcher.start(long, on_text, cancelled)
    beside = GenerateRequest(prompt="The quick", max_tokens=30, temperature=0)
    other = batched.batcher.start(beside)
    result = stopped.result(timeout=60)
    assert result["finish_reason"] == "cancelled"
    assert 3 <= result["tokens_generated"] < 200
    assert other.result(timeout=60) == alone.generate(beside)
    # The freed slot serves a third request while the batch holds at most two rows.
    third = GenerateRequest(prompt="0123", max_tokens=8, temperature=0)
    assert batched.generate(third) == alone.generate(third)
    assert batched.batcher.waiting() == 0


def test_a_request_cancelled_before_its_turn_never_runs(tiny_gpt2: Path) -> None:
    """A queued request whose client left before a slot came free is answered as
    cancelled without a forward pass."""
    _, batched, steps = engines(tiny_gpt2, size=2)
    assert batched.batcher is not None
    gone = threading.Event()
    gone.set()
    answer = batched.batcher.start(GenerateRequest(prompt="Hello", max_tokens=5), None, gone)
    assert answer.result(timeout=60) == {
        "text": "",
        "prompt_tokens": 3,
        "tokens_generated": 0,
        "finish_reason": "cancelled",
    }
    assert steps.sizes == []


@pytest.fixture
def sliding(tmp_path: Path) -> Iterator[Path]:
    yield make_tiny_llama(tmp_path / "tiny-mistral", sliding_window=8)


def test_a_model_whose_cache_cannot_be_split_generates_one_at_a_time(
    sliding: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/spec.md, Top level (`batching`): a model whose cache rows cannot be merged
    (here a sliding-window attention cache) is told apart at load, logged, and generates
    one request at a time, with the same answers."""
    alone = TextGenerator(sliding, None, "auto")
    batched = TextGenerator(sliding, None, "auto")
    assert not batched.batch(8, 5, None)
    assert "cannot be batched" in caplog.text
    asked = requests()[:3]
    assert staggered(batched, asked) == [alone.generate(r) for r in asked]


def test_generate_streams_and_openai_calls_share_one_batch(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Top level (`batching`): `generate`, its stream, and OpenAI
    completions and chat completions sent at once run in the same forward passes, and
    each answer equals what the request gets alone."""
    spec = gpt2_spec(tiny_gpt2, rate_limit=None)
    spec["routes"].insert(0, {"path": "/v1", "action": "openai"})
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "build")
    app = load_app(module, say=lambda _: None)
    batcher = module.model.engine.batcher
    assert batcher is not None
    steps = Steps()
    batcher.observe = steps
    auth = {"Authorization": "Bearer key-one"}
    calls = [
        ("/generate", {"prompt": "Hello world", "max_tokens": 20, "temperature": 0}),
        ("/generate/stream", {"prompt": "The quick", "max_tokens": 15, "temperature": 0}),
        ("/v1/completions", {"prompt": "Tokens stream", "max_tokens": 12, "temperature": 0}),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10, "temperature": 0},
        ),
    ] * 2

    async def send_all(together: bool) -> list[str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:

            async def one(path: str, body: dict[str, Any]) -> str:
                r = await client.post(path, json=body, headers=auth)
                assert r.status_code == 200, r.text
                if path.endswith("stream"):
                    return r.text.split("event: done")[0]  # the token events
                answer = r.json()
                answer.pop("id", None)
                answer.pop("created", None)
                return json.dumps(answer, sort_keys=True)

            if together:
                return list(await asyncio.gather(*(one(p, b) for p, b in calls)))
            return [await one(p, b) for p, b in calls]

    alone = asyncio.run(send_all(False))
    steps.sizes.clear()
    assert asyncio.run(send_all(True)) == alone
    assert max(steps.sizes) >= 4


def test_extreme_sampling_settings_still_generate(tiny_gpt2: Path) -> None:
    """A `top_p` too small for float32 (it rounds to 0) keeps the likeliest token: an
    answer, never a failed sampler (schemathesis found this one)."""
    alone, batched, _ = engines(tiny_gpt2)
    greedy = alone.generate(GenerateRequest(prompt="Hello", max_tokens=8, temperature=0))
    asked = GenerateRequest(prompt="Hello", max_tokens=8, temperature=2.0, top_p=1e-50)
    assert batched.generate(asked)["text"] == greedy["text"]


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_t5(tmp_path_factory.mktemp("models") / "tiny-t5")


def test_a_seq2seq_model_generates_and_streams_like_a_causal_one(
    tmp_path: Path, tiny_t5: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Model (`task`): a text2text-generation model (T5, BART: summarizing,
    translating) serves `generate`, streamed or not, with `stop`, `max_tokens` and the
    finish reasons of a causal model; greedy text equals its own `generate`."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    spec = gpt2_spec(tiny_t5, rate_limit=None)
    spec["model"]["task"] = "text2text-generation"
    spec.pop("batching")
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "build")
    client = TestClient(load_app(module, say=lambda _: None))
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()
    prompt = "summarize: The quick brown fox jumps over the lazy dog."
    with torch.inference_mode():
        ids = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=12)
    expected = tokenizer.decode(ids[0, 1:], skip_special_tokens=True)
    body = {"prompt": prompt, "max_tokens": 12, "temperature": 0}
    r = client.post("/generate", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["text"] == expected and r.json()["tokens_generated"] == ids.shape[1] - 1
    stream = client.post("/generate/stream", json=body, headers=AUTH).text
    pieces = [json.loads(line[6:])["text"] for line in stream.splitlines() if '"text"' in line]
    assert "".join(pieces) == expected and "event: done" in stream
    if len(expected) > 3:
        stop = expected[2:4]
        cut = client.post("/generate", json={**body, "stop": stop}, headers=AUTH).json()
        assert cut["text"] == expected[: expected.index(stop)] and cut["finish_reason"] == "stop"


def test_a_seq2seq_model_is_refused_what_it_cannot_do(tmp_path: Path, tiny_t5: Path) -> None:
    """docs/spec.md, Top level (`batching`): continuous batching is for decoder-only
    models, so `batching` on a text2text-generation model is refused, as is `openai`."""
    from endpointgen.compiler import pipeline

    spec = gpt2_spec(tiny_t5)
    spec["model"]["task"] = "text2text-generation"
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert "continuous batching is for decoder-only models" in str(problem)
    spec.pop("batching")
    spec["routes"].append({"path": "/v1", "action": "openai"})
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert "`openai` serves a text-generation or embeddings model" in str(problem)


def test_the_models_generation_config_applies_in_a_batch(tmp_path: Path, tiny_gpt2: Path) -> None:
    """docs/spec.md, Text generation: the model's `generation_config` `top_k` and
    `repetition_penalty` apply to batched rows as `model.generate` applies them: with a
    penalty, batched greedy text still equals unbatched; with `top_k: 1`, a hot sample
    can only take the likeliest token, so it equals greedy."""
    model = tmp_path / "configured"
    shutil.copytree(tiny_gpt2, model)
    config_file = model / "generation_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "repetition_penalty": 1.8, "top_k": 1}))
    alone, batched, _ = engines(model)
    asked = [GenerateRequest(prompt=p, max_tokens=24, temperature=0) for p in PROMPTS[:4]]
    expected = [alone.generate(r) for r in asked]
    plain = TextGenerator(tiny_gpt2, None, "auto")
    assert expected[0] != plain.generate(asked[0]), "the penalty changes greedy text"
    assert staggered(batched, asked) == expected
    hot = GenerateRequest(prompt=PROMPTS[0], max_tokens=24, temperature=2.0, seed=3)
    assert batched.generate(hot)["text"] == expected[0]["text"]


def test_a_seq2seq_model_samples_as_its_own_config_says_when_asked_nothing(
    tmp_path: Path, tiny_t5: Path, env_keys: list[str]
) -> None:
    """docs/spec.md, Model (`task`): a request with no `temperature` on a
    text2text-generation model samples as the model's own `generation_config` says: a
    summarizer's greedy config gives its greedy text, every time (not a sample at 1.0); a
    request that sets a temperature samples at it."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    spec = gpt2_spec(tiny_t5, rate_limit=None)
    spec["model"]["task"] = "text2text-generation"
    spec.pop("batching")
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "build")
    client = TestClient(load_app(module, say=lambda _: None))
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5)
    model = AutoModelForSeq2SeqLM.from_pretrained(tiny_t5).eval()
    assert not model.generation_config.do_sample  # unset: greedy, as `generate` reads it
    prompt = "summarize: The quick brown fox jumps over the lazy dog."
    with torch.inference_mode():
        ids = model.generate(**tokenizer(prompt, return_tensors="pt"), max_new_tokens=12)
    greedy = tokenizer.decode(ids[0, 1:], skip_special_tokens=True)
    body = {"prompt": prompt, "max_tokens": 12}
    answers = {client.post("/generate", json=body, headers=AUTH).json()["text"] for _ in range(3)}
    assert answers == {greedy}
    sampled = {
        client.post("/generate", json={**body, "temperature": 2.0, "seed": s}, headers=AUTH).json()[
            "text"
        ]
        for s in range(4)
    }
    assert sampled != {greedy}
