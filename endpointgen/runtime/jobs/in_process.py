"""Jobs run in this process (`endpointgen serve`, any ASGI server): an asyncio task per
job, at most `concurrency` running at once and the rest pending, in order; at most
`queue` jobs (256), their values at most `queue_bytes` (256 MiB) as JSON, may be pending,
and a submit past either answers 503 with `Retry-After`. A cancelled job whose handler
runs in a worker thread keeps its slot until the thread returns."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio
from starlette.exceptions import HTTPException

from endpointgen.runtime import defaults, http
from endpointgen.runtime.jobs.records import FINISHED, Record
from endpointgen.runtime.jobs.work import Routes, outcome, to_wire

QUEUE = defaults.JOB_QUEUE  # jobs that may wait for a slot in this process (`Jobs(queue=)`)
QUEUE_BYTES = defaults.JOB_QUEUE_MIB * 1024 * 1024  # their values, as JSON (`queue_bytes=`)
BUSY = "too many jobs are waiting; try again later"


class InProcess:
    """Jobs as asyncio tasks in this process, at most `concurrency` running at once.

    A job holds its slot until its work has returned: a cancelled job says `cancelled`
    at once, but a handler running in a worker thread, which cannot be stopped, keeps
    the slot until it returns. At most `queue` jobs, whose values come to at most
    `queue_bytes` bytes as JSON, wait for a slot; a submit past either is a 503."""

    def __init__(
        self, concurrency: int, queue: int = QUEUE, queue_bytes: int = QUEUE_BYTES
    ) -> None:
        self.concurrency = concurrency
        self.queue = queue
        self.queue_bytes = queue_bytes
        self.records: dict[str, Record] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.scopes: dict[str, anyio.CancelScope] = {}
        self.done: dict[str, asyncio.Event] = {}
        self.waiting: dict[str, int] = {}  # job id -> size of its values, until it runs
        self._slots: asyncio.Semaphore | None = None

    @property
    def slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        return self._slots

    async def submit(
        self, jobs: Routes, record: Record, values: dict[str, Any], callback: str | None
    ) -> None:
        self.forget_old()
        size = len(json.dumps(to_wire(values), separators=(",", ":")))
        if len(self.waiting) >= self.queue or sum(self.waiting.values()) + size > self.queue_bytes:
            waiting = (len(self.waiting), sum(self.waiting.values()))
            http.log.warning("job refused: %d jobs (%d bytes) wait already", *waiting)
            raise HTTPException(503, BUSY, headers={"Retry-After": "5"})
        self.records[record.id] = record
        self.done[record.id] = asyncio.Event()
        self.waiting[record.id] = size
        self.scopes[record.id] = anyio.CancelScope()
        task = asyncio.get_running_loop().create_task(self.run(jobs, record, values, callback))
        self.tasks[record.id] = task

    async def run(
        self, jobs: Routes, record: Record, values: dict[str, Any], callback: str | None
    ) -> None:
        try:
            with self.scopes[record.id]:
                async with self.slots:
                    self.waiting.pop(record.id, None)
                    record.state = "running"
                    done = await outcome(jobs.settings, jobs.works[record.path][0], values)
                    if record.state not in FINISHED:  # not cancelled meanwhile
                        record.finish(done)
        except asyncio.CancelledError:  # the task itself, as the server stops
            record.finish({"status": "cancelled"})
        finally:
            self.waiting.pop(record.id, None)
            self.scopes.pop(record.id, None)
            self.tasks.pop(record.id, None)
            if record.state not in FINISHED:  # cancelled before it got a slot
                record.finish({"status": "cancelled"})
            self.done[record.id].set()
        if callback is not None and jobs.callbacks is not None:
            await jobs.callbacks.deliver(callback, record.status())

    async def get(self, job_id: str) -> Record | None:
        return self.records.get(job_id)

    async def wait(self, record: Record, seconds: float) -> Record:
        event = self.done.get(record.id)
        if event is not None:
            try:
                await asyncio.wait_for(event.wait(), seconds)
            except TimeoutError:
                pass
        return record

    async def cancel(self, record: Record) -> None:
        """Cancel the job's work: it says `cancelled` now, and stops at its next await
        (a handler in a worker thread runs on, holding its slot, until it returns)."""
        scope = self.scopes.get(record.id)
        if scope is not None:
            scope.cancel()
            record.finish({"status": "cancelled"})
            self.done[record.id].set()
            task = self.tasks.get(record.id)
            if task is not None:  # let work that can stop now stop before answering
                await asyncio.wait({task}, timeout=0.05)

    async def forget(self, record: Record) -> None:
        self.drop(record.id)

    def drop(self, job_id: str) -> None:
        self.records.pop(job_id, None)
        self.done.pop(job_id, None)

    def forget_old(self) -> None:
        """Drop records expired for an hour or more (an expired id answers 410 until then)."""
        now = time.time() - 3600
        for record in [r for r in self.records.values() if r.expired(now)]:
            self.drop(record.id)
