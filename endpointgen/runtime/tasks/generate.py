"""Text generation: a generation as a route asks for it (`Asked`, `Chat`), its checks
(`preparing`), and how it runs and streams, here or in a model class's container."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import Request

from endpointgen.runtime import http
from endpointgen.runtime.http import Rejected
from endpointgen.runtime.metrics import METRICS
from endpointgen.runtime.tasks.calls import Calls
from endpointgen.runtime.tasks.checks import MAX_CHARS, MAX_TOKENS
from endpointgen.runtime.tasks.schemas import GenerateRequest, GenerateResponse


@dataclass(frozen=True)
class Chat:
    """A chat's turns and how to sample: the model's chat template makes them a prompt.
    `max_tokens` None asks for as many tokens as fit after it, up to `fill`."""

    turns: list[dict[str, str]]
    max_tokens: int | None
    fill: int
    sampling: dict[str, Any]  # GenerateRequest's temperature, top_p, seed and stop


@dataclass(frozen=True)
class Asked:
    """A generation as a route asks for it, with the route's ceilings: checked (then run)
    where the model is, so a model class in another container checks it in the same call
    as it generates."""

    request: GenerateRequest | Chat
    max_tokens: int = MAX_TOKENS
    max_chars: int = MAX_CHARS


def within(body: GenerateRequest | Chat, max_tokens: int, max_chars: int) -> None:
    """The route's ceilings on a generation, which need no model (of a chat's, only
    max_tokens when it names a number: its prompt is the model's template's to make)."""
    if body.max_tokens is not None and body.max_tokens > max_tokens:
        raise Rejected("max_tokens", f"must be at most {max_tokens}")
    if isinstance(body, GenerateRequest) and len(body.prompt) > max_chars:
        raise Rejected("prompt", f"must be at most {max_chars} characters")


# A generation as it goes: ("token", text) pairs, then ("done", totals) or ("error", None).
Pieces = AsyncGenerator[tuple[str, Any]]
# Checking a generation: each engine call it needs, (method, args), answered by `send`.
Steps = Generator[tuple[str, tuple[Any, ...]], Any, GenerateRequest]


def preparing(asked: Asked) -> Steps:
    """The generation `asked` is for, checked: a chat's prompt made by the model's
    template, then the route's ceilings and the model's context (`Rejected` when it fails
    one). It asks for each engine call it needs and is sent the answer, so the checks are
    the same whether the engine is here or in a model class's container."""
    body = asked.request
    if isinstance(body, Chat):
        prompt = yield "chat_prompt", (body.turns,)
        wanted = body.max_tokens
        if wanted is None:  # OpenAI's "as much as fits"; here, up to `fill`
            room = (yield "context_left", (prompt,)) or body.fill
            wanted = max(1, min(body.fill, asked.max_tokens, room))
        body = GenerateRequest(prompt=prompt or " ", max_tokens=wanted, **body.sampling)
    within(body, asked.max_tokens, asked.max_chars)
    problem = yield "context_problem", (body,)
    if problem:
        raise Rejected("prompt", problem)
    return body


