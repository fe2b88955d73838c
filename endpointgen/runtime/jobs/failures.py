"""What a job answers when Modal reports its call failed.

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
"""

from __future__ import annotations

from typing import Any

from endpointgen.runtime import http
from endpointgen.runtime.jobs.work import failed
from endpointgen.runtime.tasks import LoadFailed

TIMED_OUT = "the job ran past jobs.timeout"
LOST = "the job was lost in Modal; submit it again"
STOPPED = "the job's worker stopped before it answered"
UNASKED = "the job's status cannot be read now; try again"


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
