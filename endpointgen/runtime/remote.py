"""Several models (`models:`): a CPU web tier whose routes call each model's Modal class.

`remote.serve(writer, WriterModel)` makes the web tier's `writer` answer through the
`WriterModel` class: the same routes, checks and batching as in-process, with each engine
call a `.remote.aio` call to a container on the model's own GPU type. A generation is one
round trip with its checks (`tasks.Asked`): one call, or one stream whose first item says
whether the request passed them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

from endpointgen.runtime import http
from endpointgen.runtime.tasks import CALLS, ENGINE_METHODS, LoadFailed, Model, Rejected

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
    """The calls a local engine answers, answered by the model's own Modal class.

    The web tier awaits them (`.remote.aio`, `.remote_gen.aio`): a call in flight holds
    no thread, so neither a cold-starting model class nor many open streams ever hold up
    its event loop or queue behind a thread pool.
    """

    RETRY_AFTER = 30.0  # seconds a class that failed to load is answered for with 503

    def __init__(
        self, cls: Any, cancels: Cancels | None = None, served: Model | None = None
    ) -> None:
        self.model = cls()
        self.cancels = cancels
        self.served = served

    def failed(self, exc: LoadFailed) -> Exception:
        """The class cannot load: the web-side model reports it, then tries again later."""
        reason = str(exc.args[0]) if exc.args else "LoadFailed"
        if self.served is None:
            return exc
        return self.served.unavailable(reason, self.RETRY_AFTER)

    async def ask(self, method: str, *args: Any) -> Any:
        """One call of the class's `call`; a request it rejected raises its `Rejected`."""
        if method not in CALLS:
            raise ValueError(f"no engine method {method!r}")
        try:
            answer = await self.model.call.remote.aio(method, *args)
        except LoadFailed as exc:
            raise self.failed(exc) from None
        if isinstance(answer, Rejected):
            raise answer
        return answer

    def __call__(self, items: list[Any]) -> Any:
        """For a handler's own code, which runs in a worker thread: a blocking call."""
        try:
            return self.model.call.remote("__call__", items)
        except LoadFailed as exc:
            raise self.failed(exc) from None

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in ENGINE_METHODS:
            raise AttributeError(method)

        def blocking(*args: Any) -> Any:
            try:
                return self.model.call.remote(method, *args)
            except LoadFailed as exc:
                raise self.failed(exc) from None

        return blocking

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


def serve(model: Model, cls: Any, cancels: Cancels | None = None) -> Model:
    """`model`, answered by the Modal class `cls`. "ready" from the web tier's side until
    a call learns that the class cannot load (`LoadFailed`): then its routes and
    `health` answer 503 with the short reason, for `RemoteEngine.RETRY_AFTER` seconds,
    before calls go through again. `cancels` carries a stream's client leaving to the
    model class."""
    model.serve(RemoteEngine(cls, cancels, served=model))
    return model