class Generating(Calls):
    """A model's text generation routes: `generate`, and `stream` as it goes."""

    async def prepared(self, asked: Asked) -> GenerateRequest:
        """The generation `asked` is for, checked here (`preparing`): each engine call
        the checks need is one `ask`."""
        steps = preparing(asked)
        answer: Any = None
        try:
            while True:
                method, args = steps.send(answer)
                answer = await self.ask(method, *args)
        except StopIteration as done:
            prepared: GenerateRequest = done.value
            return prepared

    async def generated(self, asked: Asked) -> dict[str, Any]:
        """The totals of the generation `asked` is for, after its checks (a 422 when it
        fails one). A model class in another container checks and generates in one call;
        the route's own ceilings are checked here first, which costs it no call."""
        if not self._remote():
            return dict(await self.ask("generate", await self.prepared(asked)))
        within(asked.request, asked.max_tokens, asked.max_chars)
        return dict(await self.ask("checked_generate", asked))

    async def generate(
        self, body: GenerateRequest, max_tokens: int = MAX_TOKENS, max_chars: int = MAX_CHARS
    ) -> GenerateResponse:
        return GenerateResponse(**await self.generated(Asked(body, max_tokens, max_chars)))

    async def stream(
        self,
        body: GenerateRequest,
        request: Request,
        max_tokens: int = MAX_TOKENS,
        max_chars: int = MAX_CHARS,
    ) -> http.EventStream:
        """Server-Sent Events: `token` events as text arrives, then `done` with the totals."""
        request_id = http.request_id(request)
        pieces = await self.opened(Asked(body, max_tokens, max_chars), request_id)
        return http.EventStream(self._events(pieces, request_id))

    async def _events(self, pieces: Pieces, request_id: str) -> AsyncIterator[str]:
        async with aclosing(pieces):
            async for kind, value in pieces:
                if kind == "token":
                    yield http.sse("token", {"text": value})
                elif kind == "done":
                    yield http.sse("done", value)
                else:
                    yield http.sse("error", http.error_body(request_id, "generation failed"))

    async def opened(self, asked: Asked, request_id: str) -> Pieces:
        """The generation `asked` is for, as `generation` streams it, once its checks
        have passed: a failed one is raised here (its 422), before the route answers.

        A model class in another container checks in the stream it opens, and reports
        the outcome as the stream's first item, awaited here: ("checked", None), or
        ("rejected", the `Rejected`) and nothing more.
        """
        if not self._remote():
            return self.generation(await self.prepared(asked), request_id)
        within(asked.request, asked.max_tokens, asked.max_chars)
        http.starting_work()
        remote: Pieces = self.engine.stream(asked, request_id)
        first: tuple[str, Any] = await anext(remote, ("error", None))
        if first[0] == "rejected":
            await remote.aclose()
            raise first[1]
        ahead = [] if first[0] == "checked" else [first]
        return self._metered(self._relayed(remote, request_id, ahead))

    def generation(self, body: GenerateRequest, request_id: str) -> Pieces:
        """("token", text) pairs as text arrives, then ("done", totals) or ("error", None),
        for a request already checked.

        When the client goes away the iterator is closed, which stops the generation.
        """
        if self._remote():  # a model class: no thread held per stream
            return self._metered(self._relayed(self.engine.stream(body, request_id), request_id))
        return self._metered(self._generation(body, request_id))

    async def _metered(self, pieces: Pieces) -> Pieces:
        started = time.perf_counter()
        METRICS.calling(self.name, 1)
        try:
            async with aclosing(pieces):
                async for kind, value in pieces:
                    if kind == "done":
                        METRICS.generated(self.name, int(value["tokens_generated"]))
                    yield kind, value
        finally:
            METRICS.calling(self.name, -1)
            METRICS.model_call(self.name, "stream", time.perf_counter() - started)

    @staticmethod
    async def _relayed(
        remote: Pieces,
        request_id: str,
        ahead: list[tuple[str, Any]] | None = None,
    ) -> AsyncGenerator[tuple[str, Any]]:
        """A model class's stream (after the pieces `ahead` of it, already read) up to its
        end; one that breaks off ends with ("error", None), the reason logged."""
        async with aclosing(remote):
            try:
                for kind, value in ahead or []:
                    yield kind, value
                    if kind != "token":
                        return
                async for kind, value in remote:
                    yield kind, value
                    if kind != "token":
                        return
            except Exception as exc:
                http.log.error("request %s: generation failed: %s", request_id, exc)
                yield "error", None

    async def _generation(
        self, body: GenerateRequest, request_id: str
    ) -> AsyncGenerator[tuple[str, Any]]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()
        engine = self.engine

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, ("token", piece))

        start = self._start()
        if start is None:  # a thread waits on the generation
            worker = loop.run_in_executor(None, engine.generate, body, on_text, cancelled)
        else:  # the engine answers a future
            worker = asyncio.wrap_future(start(body, on_text, cancelled))
        worker.add_done_callback(partial(self._finished, pieces, request_id))
        try:
            while True:
                kind, value = await pieces.get()
                yield kind, value
                if kind != "token":
                    break
        finally:
            cancelled.set()  # the generation stops at its next token
            del worker

    @staticmethod
    def _finished(
        pieces: asyncio.Queue[tuple[str, Any]], request_id: str, done: asyncio.Future[Any]
    ) -> None:
        """A generation's end, from its thread or the decode loop: ("done", totals), or
        ("error", None) with the reason logged."""
        if done.cancelled():
            return
        if done.exception() is not None:
            http.log.error("request %s: generation failed: %s", request_id, done.exception())
            pieces.put_nowait(("error", None))
            return
        result = done.result()
        if result["finish_reason"] == "cancelled":
            http.log.info(
                "request %s: client went away; generation stopped after %d tokens",
                request_id,
                result["tokens_generated"],
            )
        pieces.put_nowait(("done", result))
