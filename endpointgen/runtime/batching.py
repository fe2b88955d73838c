"""Dynamic batching: texts from concurrent requests gathered into one model call."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Batcher"]

Item = tuple[list[Any], "asyncio.Future[list[Any]]"]


class Batcher:
    """Gathers texts from concurrent requests into one model call.

    A batch closes when it holds `max_batch_size` texts or `wait_ms` after its first
    request. If the batched call fails, each request is retried alone, so one bad input
    fails only its own request.
    """

    def __init__(
        self,
        run: Callable[[list[Any]], Any],
        max_batch_size: int,
        wait_ms: int,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self.run = run
        self.observe = observe  # told each batch's size and seconds (for /metrics)
        self.max_batch_size = max_batch_size
        self.wait = wait_ms / 1000
        self.queue: asyncio.Queue[Item] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.unanswered = 0  # queued, being gathered into a batch, or in the running one

    def waiting(self) -> int:
        """Requests waiting or running: queued, gathered, or in the batch that runs."""
        return self.unanswered

    async def __call__(self, texts: list[Any]) -> list[Any]:
        loop = asyncio.get_running_loop()
        if self.queue is None or self.worker is None or self.worker.done():
            self.queue = asyncio.Queue()
            self.worker = loop.create_task(self._work(self.queue))
        future: asyncio.Future[list[Any]] = loop.create_future()
        self.queue.put_nowait((texts, future))
        self.unanswered += 1
        try:
            return await future
        finally:
            self.unanswered -= 1

    async def _work(self, queue: asyncio.Queue[Item]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            size = len(batch[0][0])
            deadline = loop.time() + self.wait
            while size < self.max_batch_size:
                try:
                    if queue.empty():
                        left = deadline - loop.time()
                        if left <= 0:
                            break
                        item = await asyncio.wait_for(queue.get(), left)
                    else:
                        item = queue.get_nowait()
                except TimeoutError:
                    break
                batch.append(item)
                size += len(item[0])
            await self._run(loop, [b for b in batch if not b[1].done()])

    async def _run(self, loop: asyncio.AbstractEventLoop, batch: list[Item]) -> None:
        if not batch:
            return
        texts = [text for item, _ in batch for text in item]
        started = loop.time()
        try:
            if inspect.iscoroutinefunction(self.run):
                results = await self.run(texts)
            else:
                results = await loop.run_in_executor(None, self.run, texts)
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            for one in batch:
                await self._run(loop, [one])
            return
        if self.observe is not None:
            self.observe(len(texts), loop.time() - started)
        start = 0
        for item, future in batch:
            if not future.done():
                future.set_result(results[start : start + len(item)])
            start += len(item)
