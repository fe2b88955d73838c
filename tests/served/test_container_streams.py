"""Streams and checks across the split shape's two containers (tests/modal_container.py):
the CPU web tier `web` and the model class `Inference`, each its own import of the module.

A stream whose client goes away, whichever way Modal reports it, stops the generation in
the model's container; and each request costs the model class one round trip, its checks
included, with the same 422 (OpenAI's 400 under /v1) as in one process."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import modal.exception
import pytest
from conftest import gpt2_spec, import_file, write_spec
from fastapi.testclient import TestClient
from modal_container import Cloud, Container

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app
from endpointgen.runtime import tasks

pytestmark = pytest.mark.slow

KEY = "key-one"
AUTH = {"Authorization": f"Bearer {KEY}"}
TOKEN_PAUSE = 0.02  # seconds the model container's generation takes per token, here


@pytest.fixture
def split_app(tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """specs/gpt2.yaml with `shape: split` and an OpenAI route, on the tiny GPT-2 (a
    context of 256 tokens); the built module's file."""
    spec = gpt2_spec(tiny_gpt2, shape="split")
    spec["routes"].insert(-1, {"path": "/v1", "action": "openai", "max_tokens": 512})
    built = pipeline.build(write_spec(tmp_path / "spec", spec), tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    monkeypatch.setenv("API_KEYS", KEY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return built.path


class Generations:
    """The model container's engine, slowed to `TOKEN_PAUSE` a token so that a stopped
    generation shows; it records how each generation ended."""

    def __init__(self, container: Container) -> None:
        assert container.module is not None
        self.engine = container.module.model.engine
        self.generate = self.engine.generate
        self.ended: list[dict[str, Any]] = []
        self.engine.generate = self

    def __call__(self, request: Any, on_text: Any = None, cancelled: Any = None) -> Any:
        def slowly(piece: str) -> None:
            time.sleep(TOKEN_PAUSE)
            if on_text is not None:
                on_text(piece)

        result = self.generate(request, slowly, cancelled)
        self.ended.append(result)
        return result

    async def first_end(self, within: float = 10.0) -> dict[str, Any]:
        waited = time.monotonic()
        while not self.ended and time.monotonic() - waited < within:
            await asyncio.sleep(0.05)
        assert self.ended, f"no generation ended within {within} s"
        return self.ended[0]


CHAT = [{"role": "user", "content": "Hi"}]
# Greedy, so the tiny model writes all 200 tokens (sampled, it may end early at random).
LONG_GREEDY = {"max_tokens": 200, "temperature": 0}
LEAVES: dict[str, Callable[[Container], Callable[..., Any]]] = {
    "http.disconnect": lambda web: web.read_then_leave,
    "input cancelled": lambda web: web.read_then_cancel,
}


@pytest.mark.parametrize("leave", list(LEAVES))
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate/stream", {"prompt": "Hello", **LONG_GREEDY}),
        ("/v1/chat/completions", {"messages": CHAT, **LONG_GREEDY, "stream": True}),
    ],
)
def test_a_client_that_leaves_a_stream_stops_the_generation_on_the_gpu(
    split_app: Path, monkeypatch: pytest.MonkeyPatch, leave: str, path: str, body: Any
) -> None:
    """Issue "Modal fidelity, round 3", item 2: the web tier marks the stream cancelled in
    the app's Dict even though its request is being torn down, and the model class stops
    generating within about a second instead of running on to max_tokens."""
    cloud = Cloud(split_app, monkeypatch)
    web = cloud.start("web")
    generations = Generations(cloud.container("Inference"))
    marks = cloud.dict("gpt2-cancelled")
    written: list[Any] = []
    put = marks.put

    class Recorded:  # the Dict's `put.aio`, recording what reaches the store
        async def aio(self, *args: Any) -> Any:
            await put.aio(*args)
            written.append(args[0])

    marks.put = Recorded()  # type: ignore[assignment]

    async def go() -> dict[str, Any]:
        got = await LEAVES[leave](web)(2, "POST", path, json=body, headers=AUTH)
        assert len(got) == 2, got
        ended = await generations.first_end()
        waited = time.monotonic()
        while marks.items and time.monotonic() - waited < 2:
            await asyncio.sleep(0.05)
        await web.shutdown()
        return ended

    ended = asyncio.run(go())
    assert len(written) == 1, "the web tier wrote the stream's cancel mark"
    assert ended["finish_reason"] == "cancelled"
    # 200 tokens take 4 s here; the container asks for the mark twice a second.
    assert ended["tokens_generated"] < 100, ended
    assert marks.items == {}, "the model class removed the mark once it stopped"


