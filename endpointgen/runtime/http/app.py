"""`app(...)`, the FastAPI app every built module makes, with endpointgen's plumbing."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from endpointgen.runtime.http.accesslog import ACCESS_LOG
from endpointgen.runtime.http.context import RequestContext
from endpointgen.runtime.http.cors import Cors, CorsPolicy
from endpointgen.runtime.http.errors import http_error, validation_error
from endpointgen.runtime.http.guards import Check, GuardedRoute, run_check
from endpointgen.runtime.http.logs import configure_logging
from endpointgen.runtime.http.openapi import document
from endpointgen.runtime.http.settings import ErrorFormat, Settings
from endpointgen.runtime.metrics import METRICS

# Layers FastAPI puts outside an app's own middleware, which `RequestContext` makes
# redundant: it turns every exception into a 500 itself (ServerErrorMiddleware), so none
# reaches a layer outside it (ExceptionTelemetryMiddleware), and it bounds every body by
# its route's limit (AppBodyLimitMiddleware, unset here). Each would cost every request
# a coroutine, and some a wrapped `send`.
REDUNDANT = frozenset(
    {"ServerErrorMiddleware", "ExceptionTelemetryMiddleware", "AppBodyLimitMiddleware"}
)


class App(FastAPI):
    """FastAPI with `RequestContext` as its outermost layer. Traced, FastAPI's own stack
    stays whole: OpenTelemetry's instrumentation takes it apart and rebuilds it."""

    lean = True

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        while self.lean and type(stack).__name__ in REDUNDANT and hasattr(stack, "app"):
            stack = stack.app
        return stack


def app(
    title: str,
    description: str = "",
    *,
    cors: Cors | None = None,
    errors: Mapping[str, tuple[int, str]] | None = None,
    formats: Mapping[str, ErrorFormat] | None = None,
    metrics: bool = False,
    docs: Check | str = "public",
    tracing: bool = False,
) -> FastAPI:
    """A FastAPI app with endpointgen's plumbing; the built module adds its routes to it.

    `errors` maps exception class names to (status, message): a handler's exception of
    that class (or a subclass) answers so, instead of a 500. `formats` gives the paths
    under a prefix another error shape (`{"/v1": openai.ERRORS}`). `metrics`: count each
    request for `/metrics` (the module adds the route). `docs`: `/docs`, `/redoc` and
    `/openapi.json` for anyone (`"public"`), for no one (`"off"`), or behind a check (the
    app's auth), which each of the three then runs first. `tracing`: OpenTelemetry spans
    for every request (`runtime.tracing`), outside every other layer.
    """
    configure_logging()
    if docs not in ("public", "off") and not callable(docs):
        raise ValueError(f"docs must be 'public', 'off' or a check, not {docs!r}")
    public = docs == "public"
    web = App(
        title=title,
        description=description,
        openapi_url="/openapi.json" if public else None,
        docs_url="/docs" if public else None,
        redoc_url="/redoc" if public else None,
    )
    web.router.route_class = GuardedRoute
    web.state.endpointgen = Settings(dict(errors or {}), dict(formats or {}))
    web.add_exception_handler(HTTPException, http_error)
    web.add_exception_handler(RequestValidationError, validation_error)
    if cors is not None:
        web.state.endpointgen.cors = CorsPolicy(cors)
    if metrics:
        METRICS.counted_by(ACCESS_LOG.flush)  # requests count as their lines are written
        web.state.endpointgen.metrics = METRICS
    web.add_middleware(RequestContext, web=web)
    web.openapi = lambda: document(web)  # type: ignore[method-assign]
    if callable(docs):
        guarded_docs(web, docs)
    if tracing:
        from endpointgen.runtime.tracing import instrument

        web.lean = False
        instrument(web, title)
    return web


def guarded_docs(web: FastAPI, check: Check) -> None:
    """FastAPI's three documentation pages, each behind `check`. A browser sends no
    credential when Swagger UI fetches /openapi.json: fetch it with one (curl, a client
    generator), or serve the pages public."""
    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html

    # Starlette routes, as FastAPI's own docs routes are: cheaper for the router to pass
    # over on every other request than FastAPI routes.
    async def openapi(request: Request) -> Response:
        await run_check(check, request)
        return JSONResponse(web.openapi())

    async def swagger(request: Request) -> Response:
        await run_check(check, request)
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{web.title} - docs")

    async def redoc(request: Request) -> Response:
        await run_check(check, request)
        return get_redoc_html(openapi_url="/openapi.json", title=f"{web.title} - ReDoc")

    for path, page in (("/openapi.json", openapi), ("/docs", swagger), ("/redoc", redoc)):
        web.add_route(path, page, include_in_schema=False)
