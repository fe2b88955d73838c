"""Several models (`models:`): a CPU web tier whose routes call each model's Modal class.

`remote.serve(writer, WriterModel)` makes the web tier's `writer` answer through the
`WriterModel` class: the same routes, checks and batching as in-process, with each engine
call a `.remote.aio` call to a container on the model's own GPU type.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from endpointgen.runtime.tasks import ENGINE_METHODS, Model

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

    def __init__(self, cls: Any, cancels: Cancels | None = None) -> None:
        self.model = cls()
        self.cancels = cancels

    async def ask(self, method: str, *args: Any) -> Any:
        if method not in ENGINE_METHODS:
            raise ValueError(f"no engine method {method!r}")
        return await self.model.call.remote.aio(method, *args)

    def __call__(self, items: list[Any]) -> Any:
        """For a handler's own code, which runs in a worker thread: a blocking call."""
        return self.model.call.remote("__call__", items)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in ENGINE_METHODS:
            raise AttributeError(method)
        return lambda *args: self.model.call.remote(method, *args)

    async def stream(self, request: Any, request_id: str) -> AsyncIterator[tuple[str, Any]]:
        """("token", text) pairs as the model class generates, then ("done", totals).
        Closed before "done" (the client went away), it tells the model class to stop."""
        finished = False
        try:
            async for kind, value in self.model.tokens.remote_gen.aio(request, request_id):
                finished = kind == "done"
                yield kind, value
        finally:
            if not finished and self.cancels is not None:
                await self.cancels.cancel(request_id)


def serve(model: Model, cls: Any, cancels: Cancels | None = None) -> Model:
    """`model`, answered by the Modal class `cls`: "ready" from the web tier's side; a
    model that failed to load answers its calls with an error, a 500 here. `cancels`
    carries a stream's client leaving to the model class."""
    model.serve(RemoteEngine(cls, cancels))
    return model
