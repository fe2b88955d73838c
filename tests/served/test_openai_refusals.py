"""OpenAI's options that the served app does not honour are refused, never ignored, and
a stream with `stream_options.include_usage` ends with OpenAI's usage chunk: the official
`openai` client against a real `endpointgen serve` of a tiny GPT-2."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import write_spec
from servers import Server

pytestmark = pytest.mark.slow

TOOL = {"type": "function", "function": {"name": "now", "parameters": {"type": "object"}}}
FUNCTION = {"name": "now", "parameters": {"type": "object"}}
MESSAGES = [{"role": "user", "content": "Hello"}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Iterator[Server]:
    spec = {
        "name": "chat",
        "model": {"id": str(tiny_gpt2), "task": "text-generation"},
        "auth": {"mode": "bearer"},
        "routes": [{"path": "/v1", "action": "openai", "max_tokens": 64}],
    }
    running = Server(write_spec(tmp_path_factory.mktemp("chat"), spec))
    running.wait_ready()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="key-one", max_retries=0)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [TOOL]}, "tools"),
        ({"tools": [TOOL], "stream": True}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "now"}}}, "tool_choice"),
        ({"functions": [FUNCTION]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "response_format",
        ),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"n": 2}, "n"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),  # without `stream`
    ],
)
def test_chat_refuses_what_it_does_not_honour(
    client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    """docs/spec.md, OpenAI-compatible routes (`tools`) (`tool_choice`) (`response_format`)
    (`logprobs`) (`n`) (`stream_options`): an option the server does not honour is a 400
    in OpenAI's shape whose `param` names it, so the client raises `BadRequestError`; it
    is never answered as if the option had not been sent, streamed or not."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="tiny-gpt2", messages=MESSAGES, max_tokens=4, **options
        )
    assert caught.value.param == param
    body: Any = caught.value.body
    assert body["type"] == "invalid_request_error" and f"`{param}`" in body["message"]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"logprobs": 1}, "logprobs"),
        ({"logprobs": 0}, "logprobs"),
        ({"n": 2}, "n"),
        ({"best_of": 2}, "best_of"),
        ({"suffix": " the end."}, "suffix"),
        ({"echo": True}, "echo"),
        ({"echo": True, "stream": True}, "echo"),
        ({"stream_options": {"include_usage": True}}, "stream_options"),
    ],
)
def test_completions_refuse_what_they_do_not_honour(
    client: openai.OpenAI, options: dict[str, Any], param: str
) -> None:
    """docs/spec.md, OpenAI-compatible routes (`logprobs`) (`best_of`) (`n`) (`suffix`)
    (`echo`): the legacy completions options the server does not honour (`logprobs`, `n`
    above 1, `best_of` above 1, `suffix`, `echo`) are each a 400 naming the option."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny-gpt2", prompt="Hello", max_tokens=4, **options)
    assert caught.value.param == param
    body: Any = caught.value.body
    assert body["type"] == "invalid_request_error" and f"`{param}`" in body["message"]


def test_options_left_as_they_are_are_accepted(client: openai.OpenAI) -> None:
    """docs/spec.md, OpenAI-compatible routes (`tools`) (`response_format`) (`best_of`):
    options sent with the value that asks for nothing more (no tools, `tool_choice`
    "none", `response_format` text, `logprobs` false, `top_logprobs` 0, `n` 1, `best_of`
    1, an empty `suffix`, `echo` false) answer as the request without them does."""
    c = client
    plain = c.chat.completions.create(
        model="tiny-gpt2", messages=MESSAGES, max_tokens=5, temperature=0
    )
    spelled = c.chat.completions.create(
        model="tiny-gpt2",
        messages=MESSAGES,
        max_tokens=5,
        temperature=0,
        tools=[],
        tool_choice="none",
        response_format={"type": "text"},
        logprobs=False,
        top_logprobs=0,
        n=1,
    )
    assert spelled.choices[0].message.content == plain.choices[0].message.content
    one = c.completions.create(model="tiny-gpt2", prompt="Hello", max_tokens=5, temperature=0)
    same = c.completions.create(
        model="tiny-gpt2",
        prompt="Hello",
        max_tokens=5,
        temperature=0,
        n=1,
        best_of=1,
        suffix="",
        echo=False,
    )
    assert same.choices[0].text == one.choices[0].text


def test_chat_stream_with_include_usage_ends_with_the_usage_chunk(client: openai.OpenAI) -> None:
    """docs/spec.md, OpenAI-compatible routes (`stream_options`): with `include_usage` the
    stream's last chunk before `[DONE]` has no choices and the request's `usage`, the
    counts the same request answers unstreamed; every chunk before it has `usage` null.
    Without it, no such chunk."""
    options: dict[str, Any] = {"model": "tiny-gpt2", "messages": MESSAGES, "temperature": 0}
    whole = client.chat.completions.create(max_tokens=7, **options)
    chunks = list(
        client.chat.completions.create(
            max_tokens=7, stream=True, stream_options={"include_usage": True}, **options
        )
    )
    *streamed, last = chunks
    assert last.choices == [] and last.usage is not None and whole.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens > 0
    assert last.usage.completion_tokens == whole.usage.completion_tokens > 0
    total = last.usage.prompt_tokens + last.usage.completion_tokens
    assert last.usage.total_tokens == total
    assert all(ch.usage is None and len(ch.choices) == 1 for ch in streamed)
    text = "".join(ch.choices[0].delta.content or "" for ch in streamed)
    assert text == whole.choices[0].message.content
    assert streamed[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    plain = list(client.chat.completions.create(max_tokens=7, stream=True, **options))
    assert all(len(ch.choices) == 1 for ch in plain)
    off = client.chat.completions.create(
        max_tokens=7, stream=True, stream_options={"include_usage": False}, **options
    )
    assert all(len(ch.choices) == 1 for ch in off)


def test_completion_stream_with_include_usage_ends_with_the_usage_chunk(
    client: openai.OpenAI, tiny_gpt2: Path
) -> None:
    """docs/spec.md, OpenAI-compatible routes (`stream_options`): a streamed completion
    with `include_usage` ends with the usage chunk too: the prompt's tokens as the model's
    tokenizer counts them, the completion's as the unstreamed request counts them."""
    from transformers import AutoTokenizer

    prompt = "The quick brown fox"
    options: dict[str, Any] = {"model": "tiny-gpt2", "prompt": prompt, "temperature": 0}
    whole = client.completions.create(max_tokens=9, **options)
    chunks = list(
        client.completions.create(
            max_tokens=9, stream=True, stream_options={"include_usage": True}, **options
        )
    )
    *streamed, last = chunks
    assert last.choices == [] and last.usage is not None and whole.usage is not None
    prompt_tokens = len(AutoTokenizer.from_pretrained(tiny_gpt2)(prompt)["input_ids"])
    assert last.usage.prompt_tokens == prompt_tokens
    assert last.usage.completion_tokens == whole.usage.completion_tokens
    assert last.usage.total_tokens == prompt_tokens + whole.usage.completion_tokens
    assert "".join(ch.choices[0].text for ch in streamed) == whole.choices[0].text
