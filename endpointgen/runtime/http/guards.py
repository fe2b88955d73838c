"""A route's guards: the checks (auth, rate limits, a model being ready, the body limit)
that run before its body is read, the route class that runs them, and `check`, which
runs a request up to where its work would start (a job's submit)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Mapping
from contextvars import ContextVar
from typing import Any

from fastapi import Depends, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute
from starlette.types import Receive, Scope, Send

from endpointgen.runtime import defaults
from endpointgen.runtime.http.body import NOT_PARSED, parse_body, takes_a_form

DEFAULT_MAX_BYTES = defaults.MAX_BYTES  # a route's body limit unless it sets max_bytes


class MaxBytes:
    """A route's body limit. Listed in its guards, so a reader sees it on the route;
    enforced by the app's middleware before the body is read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, request: Request) -> None:
        return None


# A check refuses a request by raising. One that needs no I/O (a key, an in-memory rate
# limit) is a plain function and costs no coroutine; one that waits (Redis, a Dict)
# returns an awaitable.
Check = Callable[[Request], Awaitable[None] | None]


async def run_check(check: Check, request: Request) -> None:
    pending = check(request)
    if pending is not None:
        await pending


class Guards:
    """A route's checks, in order: auth, rate limits, the model being ready. Each is
    `(request) -> None` or `async (request) -> None` and refuses by raising. Listed in
    the route's `dependencies=` (`http.guards(...)`), where a reader looks for them;
    `GuardedRoute` takes them out and runs them itself, before the body is read."""

    def __init__(self, *checks: Check) -> None:
        self.checks = checks

    async def __call__(self, request: Request) -> None:
        for check in self.checks:
            await run_check(check, request)


def guards(*checks: Check) -> list[Any]:
    """`dependencies=` for a route guarded by `checks`, in the order given."""
    return [Depends(Guards(*checks))]


class GuardedRoute(APIRoute):
    """A FastAPI route whose `http.guards(...)` run before FastAPI reads the body and
    solves dependencies: a refused request costs no body parsing and no dependency
    solving, and a caller without credentials learns nothing from a malformed body (401,
    not 422). FastAPI would solve `Guards` as a dependency after reading the body, at
    several microseconds a request; here they are a plain loop."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        given = list(options.pop("dependencies", None) or ())
        found = [d.dependency for d in given if isinstance(d.dependency, Guards)]
        self.checks: tuple[Check, ...] = tuple(c for g in found for c in g.checks)
        rest = [d for d in given if not isinstance(d.dependency, Guards)]
        super().__init__(path, endpoint, dependencies=rest, **options)
        run = tuple(c for c in self.checks if not isinstance(c, MaxBytes))  # RequestContext's
        if run:
            inner = self.app

            async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
                request = Request(scope, receive)
                for check in run:
                    pending = check(request)
                    if pending is not None:
                        await pending
                await inner(scope, receive, send)

            self.app = guarded

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, behind a stricter JSON parse of the body (`parse_body`)."""
        handler = super().get_route_handler()
        if self.body_field is None or takes_a_form(self):
            return handler

        async def parsed(request: Request) -> Response:
            try:
                body = await request.body()
            except HTTPException:  # too large: 413
                raise
            except Exception:  # the client left: FastAPI answers as it does
                return await handler(request)
            if body:
                value = parse_body(body)
                if value is not NOT_PARSED:
                    request._json = value  # FastAPI's `request.json()` answers this one
            return await handler(request)

        return parsed


def checks_of(route: BaseRoute) -> list[Any]:
    """A route's checks, from its `http.guards(...)` and any other dependency."""
    found: list[Any] = list(getattr(route, "checks", ()))
    for each in getattr(route, "dependencies", ()):
        dependency = each.dependency
        found.extend(dependency.checks if isinstance(dependency, Guards) else [dependency])
    return found


def body_limit(route: BaseRoute) -> int:
    """The route's `MaxBytes`, or the default."""
    for check in checks_of(route):
        if isinstance(check, MaxBytes):
            return check.limit
    return DEFAULT_MAX_BYTES


# Set while a request is only checked (a job's submit): its route's code runs its checks,
# then stops where model or handler work would start, by raising `Checked` there.
CHECKING: ContextVar[bool] = ContextVar("endpointgen_checking", default=False)


class Checked(Exception):
    """Raised where work would start while `CHECKING` is set: the request passed every
    check before it."""


def starting_work() -> None:
    """Called where a model or a handler is about to run."""
    if CHECKING.get():
        raise Checked


async def check(work: Callable[..., Awaitable[Any]], values: Mapping[str, Any]) -> None:
    """Run `work(**values)` up to where its model or handler work would start, so that
    whatever it would refuse (a route's ceilings: 422) is raised now."""
    token = CHECKING.set(True)
    try:
        await work(**values)
    except Checked:
        pass
    finally:
        CHECKING.reset(token)
