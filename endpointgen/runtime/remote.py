"""Several models (`models:`): a CPU web tier whose routes call each model's Modal class.

`remote.serve(writer, WriterModel)` makes the web tier's `writer` answer through the
`WriterModel` class: the same routes, checks and batching as in-process, with each engine
call a `.remote.aio` call to a container on the model's own GPU type, of the class's
typed method for it (`run`, `count_tokens`, `checked_generate`, `tokens`, ...). A
generation is one round trip with its checks (`tasks.Asked`): one call, or one stream
whose first item says whether the request passed them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Iterator
from typing import Any

from endpointgen.runtime import http
from endpointgen.runtime.tasks import Asked, GenerateRequest, LoadFailed, Model, Rejected

__all__ = ["Cancels", "RemoteEngine", "serve"]


class Cancels:
    """Which streams' clients went away, in a `modal.Dict` the web tier and the model
    classes share (closing a `.remote_gen` iterator tells the model class nothing).

    The web tier marks a request id when its client leaves mid-stream; the model class,
    generating for that id, asks twice a second and stops, and removes the mark when its
    generation ends. (A client that leaves between the last token and the end can leave
    one small mark; Modal drops Dict entries left untouched for a week.)
    """

    def __init__(self, app: str, store: Any = None) -> None:
        self.name = f"{app}-cancelled"
        self._store = store
        self._writing: set[asyncio.Task[None]] = set()  # marks on their way to the Dict

    @property
    def store(self) -> Any:
        if self._store is None:
            import modal

            self._store = modal.Dict.from_name(self.name, create_if_missing=True)
        return self._store

    async def cancel(self, request_id: str) -> None:
        """Mark `request_id`'s stream cancelled.

        Called while the stream's request is torn down, where every await of its own is
        cancelled too: the write is a task of its own, which outlives the request (kept
        here until it ends). Waited on when the caller can wait; a failed write is
        logged, never raised.
        """
        writing = asyncio.get_running_loop().create_task(self._put(request_id))
        self._writing.add(writing)
        writing.add_done_callback(self._writing.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(writing)

    async def _put(self, request_id: str) -> None:
        try:
            put = self.store.put
            aio = getattr(put, "aio", None)
            if aio is not None:
                await aio(request_id, True)
            else:
                await asyncio.to_thread(put, request_id, True)
        except Exception as exc:
            http.log.warning(
                "request %s: could not tell the model class that the client went away "
                "(%s); its generation runs to its end",
                request_id,
                exc,
            )

    def watch(self, request_id: str) -> Watch:
        """For the model class, generating for `request_id`."""
        return Watch(self.store, request_id)


class Watch:
    """Asked in the model class's worker thread, so the blocking Dict calls are fine."""

    def __init__(self, store: Any, request_id: str) -> None:
        self.store = store
        self.request_id = request_id

    def __call__(self) -> bool:
        return bool(self.store.contains(self.request_id))

    def forget(self) -> None:
        """The generation ended: no mark for it stays behind."""
        self.store.pop(self.request_id, None)


class RemoteEngine:
    """A model's own Modal class, in the web tier's `Model` where a loaded engine would be.

    Its methods are the engine's, each a call of the class's method of the same purpose
    (`engine(items)` is the class's `run`): blocking (`.remote`), as a handler's own code
    calls its model, in a worker thread. The routes await the same calls through `ask`
    (`.remote.aio`): a call in flight holds no thread, so neither a cold-starting model
    class nor many open streams ever hold up the event loop or queue behind a thread pool.
    A class that cannot load (`LoadFailed`) is the model's 503; a request the class's
    checks refuse is its `Rejected`.
    """

    RETRY_AFTER = 30.0  # seconds a class that failed to load is answered for with 503

    def __init__(
        self, cls: Any, cancels: Cancels | None = None, served: Model | None = None
    ) -> None:
        self.model = cls()
        self.cancels = cancels
        self.served = served
        self.ask = Awaited(self)

    def failed(self, exc: LoadFailed) -> Exception:
        """The class cannot load: the web-side model reports it, then tries again later."""
        reason = str(exc.args[0]) if exc.args else "LoadFailed"
        if self.served is None:
            return exc
        return self.served.unavailable(reason, self.RETRY_AFTER)

    @contextlib.contextmanager
    def reached(self) -> Iterator[None]:
        """A call of the class: one that cannot load is answered as `failed` says."""
        try:
            yield
        except LoadFailed as exc:
            raise self.failed(exc) from None

    def __call__(self, items: Any) -> Any:
        with self.reached():
            return self.model.run.remote(items)

    def count_tokens(self, texts: list[str]) -> int:
        with self.reached():
            counted: int = self.model.count_tokens.remote(texts)
        return counted

    def generate(self, request: GenerateRequest) -> dict[str, Any]:
        with self.reached():
            totals: dict[str, Any] = self.model.generate.remote(request)
        return totals

    def chat_prompt(self, turns: list[dict[str, str]]) -> str:
        with self.reached():
            prompt: str = self.model.chat_prompt.remote(turns)
        return prompt

    def context_left(self, prompt: str) -> int | None:
        with self.reached():
            left: int | None = self.model.context_left.remote(prompt)
        return left

    def context_problem(self, request: GenerateRequest) -> str | None:
        with self.reached():
            problem: str | None = self.model.context_problem.remote(request)
        return problem

    async def stream(self, request: Any, request_id: str) -> AsyncGenerator[tuple[str, Any]]:
        """The items of the class's `tokens` (`Model.tokens`): ("token", text) pairs as
        it generates, then ("done", totals). Closed or cancelled before its end (the
        client went away), it tells the model class to stop."""
        finished = False
        try:
            async for kind, value in self.model.tokens.remote_gen.aio(request, request_id):
                finished = kind in ("done", "rejected")
                yield kind, value
        except LoadFailed as exc:
            raise self.failed(exc) from None
        except (GeneratorExit, asyncio.CancelledError):
            if not finished and self.cancels is not None:
                await self.cancels.cancel(request_id)
            raise


class Awaited:
    """The calls the routes make of a model class (`Model.ask`), awaited (`.remote.aio`),
    each the engine's method of the same name: `engine.ask(items)` is `engine(items)`."""

    def __init__(self, engine: RemoteEngine) -> None:
        self.engine = engine
        self.model = engine.model

    async def __call__(self, items: Any) -> Any:
        with self.engine.reached():
            return await self.model.run.remote.aio(items)

    async def count_tokens(self, texts: list[str]) -> int:
        with self.engine.reached():
            counted: int = await self.model.count_tokens.remote.aio(texts)
        return counted

    async def checked_generate(self, asked: Asked) -> dict[str, Any]:
        """The generation `asked` is for, checked and run in the class's container: its
        totals; a request it refused raises its `Rejected`."""
        with self.engine.reached():
            answer: dict[str, Any] | Rejected = await self.model.checked_generate.remote.aio(asked)
        if isinstance(answer, Rejected):
            raise answer
        return answer


def serve(model: Model, cls: Any, cancels: Cancels | None = None) -> Model:
    """`model`, answered by the Modal class `cls`. "ready" from the web tier's side until
    a call learns that the class cannot load (`LoadFailed`): then its routes and
    `health` answer 503 with the short reason, for `RemoteEngine.RETRY_AFTER` seconds,
    before calls go through again. `cancels` carries a stream's client leaving to the
    model class."""
    model.serve(RemoteEngine(cls, cancels, served=model))
    return model
