"""`tracing: {enabled: true}`: OpenTelemetry spans over OTLP/HTTP, received here by a real
collector endpoint (the OTLP protobuf decoded as a collector decodes it)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_spec
from servers import Server

from endpointgen.compiler import pipeline

pytestmark = pytest.mark.slow

SPEC: dict[str, Any] = {
    "name": "traced",
    "auth": {"mode": "api_key"},
    "tracing": {"enabled": True},
    "routes": [
        {
            "path": "/items/{item_id}",
            "action": "respond",
            "params": {"item_id": "int"},
            "response": {"id": "{item_id}"},
        },
        {"path": "/health", "action": "health"},
    ],
}


class Collector(ThreadingHTTPServer):
    """`POST /v1/traces`, OTLP/HTTP protobuf, as an OpenTelemetry collector takes it."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
                    ExportTraceServiceRequest,
                )

                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                for resource in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource.resource.attributes}
                    for scope in resource.scope_spans:
                        for span in scope.spans:
                            attributes = {a.key: _value(a.value) for a in span.attributes}
                            collector.spans.append(
                                {"name": span.name, "service": service, **attributes}
                            )
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in value.array_value.values]
    return getattr(value, kind) if kind else None


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def test_each_request_is_a_span_sent_where_the_otel_env_says(
    tmp_path: Path, collector: Collector
) -> None:
    """docs/spec.md, Top level (`tracing`): one span per request, named by the route
    template, with its status and the request's id, exported over OTLP/HTTP to
    `OTEL_EXPORTER_OTLP_ENDPOINT` as the app's name; `/health` probes are not traced."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds between batches
    }
    server = Server(write_spec(tmp_path, SPEC), env=env)
    try:
        server.wait_ready()
        ok = httpx.get(server.url + "/items/3", headers={"X-API-Key": "key-one"})
        refused = httpx.get(server.url + "/items/4", headers={"X-Client-Request-ID": "mine-1"})
        assert (ok.status_code, refused.status_code) == (200, 401)
        deadline = time.monotonic() + 10
        while len(collector.spans) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    spans = collector.spans
    assert [s["name"] for s in spans] == ["GET /items/{item_id}"] * 2, spans
    by_status = {s["http.status_code"]: s for s in spans}
    assert set(by_status) == {200, 401}
    assert by_status[200]["http.route"] == "/items/{item_id}"
    assert by_status[200]["http.response.header.x_request_id"] == [ok.headers["X-Request-ID"]]
    assert by_status[401]["http.response.header.x_client_request_id"] == ["mine-1"]
    assert all(s["service"]["service.name"] == "traced" for s in spans)
    assert "key-one" not in repr(spans)  # no credential in any attribute
    assert "Traceback" not in server.output


def test_tracing_off_costs_nothing(tmp_path: Path) -> None:
    """Off (the default), the module asks for no tracing and the app loads none of it:
    no OpenTelemetry SDK or instrumentation is imported, no layer is added."""
    spec = {**SPEC, "tracing": {"enabled": False}}
    built = pipeline.build(write_spec(tmp_path, spec), tmp_path / "out")
    assert "tracing" not in built.source
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source)
    probe = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('traced', {str(built.path)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "web = module.create_app()\n"
        "loaded = [m for m in sys.modules if m.startswith(('opentelemetry.sdk',"
        " 'opentelemetry.instrumentation', 'endpointgen.runtime.tracing'))]\n"
        "print(json.dumps([loaded, [m.cls.__name__ for m in web.user_middleware]]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    loaded, layers = json.loads(done.stdout)
    assert loaded == [] and layers == ["RequestContext"]
