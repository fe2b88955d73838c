"""The official `openai` client against served apps: it must work unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from conftest import write_spec
from servers import Server

pytestmark = pytest.mark.slow


def client(server: Server, key: str = "key-one") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Iterator[Server]:
    spec = {
        "name": "chat",
        "model": {"id": str(tiny_gpt2), "task": "text-generation"},
        "auth": {"mode": "bearer"},
        "rate_limit": {"limit": "1000/minute", "key": "api_key"},
        "routes": [
            {"path": "/v1", "action": "openai", "max_tokens": 64},
            {"path": "/v1-tight", "action": "openai", "rate_limit": {"limit": "2/hour"}},
        ],
    }
    server = Server(write_spec(tmp_path_factory.mktemp("chat"), spec))
    server.wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def embed_server(tmp_path_factory: pytest.TempPathFactory, minilm: Path) -> Iterator[Server]:
    spec = {
        "name": "vectors",
        "model": {"id": str(minilm), "task": "embeddings"},
        "auth": {"mode": "bearer"},
        "batching": {"max_batch_size": 16, "wait_ms": 2},
        "routes": [
            {"path": "/v1", "action": "openai"},
            {"path": "/embed", "method": "POST", "action": "embed"},
        ],
    }
    server = Server(write_spec(tmp_path_factory.mktemp("vectors"), spec))
    server.wait_ready()
    yield server
    server.stop()


def test_models_lists_the_served_model(chat_server: Server) -> None:
    """docs/spec.md, OpenAI-compatible routes (`GET /models`): the served model, a local directory
    by its name."""
    models = client(chat_server).models.list()
    assert [m.id for m in models.data] == ["tiny-gpt2"]


def test_completion(chat_server: Server) -> None:
    """docs/spec.md, Routes (`openai`): OpenAI's own client works unchanged against the route.
    docs/spec.md, OpenAI-compatible routes (`POST /completions`): a prompt, max_tokens and a
    seed give OpenAI's shape, with usage and finish_reason; the same seed, the same text."""
    done = client(chat_server).completions.create(
        model="tiny-gpt2", prompt="Hello", max_tokens=5, seed=3
    )
    assert done.object == "text_completion"
    assert done.choices[0].finish_reason in ("length", "stop")
    assert done.usage is not None and done.usage.completion_tokens <= 5
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens
    again = client(chat_server).completions.create(
        model="tiny-gpt2", prompt="Hello", max_tokens=5, seed=3
    )
    assert again.choices[0].text == done.choices[0].text


def test_chat_completion_and_its_stream_agree(chat_server: Server) -> None:
    """docs/spec.md, OpenAI-compatible routes (`POST /chat/completions`): `messages` give an
    assistant message; streamed, the chunks add up to the same text."""
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    c = client(chat_server)
    whole = c.chat.completions.create(
        model="tiny-gpt2", messages=messages, max_tokens=6, temperature=0
    )
    assert whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    pieces = c.chat.completions.create(
        model="tiny-gpt2", messages=messages, max_tokens=6, temperature=0, stream=True
    )
    chunks = list(pieces)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    assert text == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_chat_without_a_template_prompts_with_role_lines(
    chat_server: Server, tiny_gpt2: Path
) -> None:
    """docs/spec.md, OpenAI-compatible routes (`POST /chat/completions`): a tokenizer
    without a chat template gets the `messages` as `role: content` lines ending with
    `assistant:`: the chat answers, token for token, as a completion of that prompt."""
    from transformers import AutoTokenizer

    assert not getattr(AutoTokenizer.from_pretrained(tiny_gpt2), "chat_template", None)
    c = client(chat_server)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    chat = c.chat.completions.create(
        model="tiny-gpt2", messages=messages, max_tokens=6, temperature=0
    )
    done = c.completions.create(
        model="tiny-gpt2",
        prompt="system: Be brief.\nuser: Hi\nassistant:",
        max_tokens=6,
        temperature=0,
    )
    assert chat.choices[0].message.content == done.choices[0].text
    assert chat.usage is not None and done.usage is not None
    assert chat.usage.prompt_tokens == done.usage.prompt_tokens


def test_streamed_completion_ends_with_a_finish_reason(chat_server: Server) -> None:
    """docs/spec.md, OpenAI-compatible routes (`POST /completions`): `stream: true` sends chunks,
    the last with its `finish_reason`."""
    chunks = list(
        client(chat_server).completions.create(
            model="tiny-gpt2", prompt="Hi", max_tokens=4, stream=True
        )
    )
    assert chunks[-1].choices[0].finish_reason in ("length", "stop")


def test_wrong_key_raises_the_clients_authentication_error(chat_server: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(chat_server, key="wrong").models.list()
    assert caught.value.body["code"] == "invalid_api_key"  # type: ignore[index]


def test_over_the_limit_raises_the_clients_rate_limit_error(chat_server: Server) -> None:
    tight = openai.OpenAI(base_url=chat_server.url + "/v1-tight", api_key="key-one", max_retries=0)
    for _ in range(2):
        tight.models.list()
    with pytest.raises(openai.RateLimitError):
        tight.models.list()


def test_bad_requests_are_openai_shaped_errors(chat_server: Server) -> None:
    with pytest.raises(openai.BadRequestError):
        client(chat_server).completions.create(model="tiny-gpt2", prompt="Hi", max_tokens=65)
    with pytest.raises(openai.BadRequestError) as caught:
        client(chat_server).chat.completions.create(model="tiny-gpt2", messages=[])
    assert caught.value.body["type"] == "invalid_request_error"  # type: ignore[index]


def test_embeddings_match_the_embed_route(embed_server: Server) -> None:
    """docs/spec.md, OpenAI-compatible routes (`POST /embeddings`): `input` (a list or a string)
    gives the vectors `embed` gives, in `encoding_format` `base64` (what the client asks for by
    default) and `float`, with `usage`, on an app that batches."""
    import httpx

    texts = ["A man plays a guitar.", "The market fell."]
    made = client(embed_server).embeddings.create(model="all-MiniLM-L6-v2", input=texts)
    assert [d.index for d in made.data] == [0, 1]
    assert made.usage.prompt_tokens > 0
    plain = httpx.post(
        embed_server.url + "/embed",
        json={"texts": texts},
        headers={"Authorization": "Bearer key-one"},
    ).json()["embeddings"]
    for got, expected in zip(made.data, plain, strict=True):
        assert max(abs(a - b) for a, b in zip(got.embedding, expected, strict=True)) < 1e-5
    floats = client(embed_server).embeddings.create(
        model="all-MiniLM-L6-v2", input="hello", encoding_format="float"
    )
    assert len(floats.data[0].embedding) == 384


def test_a_browser_preflight_for_chat_completions_is_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, CORS: the preflight allows the methods the routes really serve; an
    `openai` route serves POST (completions, chat, embeddings) and GET (/v1/models)."""
    from conftest import build_and_import, write_spec
    from fastapi.testclient import TestClient

    monkeypatch.setenv("API_KEYS", "k")
    spec = {
        "name": "chat",
        "model": {"id": "gpt2", "task": "text-generation"},
        "auth": {"mode": "bearer"},
        "cors": {"origins": ["https://app.example"]},
        "routes": [{"path": "/v1", "action": "openai"}],
    }
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    client = TestClient(module.create_app(module.model))
    for method, path in (("POST", "/v1/chat/completions"), ("GET", "/v1/models")):
        answer = client.options(
            path,
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": method,
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert answer.status_code == 200, answer.text
        assert method in answer.headers["access-control-allow-methods"]
