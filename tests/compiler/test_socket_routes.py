"""What a WebSocket route builds into: a short `@web.websocket` function handing the
connection to its `sockets.Socket`, which holds the guards the route's HTTP twin would
run, in the same order, and its limits; and the POST that gives its tickets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import write_spec

from endpointgen.compiler import pipeline

TALK = "async def talk(messages):\n    async for message in messages:\n        yield message\n"


def built(folder: Path, **spec: Any) -> str:
    (folder / "handlers.py").write_text(TALK)
    path = write_spec(folder, {"name": "sockets", **spec})
    return pipeline.build(path, folder / "out").source


def socket_route() -> dict[str, Any]:
    return {"path": "/talk", "action": "handler", "handler": "handlers.py:talk", "websocket": True}


def between(source: str, start: str, end: str) -> str:
    return source[source.index(start) : source.index(end, source.index(start))]


def test_the_socket_holds_the_routes_guards_in_order(tmp_path: Path) -> None:
    """docs/spec.md, WebSockets (`rate_limit`): a limit by address runs before the auth
    guard, one by key after it, as on an HTTP route; the route's `max_bytes` bounds each
    message; the decorator itself runs no guard (a WebSocket's come from its Socket)."""
    source = built(
        tmp_path,
        auth={"mode": "api_key"},
        routes=[
            {**socket_route(), "rate_limit": {"limit": "5/minute"}, "max_bytes": 4096},
            {
                **socket_route(),
                "path": "/keyed",
                "rate_limit": {"limit": "9/minute", "key": "api_key"},
            },
        ],
    )
    assert '@web.websocket("/talk")\n    async def talk(websocket: WebSocket) -> None:' in source
    assert "await talk_socket.relay(websocket, talk_handler)" in source
    first = between(source, "talk_socket = sockets.Socket(", ")\n")
    arguments = [a.strip() for a in first.split("(", 1)[1].split(",")]
    assert arguments[:3] == ['"/talk"', "limit_route_0", "require_auth"]
    assert "max_bytes=4096" in first and "idle_timeout=300" in first and "max_lifetime=300" in first
    second = between(source, "keyed_socket = sockets.Socket(", ")\n")
    assert second.index("require_auth") < second.index("limit_route_1")
    assert "@web.websocket" in source and "dependencies=guards" not in source
    assert "from fastapi import FastAPI, Request, WebSocket" in source
    assert "sockets" in source.split("from endpointgen.runtime import ")[1].split("\n")[0]


@pytest.mark.parametrize(
    ("auth", "ticket"),
    [
        ({"mode": "api_key"}, True),
        ({"mode": "bearer"}, True),
        ({"mode": "jwt"}, True),
        ({"mode": "jwt", "algorithm": "RS256"}, False),  # a public key signs nothing
        ({"mode": "proxy"}, False),  # Modal checks its headers at its edge
        ({"mode": "none"}, False),
    ],
)
def test_a_ticket_route_where_auth_holds_a_secret(
    tmp_path: Path, auth: dict[str, str], ticket: bool
) -> None:
    """docs/spec.md, WebSockets (`ticket.<ticket>`): `POST <path>/ticket` is served behind
    the route's auth and limits (not its model's readiness) where the auth has a secret to
    sign tickets with: keys, tokens, an HS256 JWT secret; CORS then allows POST too."""
    spec: dict[str, Any] = {
        "auth": auth,
        "cors": {"origins": ["https://app.example.com"]},
        "routes": [socket_route()],
    }
    source = built(tmp_path, **spec)
    assert ('@web.post("/talk/ticket", dependencies=http.guards(require_auth))' in source) is ticket
    assert ("return talk_socket.ticket(request)" in source) is ticket
    assert ('methods=["GET", "POST"]' in source) is ticket


def test_generate_over_a_websocket_keeps_the_routes_ceilings(tmp_path: Path) -> None:
    """docs/spec.md, WebSockets (`websocket`): a `generate` route's requests are bounded by
    its `max_tokens` and `max_chars`, its model must be ready before a connection opens,
    and its `idle_timeout` and `max_lifetime` (within `resources.timeout`) are written out."""
    source = built(
        tmp_path,
        model={"id": "gpt2", "task": "text-generation"},
        auth={"mode": "bearer"},
        resources={"timeout": 900},
        routes=[
            {
                "path": "/chat",
                "action": "generate",
                "websocket": {"idle_timeout": 45},
                "max_tokens": 64,
                "max_chars": 500,
            }
        ],
    )
    made = between(source, "chat_socket = sockets.Socket(", ")\n")
    assert "model.ready" in made and "idle_timeout=45" in made and "max_lifetime=900" in made
    assert "chat_socket.generate(websocket, model, max_tokens=64, max_chars=500)" in source
