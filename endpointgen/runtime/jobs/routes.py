"""The job routes: POST submits (with `Prefer: wait`), GET reads and DELETE cancels a
job, only for the credential that submitted it; `Jobs` picks where the work runs."""

from __future__ import annotations

import asyncio
import base64
import hmac
import inspect
import re
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from endpointgen.runtime import defaults, http
from endpointgen.runtime.jobs.callbacks import Callbacks
from endpointgen.runtime.jobs.in_process import QUEUE, QUEUE_BYTES, InProcess
from endpointgen.runtime.jobs.on_modal import OnModal
from endpointgen.runtime.jobs.records import (
    EXPIRED,
    FINISHED,
    JobAccepted,
    JobStatus,
    Record,
    new_id,
)
from endpointgen.runtime.jobs.work import Work

MAX_WAIT = 120  # seconds `Prefer: wait=N` may hold a request (Modal cuts one at 150)
WAIT_VALUE = re.compile(r"[0-9]{1,9}")


class Jobs:
    """An app's job routes: `route(...)` for each, then `run(...)` in the job worker.

    `worker` gives the Modal method or function that runs a job (`Server().job`, `job`):
    used in a Modal container only. Outside Modal: `concurrency` jobs run at once in this
    process, and at most `queue` more, their values at most `queue_bytes` bytes as JSON,
    wait for a slot (a submit past either answers 503 with `Retry-After`)."""

    def __init__(
        self,
        app: str,
        worker: Callable[[], Any] | None = None,
        callbacks: Callbacks | None = None,
        concurrency: int = defaults.JOB_CONCURRENCY,
        queue: int = QUEUE,
        queue_bytes: int = QUEUE_BYTES,
    ) -> None:
        self.app = app
        self.callbacks = callbacks
        self.works: dict[str, tuple[Work, int]] = {}  # path -> (work, ttl)
        self.settings = http.Settings()
        self.worker = worker
        self.concurrency = concurrency
        self.queue = queue
        self.queue_bytes = queue_bytes
        self._backend: InProcess | OnModal | None = None

    @property
    def backend(self) -> InProcess | OnModal:
        if self._backend is None:
            import modal

            if self.worker is not None and not modal.is_local():
                self._backend = OnModal(self.app, self.worker)
            else:
                self._backend = InProcess(self.concurrency, self.queue, self.queue_bytes)
        return self._backend

    def route(
        self,
        web: FastAPI,
        path: str,
        work: Work,
        *,
        ttl: int = 3600,
        dependencies: list[Any] | None = None,
        owner_dependencies: list[Any] | None = None,
        **options: Any,
    ) -> None:
        """POST `path` submits `work`, which FastAPI calls with the route's parameters;
        GET and DELETE `path/jobs/{job_id}` read and cancel. `dependencies`: the submit's
        guards (auth, limits, the model); `owner_dependencies`: those of reading and
        cancelling (auth, which tells the owner)."""
        self.works[path] = (work, ttl)
        self.settings = http.settings_of(web)
        web.state.jobs = self
        status_url = path.rstrip("/") + "/jobs/{job_id}"

        async def submit(request: Request, **values: Any) -> http.Response:
            return await self.submit(request, path, values)

        given = list(inspect.signature(work).parameters.values())
        first = inspect.Parameter(
            "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
        )
        submit.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [first, *given], return_annotation=http.Response
        )
        name = work.__name__
        web.add_api_route(
            path,
            submit,
            methods=["POST"],
            status_code=202,
            name=name,
            dependencies=dependencies,
            response_model=JobAccepted,
            responses={
                200: {
                    "description": "With `Prefer: wait=N`: the job ended in time, and this "
                    "is the route's own answer"
                },
            },
            **options,
        )

        async def poll(request: Request, job_id: str) -> http.Response:
            record = await self.owned(request, path, job_id)
            return http.JSONResponse(record.status())

        async def cancel(request: Request, job_id: str) -> http.Response:
            record = await self.owned(request, path, job_id)
            if record.state in FINISHED:
                raise HTTPException(409, f"job already {record.state}")
            await self.backend.cancel(record)
            return http.JSONResponse(record.status())

        documented: dict[int | str, dict[str, Any]] = {
            404: {"description": "No such job, or not the caller's"},
            410: {"description": "The job's result expired"},
        }
        web.add_api_route(
            status_url,
            poll,
            methods=["GET"],
            name=f"{name}_job",
            dependencies=owner_dependencies,
            response_model=JobStatus,
            summary=f"A job of POST {path}",
            responses=documented,
        )
        web.add_api_route(
            status_url,
            cancel,
            methods=["DELETE"],
            name=f"cancel_{name}_job",
            dependencies=owner_dependencies,
            response_model=JobStatus,
            summary=f"Cancel a job of POST {path}",
            responses={**documented, 409: {"description": "The job has ended already"}},
        )

    async def submit(self, request: Request, path: str, values: dict[str, Any]) -> http.Response:
        callback = request.query_params.get("callback_url")
        if callback is not None:
            problem = (
                "this app sends no callbacks"
                if self.callbacks is None
                else await asyncio.to_thread(self.callbacks.refusal, callback)
            )
            if problem is not None:
                error = {"loc": ("query", "callback_url"), "msg": problem, "type": "value_error"}
                raise RequestValidationError([error])
        await http.check(self.works[path][0], values)  # what the route refuses, now
        wait = preferred_wait(request.headers.get("prefer"))  # before the job exists
        record = Record(new_id(), path, owner_of(request), self.works[path][1])
        await self.backend.submit(self, record, values, callback)
        url = f"{path.rstrip('/')}/jobs/{record.id}"
        if wait:
            record = await self.backend.wait(record, wait)
            if record.state in ("succeeded", "failed"):
                return answer(record, wait, http.request_id(request))
        body = {"id": record.id, "status": record.state, "urls": {"status": url, "cancel": url}}
        return http.JSONResponse(body, 202, headers={"Location": url})

    async def owned(self, request: Request, path: str, job_id: str) -> Record:
        """The caller's own job of route `path`, or 404 (another's, or another route's, is
        as unknown as none); 410 once expired."""
        record = await self.backend.get(job_id)
        if (
            record is None
            or record.path != path
            or not hmac.compare_digest(record.owner, owner_of(request))
        ):
            raise HTTPException(404, "no such job")
        if record.expired(time.time()):
            await self.backend.forget(record)
            raise HTTPException(410, EXPIRED)
        return record


