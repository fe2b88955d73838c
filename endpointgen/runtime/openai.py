"""OpenAI-compatible routes, so existing OpenAI clients work unchanged: `/models`,
`/completions` and `/chat/completions` (streamed or not) for a text generator, and
`/embeddings` for an embedder. Errors under the prefix take OpenAI's shape.

An option OpenAI defines that this server does not honour (`tools`, `response_format`,
`logprobs`, ...) is a 400 naming it (`param`), never an answer made without it."""

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

LENIENT = ConfigDict(strict=True)  # options OpenAI does not define are ignored
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


NO_TOOLS = "this server does not call tools"
NO_LOGPROBS = "this server does not return log probabilities"


def refused(param: str, why: str) -> http.Rejected:
    """A 400 on `param`: an OpenAI option this server does not honour."""
    return http.reject(param, f"`{param}` is not supported: {why}")


class StreamOptions(BaseModel):
    model_config = LENIENT

    include_usage: bool = Field(
        default=False, description="a last chunk with `usage` and no `choices`"
    )


class Sampling(BaseModel):
    """What completions and chat completions share: the model, and how to sample."""

    model_config = LENIENT

    model: str | None = None
    temperature: float = Field(default=1.0, ge=0, le=2)
    top_p: float = Field(default=1.0, gt=0, le=1)
    n: int = Field(default=1, ge=1, description="one choice per request: refused above 1")
    stream: bool = False
    stream_options: StreamOptions | None = Field(default=None, description="with `stream` only")
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        return stops_within(stop, OPENAI_STOPS)

    def check(self) -> None:
        """What the schema cannot say; past it, a 400 on the field (`Rejected`)."""
        if self.n > 1:
            raise refused("n", "one choice is made per request")
        if self.stream_options is not None and not self.stream:
            raise http.reject("stream_options", "`stream_options` needs `stream: true`")

    def usage_chunk(self) -> bool:
        """Whether a stream ends with a chunk of `usage` (OpenAI's `include_usage`)."""
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(Sampling):
    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=1)
    # OpenAI's legacy options this server refuses (a 400 on each), unless left as they are.
    logprobs: int | None = Field(default=None, description="refused unless null")
    best_of: int | None = Field(default=None, description="refused unless null or 1")
    suffix: str | None = Field(default=None, description="refused unless null or empty")
    echo: bool = Field(default=False, description="refused unless false")

    def check(self) -> None:
        super().check()
        if self.logprobs is not None:
            raise refused("logprobs", NO_LOGPROBS)
        if self.best_of not in (None, 1):
            raise refused("best_of", "one completion is made per request")
        if self.suffix:
            raise refused("suffix", "completions only continue the prompt")
        if self.echo:
            raise refused("echo", "the answer holds the completion only")


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
    # OpenAI's options this server refuses (a 400 on each), unless left as they are.
    tools: list[dict[str, Any]] | None = Field(default=None, description="refused unless empty")
    tool_choice: str | dict[str, Any] | None = Field(
        default=None, description='refused unless null or "none"'
    )
    functions: list[dict[str, Any]] | None = Field(default=None, description="refused unless empty")
    function_call: str | dict[str, Any] | None = Field(
        default=None, description='refused unless null or "none"'
    )
    response_format: dict[str, Any] | None = Field(
        default=None, description='refused unless null or {"type": "text"}'
    )
    logprobs: bool | None = Field(default=None, description="refused unless null or false")
    top_logprobs: int | None = Field(default=None, description="refused unless null or 0")

    def check(self) -> None:
        super().check()
        for param in ("tools", "functions"):
            if getattr(self, param):
                raise refused(param, NO_TOOLS)
        for param in ("tool_choice", "function_call"):
            if getattr(self, param) not in (None, "none"):
                raise refused(param, NO_TOOLS)
        if self.response_format not in (None, {"type": "text"}):
            raise refused("response_format", 'the text is not constrained: only {"type": "text"}')
        if self.logprobs:
            raise refused("logprobs", NO_LOGPROBS)
        if self.top_logprobs:
            raise refused("top_logprobs", NO_LOGPROBS)


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
    body.check()
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
        return http.EventStream(_completion_chunks(pieces, made, body.usage_chunk()))
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
    body.check()
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
        return http.EventStream(_chat_chunks(pieces, made, body.usage_chunk()))
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


def _usage_chunk(made: dict[str, Any], totals: dict[str, Any]) -> str:
    """OpenAI's last chunk with `include_usage`: no choices, the request's token counts."""
    counts = usage(totals["prompt_tokens"], totals["tokens_generated"])
    return http.sse(None, {**made, "choices": [], "usage": counts})


STREAM_FAILED = {"error": {"message": "generation failed", "type": "server_error"}}


async def _completion_chunks(
    pieces: Pieces, made: dict[str, Any], with_usage: bool = False
) -> AsyncIterator[str]:
    made = {**made, "usage": None} if with_usage else made  # as OpenAI's chunks carry it
    async with aclosing(pieces):
        async for kind, value in pieces:
            if kind == "token":
                yield _chunk(made, text=value, logprobs=None, finish_reason=None)
            elif kind == "done":
                reason = finish(value["finish_reason"])
                yield _chunk(made, text="", logprobs=None, finish_reason=reason)
                if with_usage:
                    yield _usage_chunk(made, value)
            else:
                yield f"data: {json.dumps(STREAM_FAILED)}\n\n"
    yield "data: [DONE]\n\n"


async def _chat_chunks(
    pieces: Pieces, made: dict[str, Any], with_usage: bool = False
) -> AsyncIterator[str]:
    made = {**made, "object": "chat.completion.chunk"}
    made = {**made, "usage": None} if with_usage else made
    async with aclosing(pieces):
        yield _chunk(made, delta={"role": "assistant", "content": ""}, finish_reason=None)
        async for kind, value in pieces:
            if kind == "token":
                yield _chunk(made, delta={"content": value}, finish_reason=None)
            elif kind == "done":
                yield _chunk(made, delta={}, finish_reason=finish(value["finish_reason"]))
                if with_usage:
                    yield _usage_chunk(made, value)
            else:
                yield f"data: {json.dumps(STREAM_FAILED)}\n\n"
    yield "data: [DONE]\n\n"
