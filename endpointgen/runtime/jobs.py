"""Jobs: routes whose work outlives an HTTP request (`job:` on a route in the spec).

    POST   {path}               202 {id, status, urls} and `Location`; with `Prefer: wait=N`
                                the route's own answer when the job ends within N seconds
    GET    {path}/jobs/{id}     {id, status, result | error, created_at, finished_at, ...}
    DELETE {path}/jobs/{id}     cancels it

A job is `pending`, `running`, then `succeeded` (with the route's normal answer body as
`result`), `failed` (with the status and message the route would have answered) or
`cancelled`. Only the credential that submitted a job can read or cancel it, and only
under the route it was submitted to (otherwise 404, as for an id that never existed); ids
are 128 random bits. A finished job's result is
kept `ttl` seconds, then its id answers 410 once and 404 after.

Where the work runs:
- outside Modal (`endpointgen serve`, any ASGI server): in this process, an asyncio task
  per job, at most `concurrency` running at once and the rest pending, in order; at most
  `queue` jobs (256), their values at most `queue_bytes` (256 MiB) as JSON, may be
  pending, and a submit past either answers 503 with `Retry-After`. A cancelled job whose
  handler runs in a worker thread keeps its slot until the thread returns;
- in a Modal container: `.spawn()` of the app's job worker (the model class's `job`
  method, or the app's `job` function), so it runs as long as its own `timeout` allows
  rather than the 150 s of a web request. The job's id, owner digest and the spawned
  `FunctionCall`'s id are kept in the modal.Dict `<app>-jobs`; polling asks
  `FunctionCall.get(timeout=0)`, cancelling calls `FunctionCall.cancel()`.

On Modal the job worker may end without an answer of its own; a poll that learns so
keeps the job's end in its record (later polls, and `Prefer: wait`, answer the same
without asking Modal again):
- the call ran past `jobs.timeout` (`FunctionTimeoutError`): `failed`, 504 "the job ran
  past jobs.timeout";
- the model class cannot load (`tasks.LoadFailed`, as Modal fails the calls of a class
  that crash-loops): `failed`, 503 "model is not ready (failed): <its short reason>", as
  the routes answer it;
- Modal's own failure, which it calls retriable (`InternalFailure`): `failed`, 503 "the
  job was lost in Modal; submit it again";
- the worker stopped with no answer (`RemoteError`, as for a container that crashed or
  was killed, or any other `modal.exception.Error`): `failed`, 500 "the job's worker
  stopped before it answered";
- any other exception out of the worker: `failed`, 500 "internal server error";
- the call was cancelled on Modal rather than by DELETE (`InputCancellation`):
  `cancelled`. (A call Modal reports only as ended, a `RemoteError` with no message, is
  `failed` as above: nothing tells it from a worker that was killed.)
The exception itself goes to the log, never to the client. A poll that cannot reach
Modal at all (`ConnectionError`, `ServiceError`, `InternalError`,
`ResourceExhaustedError`, `ClientClosed`) fails nothing: that poll answers 503 with
`Retry-After`, and the job is asked about again on the next one. A job that ends these
ways sends no callback: the worker, which sends it, never finished, and the web tier does
not keep the callback_url, so the receiver hears nothing and the poll is what tells.

A submit may name `?callback_url=`: when the job ends, its status body is POSTed there,
signed as a `generic` webhook verifies (`Callbacks`), with retries and backoff. Only hosts
the spec lists are called, and never a private, loopback or link-local address (nor an
IPv6 one that reaches an IPv4 address: NAT64, IPv4-compatible or -mapped) unless the spec
allows it (`private: true`, for a receiver on the same machine). A callback connects to
the address its check resolved, and reads at most 64 KiB of the receiver's answer.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import inspect
import ipaddress
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from endpointgen.runtime import http
from endpointgen.runtime.tasks import LoadFailed

__all__ = ["Callbacks", "JobAccepted", "JobStatus", "Jobs", "from_wire", "run", "to_wire"]

State = Literal["pending", "running", "succeeded", "failed", "cancelled"]
FINISHED = ("succeeded", "failed", "cancelled")
EXPIRED = "the job's result has expired"
MAX_WAIT = 120  # seconds `Prefer: wait=N` may hold a request (Modal cuts one at 150)
MAX_CALLBACK_ANSWER = 64 * 1024  # bytes of a callback receiver's answer read, at most
QUEUE = 256  # jobs that may wait for a slot in this process (`Jobs(queue=)`)
QUEUE_BYTES = 256 * 1024 * 1024  # bytes of their values, as JSON (`Jobs(queue_bytes=)`)
BUSY = "too many jobs are waiting; try again later"
WAIT_VALUE = re.compile(r"[0-9]{1,9}")
SIGNATURE_HEADER = "X-Endpointgen-Signature"
TIMESTAMP_HEADER = "X-Endpointgen-Timestamp"
Work = Callable[..., Awaitable[Any]]
# What a job answers when Modal reports its call failed (the module docstring lists when).
TIMED_OUT = "the job ran past jobs.timeout"
LOST = "the job was lost in Modal; submit it again"
STOPPED = "the job's worker stopped before it answered"
UNASKED = "the job's status cannot be read now; try again"


class JobUrls(BaseModel):
    status: str
    cancel: str


class JobAccepted(BaseModel):
    id: str
    status: State
    urls: JobUrls


class JobError(BaseModel):
    status: int
    message: str
    detail: list[dict[str, Any]] | None = None


class JobStatus(BaseModel):
    id: str
    status: State
    created_at: float
    finished_at: float | None = None
    expires_at: float | None = None
    result: Any = None
    error: JobError | None = None


# --- Callbacks ---


@dataclass(frozen=True)
class Callbacks:
    """Where a job's end may be announced, and how it is signed.

    The body is the job's status (`JobStatus`), sent with `X-Endpointgen-Timestamp` (Unix
    seconds) and `X-Endpointgen-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`
    under the key in env var `env`: what a `generic` webhook route checks with
    `signature: {header: X-Endpointgen-Signature, prefix: "sha256=", timestamp_header:
    X-Endpointgen-Timestamp}`. A delivery is tried `tries` times, waiting `backoff`
    seconds, then twice that, and so on, until the receiver answers 2xx."""

    hosts: tuple[str, ...]
    env: str = "JOB_CALLBACK_SECRET"
    private: bool = False
    tries: int = 5
    backoff: float = 1.0
    timeout: float = 10.0

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be called back (None: it may). Its host is resolved here, and
        again before each delivery, so a name that later points inside is caught too."""
        return self.checked(url)[0]

    def checked(self, url: str) -> tuple[str | None, list[str]]:
        """`refusal`'s answer, and the addresses the host resolved to (those a delivery
        connects to, so a name cannot point elsewhere between the check and the call)."""
        if not os.environ.get(self.env):
            return f"this app sends no callbacks: {self.env} is not set", []
        try:
            parts = urlsplit(url)
            scheme, hostname, port = parts.scheme, parts.hostname, parts.port
            credentials = parts.username or parts.password
        except ValueError:  # brackets left open, a character NFKC turns into `#`, a bad port
            return "callback_url is not a valid URL", []
        if scheme not in ("http", "https") or not hostname:
            return "callback_url must be an http or https URL", []
        if credentials:
            return "callback_url may not carry credentials", []
        host = hostname.lower()
        if "%" in host:  # an IPv6 zone id names an interface of this machine
            return "callback_url is not a valid URL", []
        if host not in self.hosts:
            return f"callback_url's host {host} is not one this app calls back", []
        try:
            found = addresses(host, port or (443 if scheme == "https" else 80))
        except (OSError, ValueError, OverflowError):
            return f"callback_url's host {host} cannot be resolved", []
        if not found:
            return f"callback_url's host {host} cannot be resolved", []
        for address in found:
            if private(address) and not self.private:
                return f"callback_url's host {host} is a private address", []
        return None, found

    def signed(self, body: bytes, now: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if now is None else now))
        key = os.environ.get(self.env, "").encode()
        digest = hmac.new(key, stamp.encode() + b"." + body, "sha256").hexdigest()
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: f"sha256={digest}",
        }

    async def deliver(self, url: str, status: dict[str, Any]) -> bool:
        """POST `status` to `url` until it answers 2xx or the tries run out. Each try
        connects to an address the check just resolved (the next one on each try; TLS
        still checks the host's name), and reads at most `MAX_CALLBACK_ANSWER` bytes of
        the receiver's answer."""
        import httpx

        body = json.dumps(status).encode()
        wait = self.backoff
        for attempt in range(1, self.tries + 1):
            problem, found = await asyncio.to_thread(self.checked, url)
            if problem is not None:
                http.log.warning("job %s: callback not sent: %s", status["id"], problem)
                return False
            transport = pinned_transport()(found[(attempt - 1) % len(found)])
            try:
                async with (
                    httpx.AsyncClient(  # no proxy or netrc from the environment
                        transport=transport,
                        timeout=self.timeout,
                        follow_redirects=False,
                        trust_env=False,
                    ) as client,
                    client.stream("POST", url, content=body, headers=self.signed(body)) as answer,
                ):
                    read = 0
                    async for chunk in answer.aiter_raw():
                        read += len(chunk)
                        if read >= MAX_CALLBACK_ANSWER:
                            break
                    if 200 <= answer.status_code < 300:
                        return True
                    reason = f"answered {answer.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            http.log.warning(
                "job %s: callback try %d of %d failed (%s)",
                status["id"],
                attempt,
                self.tries,
                reason,
            )
            if attempt < self.tries:
                await asyncio.sleep(wait)
                wait *= 2
        return False


def addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order, zone ids left off."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in found))


# IPv6 ranges that reach an IPv4 address by other means: NAT64 (RFC 6052, RFC 8215) and
# IPv4-compatible `::a.b.c.d`. `ipaddress` calls them global; a callback may not use them.
EMBEDDED_V4 = tuple(
    ipaddress.ip_network(net) for net in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96")
)


def private(address: str) -> bool:
    """Whether a callback to `address` could reach inside: not a global address, an
    IPv6 one embedding an IPv4 address (NAT64, IPv4-compatible, IPv4-mapped), or 6to4
    onto a private IPv4 address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in EMBEDDED_V4) or ip.ipv4_mapped is not None:
            return True
        if ip.sixtofour is not None and not ip.sixtofour.is_global:
            return True
    return not ip.is_global


@functools.cache
def pinned_transport() -> type[Any]:
    """The transport class a callback is sent with (made on first use, as httpx is
    imported only where callbacks are sent)."""
    import httpx

    class PinnedTransport(httpx.AsyncHTTPTransport):
        """Connects to one address, whatever the URL's host resolves to now; the request
        keeps its `Host` header, and TLS its server name, so the receiver and its
        certificate are checked as for the name."""

        def __init__(self, address: str) -> None:
            super().__init__()
            self.address = address

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            host = request.url.host
            request.extensions = {**request.extensions, "sni_hostname": host}
            request.url = request.url.copy_with(host=self.address)
            return await super().handle_async_request(request)

    return PinnedTransport


# --- What a job's work answers ---


def encode(answer: Any) -> Any:
    """The route's answer as JSON: a JSON body parsed, text as text, other bytes as
    `{media_type, base64}` (and `seed`, from an image's `X-Seed`); anything else as
    FastAPI would serialize it."""
    if isinstance(answer, http.Response):
        media = answer.media_type or ""
        body = bytes(answer.body)
        if media == "application/json" or media.endswith("+json"):
            return json.loads(body) if body else None
        if media.startswith("text/"):
            return body.decode(answer.charset)
        data: dict[str, Any] = {"media_type": media, "base64": base64.b64encode(body).decode()}
        if "x-seed" in answer.headers:
            data["seed"] = int(answer.headers["x-seed"])
        return data
    return jsonable_encoder(answer)


async def outcome(settings: http.Settings, work: Work, values: dict[str, Any]) -> dict[str, Any]:
    """Run the work: `{"status": "succeeded", "result": ...}` or `{"status": "failed",
    "error": {status, message}}`, as the route would have answered; no traceback leaves."""
    try:
        answered = await work(**values)
        result = encode(answered)
    except HTTPException as exc:
        return failed(exc.status_code, str(exc.detail))
    except RequestValidationError as exc:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return failed(422, "invalid request", detail)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        mapped = settings.mapped(exc)
        if mapped is None:
            http.log.exception("job failed")
            return failed(500, "internal server error")
        return failed(*mapped)
    done = {"status": "succeeded", "result": result, "finished_at": time.time()}
    if isinstance(answered, http.Response) and isinstance(result, dict) and "base64" in result:
        done["binary"] = True  # `Prefer: wait` answers the bytes themselves
    return done


def failed(status: int, message: str, detail: Any = None) -> dict[str, Any]:
    error = {"status": status, "message": message}
    if detail:
        error["detail"] = detail
    return {"status": "failed", "error": error, "finished_at": time.time()}


def to_wire(values: dict[str, Any]) -> dict[str, Any]:
    """A job's parameters as plain JSON data, to cross to the Modal worker: no pickled
    class of the built module, whose import path a container may not share."""
    return {
        name: value.model_dump(mode="json", by_alias=True)
        if isinstance(value, BaseModel)
        else jsonable_encoder(value)
        for name, value in values.items()
    }


def from_wire(work: Work, values: dict[str, Any]) -> dict[str, Any]:
    """`to_wire`'s data as the work's own parameter types again (a body model validated
    as FastAPI validated it; plain values as they are)."""
    params = inspect.signature(work).parameters
    out = {}
    for name, value in values.items():
        kind = params[name].annotation if name in params else None
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            out[name] = kind.model_validate(value)
        else:
            out[name] = value
    return out


# --- Records ---


@dataclass
class Record:
    """One job, wherever it runs."""

    id: str
    path: str
    owner: str
    ttl: int
    created_at: float = field(default_factory=time.time)
    state: State = "pending"
    finished_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    call: str | None = None  # the spawned FunctionCall's id, on Modal
    binary: bool = False  # `result` is bytes the route answered, as `encode` keeps them

    def finish(self, done: dict[str, Any]) -> None:
        self.state = done["status"]
        self.result = done.get("result")
        self.error = done.get("error")
        self.binary = bool(done.get("binary"))
        self.finished_at = done.get("finished_at") or time.time()

    @property
    def expires_at(self) -> float | None:
        return None if self.finished_at is None else self.finished_at + self.ttl

    def expired(self, now: float) -> bool:
        expires = self.expires_at
        return expires is not None and now > expires

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "status": self.state,
            "created_at": round(self.created_at, 3),
            "finished_at": None if self.finished_at is None else round(self.finished_at, 3),
            "expires_at": None if self.expires_at is None else round(self.expires_at, 3),
        }
        if self.state == "succeeded":
            out["result"] = self.result
        if self.error is not None:
            out["error"] = self.error
        return out


def new_id() -> str:
    return "job-" + secrets.token_urlsafe(16)


# --- Where jobs run ---


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
        self, jobs: Jobs, record: Record, values: dict[str, Any], callback: str | None
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
        self, jobs: Jobs, record: Record, values: dict[str, Any], callback: str | None
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


class OnModal:
    """Jobs spawned on the app's job worker, their records in a modal.Dict.

    A call Modal reports failed ends its job (`call_failed`; the module docstring says
    how each is answered)."""

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
        self, jobs: Jobs, record: Record, values: dict[str, Any], callback: str | None
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


def call_failed(job_id: str, exc: Exception) -> dict[str, Any]:
    """A job whose call Modal reports failed, as the module docstring lists: the status
    and a public message; the exception goes to the log only."""
    import modal

    http.log.warning("job %s failed on Modal: %r", job_id, exc)
    if isinstance(exc, LoadFailed):
        reason = str(exc.args[0]) if exc.args else "LoadFailed"
        return failed(503, f"model is not ready (failed): {reason}")
    if isinstance(exc, modal.exception.InternalFailure):
        return failed(503, LOST)
    if isinstance(exc, modal.exception.Error):
        return failed(500, STOPPED)
    return failed(500, "internal server error")


# --- The routes ---


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
        concurrency: int = 4,
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


async def run(
    web: FastAPI, path: str, values: dict[str, Any], job_id: str, callback: str | None
) -> dict[str, Any]:
    """In the job worker on Modal: run the job `job_id` of route `path` of `web` (the
    app's `create_app(...)`), announce its end to `callback`, and return its outcome."""
    jobs: Jobs = web.state.jobs
    work = jobs.works[path][0]
    done = await outcome(jobs.settings, work, from_wire(work, values))
    if callback is not None and jobs.callbacks is not None:
        record = Record(job_id, path, "", jobs.works[path][1])
        record.finish(done)
        await jobs.callbacks.deliver(callback, record.status())
    return done