def owner_of(request: Request) -> str:
    """Who submitted: the digest auth left (never the credential), "" without auth."""
    return str(request.scope.get("state", {}).get("credential") or "")


def preferred_wait(prefer: str | None) -> float:
    """`Prefer: wait=N` (RFC 7240), at most MAX_WAIT seconds; 0 when absent or malformed
    (N not 1 to 9 ASCII digits), as a preference the server does not understand is
    ignored."""
    for part in (prefer or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "wait" and WAIT_VALUE.fullmatch(value.strip()):
            return float(min(int(value.strip()), MAX_WAIT))
    return 0.0


def answer(record: Record, waited: float, request_id: str) -> http.Response:
    """A finished job as the route itself would have answered it."""
    headers = {"Preference-Applied": f"wait={int(waited)}", "X-Job-ID": record.id}
    if record.state == "failed" and record.error is not None:
        body = http.error_body(request_id, record.error["message"])
        if record.error.get("detail"):
            body["detail"] = record.error["detail"]
        return http.JSONResponse(body, record.error["status"], headers=headers)
    if record.binary:
        result = record.result
        if "seed" in result:
            headers["X-Seed"] = str(result["seed"])
        content = base64.b64decode(result["base64"])
        return http.Response(content, 200, headers=headers, media_type=result["media_type"])
    return http.JSONResponse(record.result, 200, headers=headers)
