"""Several models (`models:`): a CPU web tier whose routes call each model's Modal class.

`remote.serve(writer, WriterModel)` makes the web tier's `writer` answer through the
`WriterModel` class: the same routes, checks and batching as in-process, with each engine
call a `.remote.aio` call to a container on the model's own GPU type.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from endpointgen.runtime.tasks import ENGINE_METHODS, LoadFailed, Model

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

    @property
    def store(self) -> Any:
        if self._store is None:
            import modal

            self._store = modal.Dict.from_name(self.name, create_if_missing=True)
        return self._store

    async def cancel(self, request_id: str) -> None:
        put = self.store.put
        aio = getattr(put, "aio", None)
        await (
            aio(request_id, True) if aio is not None else asyncio.to_thread(put, request_id, True)
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
        if method not in ENGINE_METHODS:
            raise ValueError(f"no engine method {method!r}")
        try:
            return await self.model.call.remote.aio(method, *args)
        except LoadFailed as exc:
            raise self.failed(exc) from None

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

    async def stream(self, request: Any, request_id: str) -> AsyncIterator[tuple[str, Any]]:
        """("token", text) pairs as the model class generates, then ("done", totals).
        Closed before "done" (the client went away), it tells the model class to stop."""
        finished = False
        try:
            async for kind, value in self.model.tokens.remote_gen.aio(request, request_id):
                finished = kind == "done"
                yield kind, value
        except LoadFailed as exc:
            finished = True
            raise self.failed(exc) from None
        finally:
            if not finished and self.cancels is not None:
                await self.cancels.cancel(request_id)


def serve(model: Model, cls: Any, cancels: Cancels | None = None) -> Model:
    """`model`, answered by the Modal class `cls`. "ready" from the web tier's side until
    a call learns that the class cannot load (`LoadFailed`): then its routes and
    `health` answer 503 with the short reason, for `RemoteEngine.RETRY_AFTER` seconds,
    before calls go through again. `cancels` carries a stream's client leaving to the
    model class."""
    model.serve(RemoteEngine(cls, cancels, served=model))
    return model
