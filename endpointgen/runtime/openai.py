"""OpenAI-compatible routes, so existing OpenAI clients work unchanged: `/models`,
`/completions` and `/chat/completions` (streamed or not) for a text generator, and
`/embeddings` for an embedder. Errors under the prefix take OpenAI's shape."""

from __future__ import annotations

import base64
import json
import struct
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from endpointgen.runtime import http
from endpointgen.runtime.tasks import (
    MAX_CHARS,
    MAX_ITEMS,
    MAX_TOKENS,
    Asked,
    Chat,
    GenerateRequest,
    Model,
    Pieces,
    check_texts,
    stops_within,
)

__all__ = [
    "ERRORS",
    "STREAMED",
    "ChatRequest",
    "CompletionRequest",
    "EmbeddingRequest",
    "chat",
    "completions",
    "embeddings",
    "models",
]

LENIENT = ConfigDict(strict=True)  # unknown OpenAI options are ignored
CHAT_DEFAULT_TOKENS = 256
OPENAI_STOPS = 4  # as OpenAI allows
# The roles a chat message may have; `developer` is OpenAI's newer name for `system`.
ROLES = {
    "system": "system",
    "developer": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}


class Sampling(BaseModel):
    """What completions and chat completions share: the model, and how to sample."""

    model_config = LENIENT

    model: str | None = None
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=1, description="one choice per request")
    stream: bool = False
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        return stops_within(stop, OPENAI_STOPS)


class CompletionRequest(Sampling):
    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=1)


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]] | None = None

    def turn(self) -> dict[str, str]:
        text = self.content or ""
        if isinstance(self.content, list):  # [{"type": "text", "text": ...}, ...]
            text = "".join(str(part.get("text", "")) for part in self.content)
        return {"role": ROLES[self.role], "content": str(text)}


class ChatRequest(Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class EmbeddingRequest(BaseModel):
    model_config = LENIENT

    model: str | None = None
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorBody(BaseModel):
    error: OpenAIError


def error(status: int, message: str, param: str | None = None) -> JSONResponse:
    """OpenAI's error body, so its clients raise their own exception types."""
    kinds = {401: "invalid_api_key", 404: "not_found", 429: "rate_limit_exceeded"}
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"message": message, "type": kind, "param": param, "code": kinds.get(status)}
    return JSONResponse({"error": body}, status)


ERRORS = http.ErrorFormat(error, OpenAIErrorBody)
# A completions route answers JSON, or Server-Sent Events when the body says `stream`.
STREAMED: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {"schema": http.SSE_EVENT}}},
}


def usage(prompt: int, completion: int) -> dict[str, int]:
    counts = {"prompt_tokens": prompt, "completion_tokens": completion}
    return {**counts, "total_tokens": prompt + completion}


def packed(vector: list[float]) -> str:
    """Little-endian float32, base64: OpenAI's compact embedding encoding."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def finish(reason: str) -> str:
    return "length" if reason == "length" else "stop"


def models(model: Model, owner: str) -> dict[str, Any]:
    listed = {"id": model.name, "object": "model", "created": 0, "owned_by": owner}
    return {"object": "list", "data": [listed]}


def sampling(body: Sampling) -> dict[str, Any]:
    """How the request asks to sample, as GenerateRequest's fields."""
    return {
        "temperature": body.temperature,
        "top_p": body.top_p,
        "seed": body.seed,
        "stop": body.stop,
    }


async def completions(
    model: Model,
    body: CompletionRequest,
    request: Request,
    max_tokens: int = MAX_TOKENS,
    max_chars: int = MAX_CHARS,
) -> Any:
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1:
        raise http.reject("prompt", "send one prompt per request")
    generate = GenerateRequest(
        prompt=prompts[0] or " ", max_tokens=body.max_tokens, **sampling(body)
    )
    asked = Asked(generate, max_tokens, max_chars)
    made = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time())}
    made |= {"model": model.name, "object": "text_completion"}
    if body.stream:
        pieces = await model.opened(asked, http.request_id(request))
        return http.EventStream(_completion_chunks(pieces, made))
    result = await model.generated(asked)
    choice = {"index": 0, "text": result["text"], "logprobs": None}
    choice["finish_reason"] = finish(result["finish_reason"])
    totals = usage(result["prompt_tokens"], result["tokens_generated"])
    return {**made, "choices": [choice], "usage": totals}


