"""Regression tests for attacks on text generation that a red-team pass got through
(docs/security.md, hardening round 3): each performs the attack over HTTP against a
served app and asserts what the client sees."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from conftest import gpt2_spec, write_spec
from modal_container import Cloud
from servers import Server

from endpointgen.compiler import pipeline

pytestmark = pytest.mark.slow

# Mistral's style of chat template: user and assistant turns, alternating, nothing else.
MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
AUTH = {"Authorization": "Bearer key-one"}


@pytest.fixture(scope="module")
def mistral_style(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Path:
    """The tiny GPT-2, its tokenizer given a Mistral-style chat template."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("models") / "tiny-mistral-chat"
    shutil.copytree(tiny_gpt2, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = MISTRAL_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mistral_style: Path) -> Iterator[Server]:
    spec = {
        "name": "chat",
        "model": {"id": str(mistral_style), "task": "text-generation"},
        "batching": {"max_batch_size": 8, "wait_ms": 5},
        "auth": {"mode": "bearer"},
        "routes": [
            {"path": "/v1", "action": "openai"},
            {"path": "/generate", "method": "POST", "action": "generate"},
            {"path": "/generate/stream", "method": "POST", "action": "generate", "stream": True},
        ],
    }
    served = Server(write_spec(tmp_path_factory.mktemp("chat"), spec))
    served.wait_ready()
    yield served
    served.stop()


def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="key-one", max_retries=0)


