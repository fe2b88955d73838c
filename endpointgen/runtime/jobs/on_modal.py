"""Jobs in a Modal container: `.spawn()` of the app's job worker (the model class's `job`
method, or the app's `job` function), so it runs as long as its own `timeout` allows
rather than the 150 s of a web request. The job's id, owner digest and the spawned
`FunctionCall`'s id are kept in the modal.Dict `<app>-jobs`; polling asks
`FunctionCall.get(timeout=0)`, cancelling calls `FunctionCall.cancel()`. `run` is what
the worker runs. A call Modal reports failed ends its job as `failures` says."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from starlette.exceptions import HTTPException

from endpointgen.runtime import http
from endpointgen.runtime.jobs.failures import TIMED_OUT, UNASKED, call_failed
from endpointgen.runtime.jobs.records import EXPIRED, FINISHED, Record
from endpointgen.runtime.jobs.work import Routes, failed, from_wire, outcome, to_wire


class OnModal:
    """Jobs spawned on the app's job worker, their records in a modal.Dict.

    A call Modal reports failed ends its job (`call_failed`; `failures` says how each is
    answered)."""

    def __init__(self, app: str, worker: Callable[[], Any]) -> None:
        self.name = f"{app}-jobs"
        self.worker = worker
        self._records: Any = None

    @property
    def records(self) -> Any:
        if self._records is None:
            import modal

            self._records = modal.Dict.from_name(self.name, create_if_missing=True)
        return self._records

    async def save(self, record: Record) -> None:
        await self.records.put.aio(record.id, vars(record).copy())

    async def submit(
        self, jobs: Routes, record: Record, values: dict[str, Any], callback: str | None
    ) -> None:
        wire = to_wire(values)
        call = await self.worker().spawn.aio(record.path, wire, record.id, callback)
        record.call = call.object_id
        await self.save(record)

    async def get(self, job_id: str) -> Record | None:
        import modal

        found = await self.records.get.aio(job_id)
        if found is None:
            return None
        record = Record(**found)
        if record.state in FINISHED:
            return record
        errors = modal.exception
        unreachable = (
            errors.ConnectionError,
            errors.ServiceError,
            errors.InternalError,
            errors.ResourceExhaustedError,
            errors.ClientClosed,
        )
        try:
            done = await modal.FunctionCall.from_id(str(record.call)).get.aio(timeout=0)
        except modal.exception.OutputExpiredError:  # Modal no longer holds its result
            await self.forget(record)
            raise HTTPException(410, EXPIRED) from None
        except modal.exception.FunctionTimeoutError:  # a TimeoutError too: before it
            http.log.warning("job %s ran past its timeout", record.id)
            done = failed(504, TIMED_OUT)
        except (modal.exception.TimeoutError, TimeoutError):  # no answer yet
            record.state = "running"
            return record
        except unreachable as exc:
            http.log.warning("job %s: Modal cannot be asked now: %r", record.id, exc)
            raise HTTPException(503, UNASKED, headers={"Retry-After": "5"}) from None
        except modal.exception.InputCancellation:  # a BaseException
            done = {"status": "cancelled"}
        except Exception as exc:
            done = call_failed(record.id, exc)
        record.finish(done)
        await self.save(record)
        return record

    async def wait(self, record: Record, seconds: float) -> Record:
        deadline = time.monotonic() + seconds
        while record.state not in FINISHED and time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            try:
                record = await self.get(record.id) or record
            except HTTPException as exc:
                if exc.detail != UNASKED:  # Modal cannot be reached now: ask again
                    raise
        return record

    async def cancel(self, record: Record) -> None:
        import modal

        await modal.FunctionCall.from_id(str(record.call)).cancel.aio()
        record.finish({"status": "cancelled"})
        await self.save(record)

    async def forget(self, record: Record) -> None:
        await self.records.pop.aio(record.id, None)


async def run(
    web: FastAPI, path: str, values: dict[str, Any], job_id: str, callback: str | None
) -> dict[str, Any]:
    """In the job worker on Modal: run the job `job_id` of route `path` of `web` (the
    app's `create_app(...)`), announce its end to `callback`, and return its outcome."""
    jobs: Routes = web.state.jobs
    work = jobs.works[path][0]
    done = await outcome(jobs.settings, work, from_wire(work, values))
    if callback is not None and jobs.callbacks is not None:
        record = Record(job_id, path, "", jobs.works[path][1])
        record.finish(done)
        await jobs.callbacks.deliver(callback, record.status())
    return done
