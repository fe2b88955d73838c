"""Jobs: routes whose work outlives an HTTP request (`job:` on a route in the spec).

    POST   {path}               202 {id, status, urls} and `Location`; with `Prefer: wait=N`
                                the route's own answer when the job ends within N seconds
    GET    {path}/jobs/{id}     {id, status, result | error, created_at, finished_at, ...}
    DELETE {path}/jobs/{id}     cancels it

A job is `pending`, `running`, then `succeeded` (with the route's normal answer body as
`result`), `failed` (with the status and message the route would have answered) or
`cancelled`. Only the credential that submitted a job can read or cancel it, and only
under the route it was submitted to (otherwise 404, as for an id that never existed); ids
are 128 random bits. A finished job's result is kept `ttl` seconds, then its id answers
410 once and 404 after.

Built modules use these names as `jobs.<name>`; each module here holds one concern:

- `routes`: `Jobs`, the submit, status and cancel routes, `Prefer: wait`;
- `records`: a job's `Record` and the bodies the routes answer;
- `work`: what a job's work answers, kept as JSON; values as plain data to cross to Modal;
- `in_process`: outside Modal, jobs as asyncio tasks in this process, with a bounded queue;
- `on_modal`: in a Modal container, jobs spawned on the job worker, their records in a
  modal.Dict, and `run`, what that worker runs;
- `failures`: what a job answers when Modal reports its call failed;
- `callbacks`: signed callbacks, sent only to the address their check resolved.
"""

from endpointgen.runtime.jobs.callbacks import Callbacks
from endpointgen.runtime.jobs.in_process import InProcess
from endpointgen.runtime.jobs.on_modal import OnModal, run
from endpointgen.runtime.jobs.records import JobAccepted, JobStatus, Record
from endpointgen.runtime.jobs.routes import Jobs
from endpointgen.runtime.jobs.work import from_wire, to_wire

__all__ = [
    "Callbacks",
    "InProcess",
    "JobAccepted",
    "JobStatus",
    "Jobs",
    "OnModal",
    "Record",
    "from_wire",
    "run",
    "to_wire",
]
