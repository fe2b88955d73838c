"""The text engine contract (`engines.TextEngine`): what every engine behind `generate`,
streaming and the OpenAI routes must do, checked on each engine.

transformers runs here, alone and batched. vLLM runs where a CUDA GPU and the `vllm`
package are present (a GPU machine: `pytest tests/runtime/test_engine_contract.py`), else its
case is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from models import make_tiny_llama

from endpointgen.runtime.tasks import GenerateRequest
from endpointgen.runtime.text.interface import TextEngine
from endpointgen.runtime.text.transformers import TextGenerator


def gpu_and_vllm() -> str | None:
    """Why vLLM cannot run here, or None when it can."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed (it needs a CUDA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU"
    return None


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="module", params=["transformers", "transformers-batched", "vllm"])
def engine(request: pytest.FixtureRequest, tiny_llama: Path) -> Iterator[TextEngine]:
    if request.param == "vllm":
        why = gpu_and_vllm()
        if why:
            pytest.skip(why)
        from endpointgen.runtime.text.vllm import VllmGenerator

        made = VllmGenerator(tiny_llama, None, "auto", gpu_memory_utilization=0.3)
        yield made
        made.close()
        return
    generator = TextGenerator(tiny_llama, None, "auto")
    if request.param == "transformers-batched":
        assert generator.batch(8, 5, None)
    yield generator


def ask(**fields: Any) -> GenerateRequest:
    return GenerateRequest(**{"prompt": "Hello world", "temperature": 0, **fields})


def test_greedy_is_repeatable_and_streams_its_text(engine: TextEngine) -> None:
    """Greedy twice gives the same answer; the streamed pieces add up to the text."""
    pieces: list[str] = []
    first = engine.generate(ask(max_tokens=12), pieces.append)
    assert set(first) == {"text", "prompt_tokens", "tokens_generated", "finish_reason"}
    assert engine.generate(ask(max_tokens=12)) == first
    assert "".join(pieces) == first["text"]
    assert first["prompt_tokens"] == engine.count("Hello world")
    assert 1 <= first["tokens_generated"] <= 12
    assert first["finish_reason"] in {"length", "stop"}


def test_max_tokens_and_stop(engine: TextEngine) -> None:
    """docs/spec.md, Routes (`generate`): `max_tokens` bounds the tokens (`length`); a
    stop string ends the text before it (`stop`), streamed or not."""
    long = engine.generate(ask(max_tokens=24))
    if long["finish_reason"] == "length":
        assert long["tokens_generated"] == 24
    text = long["text"]
    stop = next((text[i : i + 2] for i in range(3, len(text) - 2) if text[i : i + 2].strip()), None)
    if stop is None:
        pytest.skip(f"the model's text has no stop string to try: {text!r}")
    pieces: list[str] = []
    stopped = engine.generate(ask(max_tokens=24, stop=stop), pieces.append)
    assert stopped["text"] == text[: text.index(stop)]
    # Streamed text never shows part of a stop string, even one spanning two tokens.
    assert "".join(pieces) == stopped["text"]
    assert stopped["finish_reason"] == "stop"
    assert stopped["tokens_generated"] <= long["tokens_generated"]


def test_concurrent_starts_all_finish_and_a_seed_repeats(engine: TextEngine) -> None:
    """`start` returns futures at once; each finishes with its own request's answer, and
    a seeded sample is the same twice."""
    seeded = ask(max_tokens=10, temperature=1.3, seed=11)
    asked = [ask(prompt=p, max_tokens=6 + i) for i, p in enumerate(["Hi", "The quick", "0123"])]
    futures = [engine.start(r) for r in [*asked, seeded]]
    answers = [f.result(timeout=120) for f in futures]
    assert answers[:3] == [engine.generate(r) for r in asked]
    assert engine.generate(seeded) == answers[3]


def test_cancelling_stops_at_the_next_token(engine: TextEngine) -> None:
    cancelled = threading.Event()
    seen: list[str] = []

    def on_text(piece: str) -> None:
        seen.append(piece)
        if len(seen) == 2:
            cancelled.set()

    result = engine.generate(ask(max_tokens=200, temperature=1.0, seed=3), on_text, cancelled)
    assert result["finish_reason"] == "cancelled"
    assert 2 <= result["tokens_generated"] < 200