def inference_calls(cloud: Cloud, since: int) -> list[str]:
    """The model class's methods the web tier called, from the `since`th call on."""
    return [method for cls, method in cloud.log[since:] if cls == "Inference"]


ANSWERED = [
    pytest.param(
        "/generate", {"prompt": "Hello", "max_tokens": 3, "seed": 1}, "checked_generate", id="gen"
    ),
    pytest.param(
        "/v1/completions",
        {"prompt": "Hello", "max_tokens": 3, "seed": 1},
        "checked_generate",
        id="compl",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"messages": CHAT, "max_tokens": 3, "seed": 1},
        "checked_generate",
        id="chat",
    ),
    pytest.param(  # without max_tokens: as many as fit, which the model's context says
        "/v1/chat/completions", {"messages": CHAT, "seed": 1}, "checked_generate", id="chat-fill"
    ),
    pytest.param(
        "/generate/stream", {"prompt": "Hello", "max_tokens": 3}, "tokens", id="gen-stream"
    ),
    pytest.param(
        "/v1/completions",
        {"prompt": "Hello", "max_tokens": 3, "stream": True},
        "tokens",
        id="compl-stream",
    ),
    pytest.param(
        "/v1/chat/completions",
        {"messages": CHAT, "max_tokens": 3, "stream": True},
        "tokens",
        id="chat-stream",
    ),
]


@pytest.mark.parametrize(("path", "body", "method"), ANSWERED)
def test_each_request_is_one_round_trip_to_the_model_class(
    split_app: Path, monkeypatch: pytest.MonkeyPatch, path: str, body: Any, method: str
) -> None:
    """Issue "Modal fidelity, round 3", item 5: a request's checks (the chat template,
    the room left in the context, the context's limit) run in the model class's call that
    generates, not in calls of their own that each wait on its engine; a streamed request
    opens the one stream and nothing else. Answers are the ones one process gives."""
    cloud = Cloud(split_app, monkeypatch)
    web = cloud.start("web")

    async def go() -> tuple[int, Any]:
        await web.request("POST", path, json=body, headers=AUTH)  # the container is warm
        since = len(cloud.log)
        answer = await web.request("POST", path, json=body, headers=AUTH)
        assert inference_calls(cloud, since) == [method]
        await web.shutdown()
        return answer.status, answer.body

    status, text = asyncio.run(go())
    assert status == 200, text
    here = TestClient(load_app(import_file(split_app), say=lambda _: None))
    alone = here.post(path, json=body, headers=AUTH)
    if method == "tokens":
        done = b"data: [DONE]\n\n" if path.startswith("/v1") else b"event: done"
        assert done in text and b"generation failed" not in text, text
    else:  # seeded: the same text, as one process gives it (ids and times aside)
        answered, expected = json.loads(text), alone.json()
        for volatile in ("id", "created"):
            answered.pop(volatile, None), expected.pop(volatile, None)
        assert answered == expected


TOO_LONG = "word " * 300  # well past the tiny model's context of 256 tokens
LONG_CHAT = [{"role": "user", "content": TOO_LONG}]
REFUSED = [
    pytest.param(
        "/generate", {"prompt": TOO_LONG, "max_tokens": 5}, ["checked_generate"], id="gen"
    ),
    pytest.param(
        "/generate/stream", {"prompt": TOO_LONG, "max_tokens": 5}, ["tokens"], id="gen-stream"
    ),
    pytest.param("/generate", {"prompt": "Hi", "max_tokens": 2000}, [], id="gen-ceiling"),
    pytest.param(
        "/generate/stream",
        {"prompt": "Hi " * 7000, "max_tokens": 5},
        [],
        id="gen-stream-max-chars",
    ),
    pytest.param(
        "/v1/completions", {"prompt": TOO_LONG, "max_tokens": 5}, ["checked_generate"], id="compl"
    ),
    pytest.param(
        "/v1/completions",
        {"prompt": TOO_LONG, "max_tokens": 5, "stream": True},
        ["tokens"],
        id="compl-stream",
    ),
    pytest.param("/v1/chat/completions", {"messages": LONG_CHAT}, ["checked_generate"], id="chat"),
    pytest.param(
        "/v1/chat/completions",
        {"messages": LONG_CHAT, "stream": True},
        ["tokens"],
        id="chat-stream",
    ),
    pytest.param(  # the route's own ceiling (512)
        "/v1/chat/completions",
        {"messages": CHAT, "max_tokens": 600, "stream": True},
        [],
        id="chat-ceiling",
    ),
]


