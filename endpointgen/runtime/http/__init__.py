"""HTTP plumbing every app shares: request ids, JSON errors, body limits, one log line per
request, CORS, and the error answers each route documents in /openapi.json.

Built modules and the rest of the runtime use these names as `http.<name>`; each module
here holds one concern:

- `app`: the `app(...)` factory a built module calls;
- `context`: `RequestContext`, the outermost layer (ids, CORS, body limits, 500s, the log);
- `guards`: a route's checks and body limit, run before its body is read;
- `body`: what a request body may be (`STRICT`, the JSON parse);
- `errors`: JSON error bodies, `Rejected`, the error handlers;
- `settings`: what the layers and handlers read on `app.state.endpointgen`;
- `cors`, `accesslog`, `logs`, `ids`: CORS, the access log, JSON log lines, request ids;
- `responses`: text, bytes and streams (Server-Sent Events);
- `openapi`: what /openapi.json says each route may answer;
- `volumes`: where a spec's Volumes are on this machine;
- `websocket`: an accepted WebSocket's limits, sends and close codes (`Connection`).
"""

from endpointgen.runtime.http.accesslog import ACCESS_LOG, AccessLog
from endpointgen.runtime.http.app import App, app
from endpointgen.runtime.http.body import STRICT, NotJson, parse_body, unfit
from endpointgen.runtime.http.context import BodyTooLarge, RequestContext
from endpointgen.runtime.http.cors import Cors, CorsPolicy
from endpointgen.runtime.http.errors import ErrorBody, Rejected, error_body, reject
from endpointgen.runtime.http.guards import (
    DEFAULT_MAX_BYTES,
    Check,
    GuardedRoute,
    Guards,
    MaxBytes,
    check,
    checks_of,
    guards,
    run_check,
    starting_work,
)
from endpointgen.runtime.http.ids import request_id
from endpointgen.runtime.http.logs import JsonLines, configure_logging, log
from endpointgen.runtime.http.openapi import SSE_EVENT, document, documented, documents
from endpointgen.runtime.http.responses import (
    Binary,
    EventStream,
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
    Text,
    TextStream,
    binary,
    events,
    sse,
)
from endpointgen.runtime.http.settings import ErrorFormat, Settings, settings_of
from endpointgen.runtime.http.volumes import VOLUMES, on_this_machine

__all__ = [
    "ACCESS_LOG",
    "DEFAULT_MAX_BYTES",
    "SSE_EVENT",
    "STRICT",
    "VOLUMES",
    "AccessLog",
    "App",
    "Binary",
    "BodyTooLarge",
    "Check",
    "Cors",
    "CorsPolicy",
    "ErrorBody",
    "ErrorFormat",
    "EventStream",
    "FileResponse",
    "GuardedRoute",
    "Guards",
    "JSONResponse",
    "JsonLines",
    "MaxBytes",
    "NotJson",
    "PlainTextResponse",
    "Rejected",
    "RequestContext",
    "Response",
    "Settings",
    "StreamingResponse",
    "Text",
    "TextStream",
    "app",
    "binary",
    "check",
    "checks_of",
    "configure_logging",
    "document",
    "documented",
    "documents",
    "error_body",
    "events",
    "guards",
    "log",
    "on_this_machine",
    "parse_body",
    "reject",
    "request_id",
    "run_check",
    "settings_of",
    "sse",
    "starting_work",
    "unfit",
]