def test_context_chat_prompt_and_health(engine: TextEngine) -> None:
    assert engine.health() is None
    left = engine.context_left("Hello world")
    assert left is not None and left == 256 - engine.count("Hello world")
    assert engine.context_problem(ask(max_tokens=10)) is None
    problem = engine.context_problem(ask(max_tokens=300))
    assert problem is not None and "context of 256 tokens" in problem
    prompt = engine.chat_prompt([{"role": "user", "content": "Hi there"}])
    assert "Hi there" in prompt


ECHO_LOADER = '''\
from concurrent.futures import Future


class Echo:
    """A text engine in plain Python: the prompt's words backwards, one piece each."""

    def __init__(self, source):
        self.source = source

    def start(self, request, on_text=None, cancelled=None):
        words = request.prompt.split()[::-1][: request.max_tokens]
        text = ""
        for i, word in enumerate(words):
            piece = (" " if i else "") + word
            text += piece
            if on_text is not None:
                on_text(piece)
        done = Future()
        reason = "length" if len(words) == request.max_tokens else "stop"
        done.set_result(
            {"text": text, "prompt_tokens": self.count(request.prompt),
             "tokens_generated": len(words), "finish_reason": reason}
        )
        return done

    def generate(self, request, on_text=None, cancelled=None):
        return self.start(request, on_text, cancelled).result()

    def count(self, text):
        return len(text.split())

    def context_left(self, prompt):
        return 100 - self.count(prompt)

    def context_problem(self, request):
        if self.count(request.prompt) + request.max_tokens > 100:
            return "the prompt and max_tokens exceed 100 words"
        return None

    def chat_prompt(self, turns):
        return " ".join(turn["content"] for turn in turns)

    def health(self):
        return None


def load(source):
    return Echo(source)


def not_an_engine(source):
    return {"source": source}
'''


def loader_app(tmp_path: Path, function: str) -> Any:
    from conftest import build_and_import, write_spec
    from fastapi.testclient import TestClient

    from endpointgen.local.serve import load_app

    (tmp_path / "echo.py").write_text(ECHO_LOADER)
    spec = {
        "name": "echo",
        "model": {"id": "org/echo", "task": "text-generation", "loader": f"echo.py:{function}"},
        "auth": {"mode": "bearer"},
        "routes": [
            {"path": "/generate", "method": "POST", "action": "generate"},
            {"path": "/stream", "method": "POST", "action": "generate", "stream": True},
            {"path": "/v1", "action": "openai"},
            {"path": "/health", "action": "health"},
        ],
    }
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    return TestClient(load_app(module, say=lambda _: None))


def test_a_loader_can_serve_generate_and_openai_with_its_own_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Model (`loader`): a text-generation loader whose object implements
    `engines.TextEngine` serves `generate`, its stream and the OpenAI routes, with
    endpointgen's limits, auth and errors around it."""
    monkeypatch.setenv("API_KEYS", "k")
    client = loader_app(tmp_path, "load")
    auth = {"Authorization": "Bearer k"}
    r = client.post("/generate", json={"prompt": "one two three"}, headers=auth)
    assert r.status_code == 200
    assert r.json() == {"text": "three two one", "tokens_generated": 3, "finish_reason": "stop"}
    stream = client.post("/stream", json={"prompt": "a b c", "max_tokens": 2}, headers=auth)
    assert stream.text.count("event: token") == 2 and '"finish_reason": "length"' in stream.text
    chat = {"messages": [{"role": "user", "content": "hello there"}]}
    r = client.post("/v1/chat/completions", json=chat, headers=auth)
    assert r.json()["choices"][0]["message"]["content"] == "there hello"
    too_long = {"prompt": "word " * 99, "max_tokens": 5}
    r = client.post("/generate", json=too_long, headers=auth)
    assert r.status_code == 422 and "exceed 100 words" in r.text
    assert client.post("/generate", json={"prompt": "x"}).status_code == 401


def test_a_loader_object_that_is_no_text_engine_fails_its_load_with_what_it_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Model (`loader`): behind generate/openai routes, a loader's object
    without the text engine's methods fails the load, and `/health` and the routes say
    what it lacks (a container on Modal would be replaced)."""
    monkeypatch.setenv("API_KEYS", "k")
    client = loader_app(tmp_path, "not_an_engine")
    health = client.get("/health")
    assert health.status_code == 503
    reason = health.json()["error"]
    assert "echo.py:not_an_engine returned a dict, not a text engine" in reason
    assert "it lacks start, generate, count" in reason
    r = client.post("/generate", json={"prompt": "x"}, headers={"Authorization": "Bearer k"})
    assert r.status_code == 503
