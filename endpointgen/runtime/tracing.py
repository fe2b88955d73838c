"""OpenTelemetry traces for an app whose spec says `tracing: {enabled: true}`.

One span per request (FastAPI's instrumentation: the route template, method and status),
sent over OTLP/HTTP to where the standard environment says: `OTEL_EXPORTER_OTLP_ENDPOINT`
(or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), `OTEL_EXPORTER_OTLP_HEADERS` for a vendor's
key (keep it in a Modal Secret), `OTEL_SERVICE_NAME` (default: the app's name),
`OTEL_TRACES_SAMPLER`. Each span carries the request's ids as the response gave them
(`http.response.header.x_request_id`, the id in the access log and error bodies, and
`http.response.header.x_client_request_id` when the client sent its own); no request
header is recorded, so no credential is.

Imported only when tracing is on: an app without it loads none of this.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

__all__ = ["instrument"]

# Probes and scrapes would be most of the spans and say nothing.
NOT_TRACED = "health$,metrics$"


def instrument(web: FastAPI, service: str) -> TracerProvider:
    """Trace every request of `web` (but `/health` and `/metrics`), as `service` unless
    `OTEL_SERVICE_NAME` names another; spans leave in batches, off the request path."""
    name = os.environ.get("OTEL_SERVICE_NAME") or service
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    FastAPIInstrumentor.instrument_app(
        web,
        tracer_provider=provider,
        excluded_urls=os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", NOT_TRACED),
        http_capture_headers_server_response=["X-Request-ID", "X-Client-Request-ID"],
        exclude_spans=["receive", "send"],  # one span per request, not one per message
    )
    web.state.tracer_provider = provider
    return provider
