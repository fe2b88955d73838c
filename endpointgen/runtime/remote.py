"""Several models (`models:`): a CPU web tier whose routes call each model's Modal class.

`remote.serve(writer, WriterModel)` makes the web tier's `writer` answer through the
`WriterModel` class: the same routes, checks and batching as in-process, with each engine
call a `.remote.aio` call to a container on the model's own GPU type.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from endpointgen.runtime.tasks import ENGINE_METHODS, Model

__all__ = ["RemoteEngine", "serve"]


class RemoteEngine:
    """The calls a local engine answers, answered by the model's own Modal class.

    The web tier awaits them (`.remote.aio`, `.remote_gen.aio`): a call in flight holds
    no thread, so neither a cold-starting model class nor many open streams ever hold up
    its event loop or queue behind a thread pool.
    """

    def __init__(self, cls: Any) -> None:
        self.model = cls()

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

    async def stream(self, request: Any) -> AsyncIterator[tuple[str, Any]]:
        """("token", text) pairs as the model class generates, then ("done", totals)."""
        async for kind, value in self.model.tokens.remote_gen.aio(request):
            yield kind, value


def serve(model: Model, cls: Any) -> Model:
    """`model`, answered by the Modal class `cls`: "ready" from the web tier's side; a
    model that failed to load answers its calls with an error, a 500 here."""
    model.serve(RemoteEngine(cls))
    return model