async def chat(
    model: Model,
    body: ChatRequest,
    request: Request,
    max_tokens: int = MAX_TOKENS,
    max_chars: int = MAX_CHARS,
) -> Any:
    # Without max_tokens: OpenAI's "as much as fits"; here, up to a modest default.
    wanted = body.max_completion_tokens or body.max_tokens
    if any(m.role not in ROLES for m in body.messages):
        raise http.reject("messages", f"a message's role must be one of {', '.join(ROLES)}")
    turns = [m.turn() for m in body.messages]
    asked = Asked(Chat(turns, wanted, CHAT_DEFAULT_TOKENS, sampling(body)), max_tokens, max_chars)
    made: dict[str, Any] = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time())}
    made["model"] = model.name
    if body.stream:
        pieces = await model.opened(asked, http.request_id(request))
        return http.EventStream(_chat_chunks(pieces, made))
    result = await model.generated(asked)
    message = {"role": "assistant", "content": result["text"]}
    choice = {"index": 0, "message": message, "finish_reason": finish(result["finish_reason"])}
    totals = usage(result["prompt_tokens"], result["tokens_generated"])
    return {**made, "object": "chat.completion", "choices": [choice], "usage": totals}


async def embeddings(
    model: Model,
    body: EmbeddingRequest,
    max_items: int = MAX_ITEMS,
    max_chars: int = MAX_CHARS,
) -> dict[str, Any]:
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts:
        raise http.reject("input", "send at least one text")
    check_texts("input", texts, max_items, max_chars)
    vectors: list[Any] = await model.run(texts)
    tokens = await model.ask("count_tokens", texts)
    if body.encoding_format == "base64":  # what OpenAI's Python client asks for
        vectors = [packed(vector) for vector in vectors]
    data = [
        {"object": "embedding", "index": i, "embedding": vector} for i, vector in enumerate(vectors)
    ]
    totals = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": model.name, "usage": totals}


def _chunk(made: dict[str, Any], **choice: Any) -> str:
    """One streamed chunk, as OpenAI's `data: {...}` event."""
    return http.sse(None, {**made, "choices": [{"index": 0, **choice}]})


STREAM_FAILED = {"error": {"message": "generation failed", "type": "server_error"}}


async def _completion_chunks(pieces: Pieces, made: dict[str, Any]) -> AsyncIterator[str]:
    async with aclosing(pieces):
        async for kind, value in pieces:
            if kind == "token":
                yield _chunk(made, text=value, logprobs=None, finish_reason=None)
            elif kind == "done":
                reason = finish(value["finish_reason"])
                yield _chunk(made, text="", logprobs=None, finish_reason=reason)
            else:
                yield f"data: {json.dumps(STREAM_FAILED)}\n\n"
    yield "data: [DONE]\n\n"


async def _chat_chunks(pieces: Pieces, made: dict[str, Any]) -> AsyncIterator[str]:
    made = {**made, "object": "chat.completion.chunk"}
    async with aclosing(pieces):
        yield _chunk(made, delta={"role": "assistant", "content": ""}, finish_reason=None)
        async for kind, value in pieces:
            if kind == "token":
                yield _chunk(made, delta={"content": value}, finish_reason=None)
            elif kind == "done":
                yield _chunk(made, delta={}, finish_reason=finish(value["finish_reason"]))
            else:
                yield f"data: {json.dumps(STREAM_FAILED)}\n\n"
    yield "data: [DONE]\n\n"