@pytest.mark.parametrize(("path", "body", "calls"), REFUSED)
def test_a_request_that_fails_a_check_gets_the_same_refusal_as_in_one_process(
    split_app: Path, monkeypatch: pytest.MonkeyPatch, path: str, body: Any, calls: list[str]
) -> None:
    """A prompt past the model's context, or a request past the route's ceilings, is the
    route's 422 (OpenAI's 400 under /v1) with the message one process gives, before any
    streamed byte; a ceiling the web tier can check itself costs the model class no call."""
    cloud = Cloud(split_app, monkeypatch)
    web = cloud.start("web")

    async def go() -> tuple[int, Any, str | None]:
        answer = await web.request("POST", path, json=body, headers=AUTH)
        assert inference_calls(cloud, 0) == calls
        await web.shutdown()
        return answer.status, answer.json(), answer.header("content-type")

    status, refused, media = asyncio.run(go())
    here = TestClient(load_app(import_file(split_app), say=lambda _: None))
    alone = here.post(path, json=body, headers=AUTH)
    assert (status, media) == (alone.status_code, "application/json")
    assert status == (400 if path.startswith("/v1") else 422)
    expected = alone.json()
    refused.pop("request_id", None), expected.pop("request_id", None)
    assert refused == expected
    if calls:  # the model's own check
        assert "the model's context of 256 tokens" in json.dumps(refused)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/generate/stream", {"prompt": "Hello", "max_tokens": 3}),
        ("/v1/chat/completions", {"messages": CHAT, "max_tokens": 3, "stream": True}),
    ],
)
def test_a_stream_from_a_class_that_cannot_load_is_a_503_not_a_broken_stream(
    split_app: Path, monkeypatch: pytest.MonkeyPatch, path: str, body: Any
) -> None:
    """The stream's first item is awaited before the route answers: when Modal fails it
    because the class cannot load, the client gets the 503 with the short reason."""
    cloud = Cloud(split_app, monkeypatch)
    cloud.failing[("Inference", "tokens")] = tasks.LoadFailed("OSError: no weights")
    web = cloud.start("web")

    async def go() -> tuple[int, Any]:
        answer = await web.request("POST", path, json=body, headers=AUTH)
        await web.shutdown()
        return answer.status, answer.json()

    status, refused = asyncio.run(go())
    reason = "model is not ready (failed): OSError: no weights"
    assert status == 503
    assert reason in (refused["error"]["message"] if path.startswith("/v1") else refused["error"])


def test_a_cancel_mark_the_dict_refuses_is_logged_not_raised(
    split_app: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """When the Dict cannot take the mark, the web tier says so in its log; nothing is
    raised into the request's teardown."""
    cloud = Cloud(split_app, monkeypatch)
    web = cloud.start("web")
    marks = cloud.dict("gpt2-cancelled")

    class Unreachable:  # the Dict's `put.aio`, failing as Modal's client does offline
        async def aio(self, *args: Any) -> Any:
            raise modal.exception.ConnectionError("could not reach Modal")

    marks.put = Unreachable()  # type: ignore[assignment]
    body = {"prompt": "Hello", "max_tokens": 20, "temperature": 0}

    async def go() -> None:
        got = await web.read_then_leave(2, "POST", "/generate/stream", json=body, headers=AUTH)
        assert len(got) == 2
        await asyncio.sleep(0.2)
        await web.shutdown()

    asyncio.run(go())
    assert "could not tell the model class that the client went away" in caplog.text
    assert "could not reach Modal" in caplog.text
