"""Every default a route or an app gets where its spec says nothing: one table.

The runtime does this unless a built module says otherwise; the compiler fills the same
values into its plan (and writes out only what differs from them); the spec's schema
documents them. Plain numbers, no imports: the CLI reads them without the runtime's
dependencies.
"""

from __future__ import annotations

MAX_TOKENS = 1024  # tokens a generation may ask for
MAX_CHARS = 20_000  # characters of one text
MAX_ITEMS = 128  # texts of one request
MAX_BYTES = 1024 * 1024  # a request's body
DRAWN_PIXELS = 1024 * 1024  # text-to-image: the largest width x height
DRAWN_STEPS = 50  # and the most denoising steps
WEBHOOK_TOLERANCE = 300  # seconds a webhook's timestamp may be off; Stripe's and Slack's
JOB_CONCURRENCY = 4  # jobs running at once outside Modal (serve)
JOB_QUEUE = 256  # jobs that may wait for a slot outside Modal
JOB_QUEUE_MIB = 256  # and the MiB of their values, as JSON
SOCKET_IDLE = 300  # seconds a WebSocket may sit with no message either way
MODAL_TIMEOUT = 300  # seconds a Modal function may run unless `resources.timeout` says
