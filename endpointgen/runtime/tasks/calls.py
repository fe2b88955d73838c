"""A model's engine calls: one at a time off the event loop, or batched with other
requests', counted in the metrics. The base every part of `Model` builds on."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from endpointgen.runtime import http
from endpointgen.runtime.batching import Batcher
from endpointgen.runtime.metrics import METRICS


class Calls:
    """What a model holds that its calls need (`Model` sets it), and the calls."""

    id: str
    path: Path | str | None
    status: str
    error: str | None
    engine: Any
    batcher: Batcher | None

    @property
    def name(self) -> str:
        """The model's name for clients: the spec's `id` (a Hub repo, or the name of the
        weights on a Volume), or a local directory's name."""
        on_volume = self.path is not None and str(self.path).startswith(http.VOLUMES)
        if self.path is None or on_volume:
            return self.id
        return self.id.rstrip("/").rsplit("/", 1)[-1]

    async def ask(self, method: str, *args: Any) -> Any:
        """The engine's `method` on `args`, never holding up the event loop: in a worker
        thread (torch blocks), or, for a model class in another container
        (`remote.RemoteEngine`), its method of that name awaited (`engine.ask`: the
        class's typed methods, `.remote.aio`); a name it lacks is an AttributeError."""
        # A job's submit (`http.check`) stops here: even a check on the engine waits for
        # its lock, which a running generation holds, or for another container to start.
        http.starting_work()
        remote = getattr(self.engine, "ask", None)
        started = time.perf_counter()
        METRICS.calling(self.name, 1)
        try:
            if remote is not None:
                result = await getattr(remote, method)(*args)
            elif method == "generate" and (start := self._start()) is not None:
                result = await asyncio.wrap_future(start(*args))
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, getattr(self.engine, method), *args)
        finally:
            METRICS.calling(self.name, -1)
            METRICS.model_call(self.name, method, time.perf_counter() - started)
        if method in ("generate", "checked_generate"):
            METRICS.generated(self.name, int(result["tokens_generated"]))
        return result

    def _start(self) -> Callable[..., concurrent.futures.Future[dict[str, Any]]] | None:
        """A text engine's `start` (engines.TextEngine): a generation no thread waits on.
        None for a loader's own object and a remote model class."""
        start: Callable[..., concurrent.futures.Future[dict[str, Any]]] | None
        start = getattr(self.engine, "start", None)
        return start

    async def run(self, items: list[Any]) -> list[Any]:
        """The engine on `items`, batched with other requests' when the spec says so."""
        http.starting_work()
        if self.batcher is not None:
            return await self.batcher(items)
        result: list[Any] = await self.ask("__call__", items)
        return result

    def _remote(self) -> bool:
        """The engine is a model class in another container (`remote.RemoteEngine`)."""
        return getattr(self.engine, "ask", None) is not None