def refused(server: Server, messages: list[dict[str, Any]], stream: bool) -> dict[str, Any]:
    """The error body OpenAI's client raises for a chat the server refuses with 400."""
    with pytest.raises(openai.BadRequestError) as raised:
        answer = client(server).chat.completions.create(
            model="tiny-mistral-chat",
            messages=messages,  # type: ignore[arg-type]
            max_tokens=5,
            stream=stream,
        )
        if stream:  # not reached on a refusal: the 400 comes before any event
            list(answer)
    assert raised.value.status_code == 400
    body = raised.value.response.json()
    assert set(body) == {"error"}
    assert "Traceback" not in raised.value.response.text
    return dict(body["error"])


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        [{"role": "user", "content": "Hi"}, {"role": "user", "content": "Hello?"}],
        [
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": "Asking."},
            {"role": "tool", "content": "sunny"},
        ],
    ],
    ids=["system", "not-alternating", "tool"],
)
def test_a_chat_template_that_refuses_the_messages_is_a_400(
    server: Server, messages: list[dict[str, Any]], stream: bool
) -> None:
    """docs/spec.md, OpenAI-compatible routes (`POST /chat/completions`): messages the
    model's chat template refuses are OpenAI's 400 on `messages`, with the template's
    reason, streamed or not.

    Hardening (issue 27, item 9): a `system` turn, turns that do not alternate, or a `tool`
    turn made a Mistral-style template call `raise_exception`, and the route answered 500."""
    error = refused(server, messages, stream)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert error["message"] == "Conversation roles must alternate user/assistant/user/assistant/..."


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_an_unknown_role_is_a_400_naming_messages(server: Server, stream: bool) -> None:
    """Hardening (issue 27, item 9): a role no chat knows (`root`) is refused as OpenAI
    refuses it, before the model's template sees it."""
    error = refused(server, [{"role": "root", "content": "obey"}], stream)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "messages"
    assert "role" in error["message"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_refusing_template_in_a_model_class_is_the_same_400(
    tmp_path: Path, mistral_style: Path, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    """Hardening (issue 27, item 9), `shape: split`: the template runs in the model
    class's container, and its refusal reaches the client as the same 400 on `messages`,
    in the one call the web tier makes."""
    spec = gpt2_spec(mistral_style, shape="split")
    spec["routes"].insert(-1, {"path": "/v1", "action": "openai"})
    built = pipeline.build(write_spec(tmp_path / "spec", spec), tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    monkeypatch.setenv("API_KEYS", "key-one")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cloud = Cloud(built.path, monkeypatch)
    web = cloud.start("web")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    body = {"messages": messages, "max_tokens": 5, "stream": stream}

    async def go() -> tuple[int, Any]:
        answer = await web.request("POST", "/v1/chat/completions", json=body, headers=AUTH)
        await web.shutdown()
        return answer.status, answer.json()

    status, refused = asyncio.run(go())
    assert status == 400
    assert refused["error"]["param"] == "messages"
    assert refused["error"]["message"].startswith("Conversation roles must alternate")
    calls = [method for cls, method in cloud.log if cls == "Inference"]
    assert calls == ["tokens" if stream else "checked_generate"]


def test_a_chat_the_template_takes_still_answers(server: Server) -> None:
    """The refusals above leave a chat the template takes as it was, streamed or not."""
    messages: Any = [{"role": "user", "content": "Hi"}]
    done = client(server).chat.completions.create(
        model="tiny-mistral-chat", messages=messages, max_tokens=5, temperature=0
    )
    assert done.choices[0].finish_reason in ("length", "stop")
    streamed = client(server).chat.completions.create(
        model="tiny-mistral-chat", messages=messages, max_tokens=5, temperature=0, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert text == done.choices[0].message.content


def generate(server: Server, path: str = "/generate", **body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers=AUTH, timeout=60)


def test_a_hundred_thousand_stop_strings_are_refused_at_once(server: Server) -> None:
    """docs/spec.md, Routes (`generate`): `stop` holds at most 16 strings of at most 100
    characters (OpenAI routes: 4), else 422 (400 on `stop` under an OpenAI route).

    Hardening (issue 27, item 10): 100,000 stop strings in one request were each looked for
    at every step of the shared decode loop, which held every other request up."""
    stops = [f"{i:05d}" for i in range(100_000)]
    started = time.monotonic()
    answer = generate(server, prompt="Hello", max_tokens=50, stop=stops)
    assert time.monotonic() - started < 5
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["body", "stop"] and "at most 16" in problem["msg"]
    for path in ("/generate", "/generate/stream"):
        assert generate(server, path, prompt="Hi", stop=["x" * 101]).status_code == 422
        assert generate(server, path, prompt="Hi", stop=["x"] * 17).status_code == 422
        assert generate(server, path, prompt="Hi", max_tokens=2, stop=["x"] * 16).status_code == 200
    with pytest.raises(openai.BadRequestError) as raised:
        client(server).completions.create(
            model="tiny-mistral-chat", prompt="Hi", max_tokens=2, stop=["a", "b", "c", "d", "e"]
        )
    error = raised.value.response.json()["error"]
    assert error["param"] == "stop" and "at most 4" in error["message"]
    done = client(server).completions.create(
        model="tiny-mistral-chat", prompt="Hi", max_tokens=2, stop=["a", "b", "c", "d"]
    )
    assert done.choices[0].finish_reason in ("length", "stop")


def test_the_most_stop_strings_allowed_do_not_hold_up_another_request(server: Server) -> None:
    """Hardening (issue 27, item 10): a generation with as many stop strings as allowed, each
    as long as allowed and each almost found in its text (so every step looks hard for
    them), leaves a concurrent 20-token request in the same batch fast."""
    long: dict[str, Any] = {"prompt": "The quick", "max_tokens": 200, "temperature": 0}
    text = generate(server, **long).json()["text"]
    assert len(text) > 120
    # Each stop's first 99 characters are in the text, its last never: nothing stops.
    stops = [text[i : i + 99] + "\u2603" for i in range(16)]
    answers: dict[str, Any] = {}

    def hard() -> None:
        answers["hard"] = generate(server, **long, stop=stops)

    worker = threading.Thread(target=hard)
    worker.start()
    time.sleep(0.05)  # the hard request is in the decode loop
    started = time.monotonic()
    small = generate(server, prompt="Hello", max_tokens=20, temperature=0)
    took = time.monotonic() - started
    worker.join()
    assert small.status_code == 200 and small.json()["tokens_generated"] >= 1
    assert took < 2.0, f"a 20-token request took {took:.2f}s beside the stop strings"
    assert answers["hard"].status_code == 200
    assert answers["hard"].json()["text"] == text
