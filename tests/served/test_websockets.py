"""WebSocket routes under `endpointgen serve`: a real uvicorn process, a real client
library (`websockets`), a real (tiny) GPT-2. Each close code is what the client library
reads off the close frame."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_spec
from servers import Server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.slow

KEY = "key-one"
AUTH = {"Authorization": f"Bearer {KEY}"}
PAGE = "https://app.example.com"
HANDLERS = """
import asyncio


async def converse(messages, model):
    async for message in messages:
        if isinstance(message, bytes):
            yield message[::-1]
        elif message == "bye":
            yield "bye"
            return
        else:
            yield {"text": message, "tokens": await asyncio.to_thread(model.count, message)}


async def echo(messages):
    async for message in messages:
        yield message


async def refuses(messages):
    async for message in messages:
        raise ValueError(message)
        yield


async def breaks(messages):
    async for message in messages:
        raise RuntimeError("a bug")
        yield


async def flood(messages):
    while True:
        yield b"x" * 65536


async def not_json(messages):
    async for message in messages:
        yield {"value": float("nan")}
"""


def handler_route(path: str, function: str, **more: Any) -> dict[str, Any]:
    return {
        "path": path,
        "action": "handler",
        "handler": f"handlers.py:{function}",
        "websocket": True,
        **more,
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("sockets")
    (folder / "handlers.py").write_text(HANDLERS)
    spec = {
        "name": "sockets",
        "model": {"id": str(tiny_gpt2), "task": "text-generation"},
        "auth": {"mode": "bearer"},
        "cors": {"origins": [PAGE]},
        "rate_limit": {"limit": "10000/minute", "key": "api_key"},
        "errors": {"ValueError": {"status": 422, "message": "the message could not be read"}},
        "routes": [
            {"path": "/generate", "method": "POST", "action": "generate"},
            {
                "path": "/generate",
                "action": "generate",
                "websocket": True,
                "max_bytes": 2048,
                "max_tokens": 300,
            },
            handler_route("/talk", "converse"),
            handler_route("/brief", "echo", websocket={"idle_timeout": 1, "max_lifetime": 2}),
            handler_route("/limited", "echo", rate_limit={"limit": "3/minute", "key": "api_key"}),
            handler_route("/refuses", "refuses"),
            handler_route("/breaks", "breaks"),
            handler_route("/nan", "not_json"),
            handler_route("/flood", "flood", websocket={"max_lifetime": 2}),
            {"path": "/health", "action": "health"},
        ],
    }
    running = Server(write_spec(folder, spec))
    running.wait_ready()
    yield running
    running.stop()


def ws_url(server: Server, path: str) -> str:
    return server.url.replace("http://", "ws://") + path


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def run(coroutine: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coroutine, 60))


async def close_of(socket: ClientConnection) -> tuple[int, str]:
    """The code and reason of the server's close frame, once it comes."""
    try:
        while True:
            await socket.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "the server sent no close frame"
        return closed.rcvd.code, closed.rcvd.reason


async def answer(socket: ClientConnection, request: dict[str, Any]) -> list[dict[str, Any]]:
    """A generate request's events, up to the one that ends it."""
    await socket.send(json.dumps(request))
    events = []
    while True:
        event = json.loads(await socket.recv())
        events.append(event)
        if event["event"] != "token":
            return events


def test_several_generations_share_one_connection(server: Server) -> None:
    """docs/spec.md, WebSockets (`websocket`): on a `generate` route each JSON message is a
    request, answered with `{"event": "token", "text"}` messages and then `{"event":
    "done", ...}` with the totals; requests follow each other on one connection, and a
    greedy one writes what the HTTP route writes."""

    async def go() -> list[list[dict[str, Any]]]:
        async with connect(ws_url(server, "/generate"), additional_headers=AUTH) as socket:
            return [
                await answer(socket, {"prompt": "Hello", "max_tokens": 6, "temperature": 0}),
                await answer(socket, {"type": "generate", "prompt": "Bye", "max_tokens": 4}),
            ]

    first, second = run(go())
    for events in (first, second):
        *tokens, done = events
        assert tokens and all(set(e) == {"event", "text"} for e in tokens)
        assert done["event"] == "done" and done["request_id"]
        assert "".join(e["text"] for e in tokens) == done["text"]
    assert first[-1]["tokens_generated"] == 6 and second[-1]["tokens_generated"] <= 4
    assert first[-1]["request_id"] != second[-1]["request_id"]
    body = {"prompt": "Hello", "max_tokens": 6, "temperature": 0}
    http = httpx.post(server.url + "/generate", json=body, headers=AUTH, timeout=30).json()
    assert http["text"] == first[-1]["text"]


def test_a_cancel_stops_the_generation_under_way(server: Server) -> None:
    """docs/spec.md, WebSockets (`websocket`): `{"type": "cancel"}` stops the request under
    way, which ends with `{"event": "cancelled"}`; the model stops generating, and the
    connection takes the next request."""

    async def go() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with connect(ws_url(server, "/generate"), additional_headers=AUTH) as socket:
            long = {"prompt": "Hello", "max_tokens": 200, "temperature": 0}
            await socket.send(json.dumps(long))
            got = [json.loads(await socket.recv())]
            await socket.send(json.dumps({"type": "cancel"}))
            while got[-1]["event"] == "token":
                got.append(json.loads(await socket.recv()))
            return got, await answer(socket, {"prompt": "Again", "max_tokens": 3})

    cancelled, after = run(go())
    assert cancelled[0]["event"] == "token"
    assert cancelled[-1]["event"] == "cancelled" and cancelled[-1]["request_id"]
    assert len(cancelled) < 100, "the generation ran on"
    stopped = f"request {cancelled[-1]['request_id']}: client went away; generation stopped"
    assert server.wait_for(stopped)
    assert after[-1]["event"] == "done"


def test_a_client_that_leaves_stops_its_generation(server: Server) -> None:
    """docs/spec.md, WebSockets (`websocket`): a connection that closes while a request is
    under way stops its generation, as a stream's client leaving does."""

    def stopped() -> int:
        return sum("generation stopped after" in line for line in server.lines)

    async def go() -> None:
        async with connect(ws_url(server, "/generate"), additional_headers=AUTH) as socket:
            long = {"prompt": "Bye", "max_tokens": 200, "temperature": 0}
            await socket.send(json.dumps(long))
            assert json.loads(await socket.recv())["event"] == "token"

    before = stopped()
    run(go())
    waited = time.monotonic()
    while stopped() == before and time.monotonic() - waited < 10:
        time.sleep(0.05)
    assert stopped() == before + 1, "the generation ran on after its client left"
    lines = [line for line in server.lines if '"websocket closed"' in line]
    assert json.loads(lines[-1])["reason"] == "the client closed"


BAD_MESSAGES: list[str | bytes] = [
    "not json",
    b"\x00\x01",
    '{"type": "sing"}',
    '{"prompt": "a", "max_tokens": 301}',
    "[1]",
    '{"prompt": ""}',
]


def test_one_request_at_a_time_and_bad_ones_leave_the_connection_open(server: Server) -> None:
    """docs/spec.md, WebSockets (`websocket`): a request while another runs, a message that
    is no JSON object, binary data, an unknown `type` and a request over the route's
    `max_tokens` each get `{"event": "error", "error", "request_id"}` (a 422's `detail`
    for the last), and the connection goes on."""

    async def go() -> tuple[list[dict[str, Any]], ...]:
        async with connect(ws_url(server, "/generate"), additional_headers=AUTH) as socket:
            await socket.send(json.dumps({"prompt": "Hello", "max_tokens": 40}))
            await socket.send(json.dumps({"prompt": "Also", "max_tokens": 2}))
            events = [json.loads(await socket.recv())]
            while events[-1]["event"] != "done":
                events.append(json.loads(await socket.recv()))
            errors = []
            for bad in BAD_MESSAGES:
                await socket.send(bad)
                errors.append(json.loads(await socket.recv()))
            return events, errors, await answer(socket, {"prompt": "Fine", "max_tokens": 2})

    events, refused, after = run(go())
    busy = [e for e in events if e["event"] == "error"]
    assert [e["error"] for e in busy] == [
        "one request at a time: wait for its done, or send a cancel"
    ]
    assert events[-1]["event"] == "done"
    assert [e["event"] for e in refused] == ["error"] * 6
    assert [e["error"] for e in refused] == [
        "a request is a JSON object",
        "send each request as a JSON text message",
        "unknown type 'sing': generate or cancel",
        "invalid request",
        "a request is a JSON object",
        "invalid request",
    ]
    assert refused[3]["detail"] == [
        {"loc": ["max_tokens"], "msg": "must be at most 300", "type": "value_error"}
    ]
    assert refused[5]["detail"][0]["loc"] == ["prompt"]
    assert all(e["request_id"] for e in refused)
    assert after[-1]["event"] == "done"


def test_a_handler_gets_the_messages_and_the_model(server: Server) -> None:
    """docs/spec.md, WebSockets (`handler`): your async generator gets the client's messages
    (text as `str`, binary as `bytes`) and the model; what it yields is sent as text, bytes
    or JSON; when it returns, the connection closes with 1000."""

    async def go() -> tuple[list[Any], tuple[int, str]]:
        async with connect(ws_url(server, "/talk"), additional_headers=AUTH) as socket:
            got = []
            for message in ("hello there", b"abc", "bye"):
                await socket.send(message)
                got.append(await socket.recv())
            return got, await close_of(socket)

    got, closed = run(go())
    assert json.loads(got[0])["text"] == "hello there" and json.loads(got[0])["tokens"] > 0
    assert got[1:] == [b"cba", "bye"]
    assert closed[0] == 1000


def test_credentials_go_in_a_header_or_a_subprotocol_never_the_url(server: Server) -> None:
    """docs/spec.md, WebSockets (`auth.<credential>`): the app's auth guard checks the
    handshake's header, or the credential a browser offers as the subprotocol
    `auth.<base64url>` beside `endpointgen`, which the server answers (never echoing the
    credential); without one, or with a wrong one, it closes with
    docs/spec.md, WebSockets (`1008`)."""

    async def go() -> list[Any]:
        out: list[Any] = []
        url = ws_url(server, "/talk")
        async with connect(url, additional_headers=AUTH) as socket:
            out.append(socket.subprotocol)
            await socket.send("hi")
            out.append(json.loads(await socket.recv())["text"])
        offered = ["endpointgen", "auth." + b64(KEY)]
        async with connect(url, subprotocols=offered) as socket:
            out.append(socket.subprotocol)
            await socket.send("hi")
            out.append(json.loads(await socket.recv())["text"])
        for protocols in (None, ["endpointgen", "auth." + b64("wrong")], ["auth." + b64(KEY)]):
            async with connect(url, subprotocols=protocols) as socket:
                out.append(await close_of(socket))
        async with connect(url + f"?token={KEY}") as socket:
            out.append(await close_of(socket))
        return out

    header, said, marker, said_too, none, wrong, unmarked, query = run(go())
    assert (header, said, marker, said_too) == (None, "hi", "endpointgen", "hi")
    assert none == wrong == query == (1008, "missing or invalid bearer token")
    assert unmarked == (1008, "offer the subprotocol endpointgen with the credential")


def test_a_ticket_opens_one_connection(server: Server) -> None:
    """docs/spec.md, WebSockets (`ticket.<ticket>`): `POST <path>/ticket`, behind the app's
    auth, gives a ticket and the subprotocols to offer; it opens one connection to that
    route, once. A used, altered or other route's ticket is refused with 1008."""
    assert httpx.post(server.url + "/talk/ticket").status_code == 401
    r = httpx.post(server.url + "/talk/ticket", headers=AUTH)
    assert r.status_code == 200, r.text
    given = r.json()
    ticket = given["ticket"]
    assert given["protocols"] == ["endpointgen", f"ticket.{ticket}"]
    assert given["expires_in"] == 30

    async def go() -> list[Any]:
        out: list[Any] = []
        url = ws_url(server, "/talk")
        async with connect(url, subprotocols=given["protocols"]) as socket:
            await socket.send("hi")
            out.append(json.loads(await socket.recv())["text"])
        other = httpx.post(server.url + "/generate/ticket", headers=AUTH).json()["protocols"]
        altered = ["endpointgen", f"ticket.{ticket[:-2]}xx"]
        for protocols in (given["protocols"], other, altered):
            async with connect(url, subprotocols=protocols) as socket:
                out.append(await close_of(socket))
        return out

    said, *refused = run(go())
    assert said == "hi"
    assert refused == [(1008, "invalid or expired ticket")] * 3


def test_the_origin_of_a_browser_page_is_checked(server: Server) -> None:
    """docs/spec.md, WebSockets (`Origin`): a page whose origin `cors.origins` lists may
    connect; another is refused with 1008; a client that sends no `Origin` (not a browser)
    is let through to the auth check."""

    async def go() -> list[Any]:
        out: list[Any] = []
        url = ws_url(server, "/talk")
        async with connect(url, additional_headers=AUTH, origin=PAGE) as socket:
            await socket.send("hi")
            out.append(json.loads(await socket.recv())["text"])
        evil = "https://evil.example.com"
        async with connect(url, additional_headers=AUTH, origin=evil) as socket:
            out.append(await close_of(socket))
        return out

    assert run(go()) == ["hi", (1008, "origin not allowed")]


def test_a_message_over_max_bytes_closes_with_1009(server: Server) -> None:
    """docs/spec.md, WebSockets (`max_bytes`): the route's `max_bytes` bounds each message;
    a larger one closes the connection with docs/spec.md, WebSockets (`1009`)."""

    async def go() -> tuple[int, str]:
        async with connect(ws_url(server, "/generate"), additional_headers=AUTH) as socket:
            await socket.send(json.dumps({"prompt": "x" * 2100}))
            return await close_of(socket)

    assert run(go()) == (1009, "a message is at most 2048 bytes")


def test_the_rate_limit_counts_the_connection_and_each_message(server: Server) -> None:
    """docs/spec.md, WebSockets (`rate_limit`): the route's limit counts the handshake and
    every message, with the same limiter as its HTTP requests; past it the connection
    closes with docs/spec.md, WebSockets (`1013`), the reason saying when to retry."""

    async def go() -> tuple[list[Any], tuple[int, str], float, float]:
        began = time.time()
        async with connect(ws_url(server, "/limited"), additional_headers=AUTH) as socket:
            echoed = []
            for text in ("one", "two", "three"):
                await socket.send(text)
                try:
                    echoed.append(await socket.recv())
                except ConnectionClosed:
                    break
            return echoed, await close_of(socket), began, time.time()

    for _ in range(2):  # the windows are clock minutes: a test across two counts twice
        echoed, (code, why), began, ended = run(go())
        if int(began // 60) == int(ended // 60):
            break
    assert echoed == ["one", "two"]  # the handshake took the first of 3
    assert code == 1013
    assert why.startswith("rate limit exceeded; retry in ") and why.endswith(" s")


def test_an_idle_connection_closes_with_1000(server: Server) -> None:
    """docs/spec.md, WebSockets (`idle_timeout`): no message either way for that long closes
    the connection with docs/spec.md, WebSockets (`1000`)."""

    async def go() -> tuple[tuple[int, str], float]:
        async with connect(ws_url(server, "/brief"), additional_headers=AUTH) as socket:
            began = time.monotonic()
            await socket.send("ping")
            assert await socket.recv() == "ping"
            return await close_of(socket), time.monotonic() - began

    (code, why), took = run(go())
    assert (code, why) == (1000, "idle for 1 s")
    assert 0.9 <= took < 3  # a loaded machine may close it late, never early


def test_a_connection_ends_at_its_lifetime_with_1001(server: Server) -> None:
    """docs/spec.md, WebSockets (`max_lifetime`): however busy, a connection lasts that long,
    then closes with docs/spec.md, WebSockets (`1001`), so the client reconnects."""

    async def go() -> tuple[tuple[int, str], float, int]:
        async with connect(ws_url(server, "/brief"), additional_headers=AUTH) as socket:
            began, echoed = time.monotonic(), 0
            try:
                while True:
                    await socket.send("busy")
                    await socket.recv()
                    echoed += 1
                    await asyncio.sleep(0.25)
            except ConnectionClosed:
                pass
            return await close_of(socket), time.monotonic() - began, echoed

    (code, why), took, echoed = run(go())
    assert (code, why) == (1001, "connection lifetime of 2 s")
    assert 1.9 <= took < 4 and echoed >= 3


def test_a_handler_that_never_pauses_still_ends_at_the_lifetime(server: Server) -> None:
    """docs/spec.md, WebSockets (`max_lifetime`): a handler that yields without pause, to a
    client whose code reads nothing, holds neither the server's event loop (each send
    gives it a turn) nor the connection past its lifetime."""

    def closed() -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in server.lines if '"websocket closed"' in line]
        return [line for line in lines if line["path"] == "/flood"]

    async def go() -> None:
        async with connect(ws_url(server, "/flood"), additional_headers=AUTH, max_queue=1):
            waited = time.monotonic()
            while not closed() and time.monotonic() - waited < 12:
                await asyncio.sleep(0.1)

    run(go())
    (line,) = closed()
    assert (line["code"], line["reason"]) == (1001, "connection lifetime of 2 s"), line
    assert line["seconds"] < 2 + 5 + 1


def test_a_handler_that_fails_closes_with_its_mapped_code_or_1011(server: Server) -> None:
    """docs/spec.md, WebSockets (`4000`): an exception the spec's `errors:` maps closes with
    4000 + its status and its message; any other, and an answer JSON cannot carry, with
    docs/spec.md, WebSockets (`1011`), the traceback in the server's log."""

    async def one(path: str) -> tuple[int, str]:
        async with connect(ws_url(server, path), additional_headers=AUTH) as socket:
            await socket.send("hi")
            return await close_of(socket)

    assert run(one("/refuses")) == (4422, "the message could not be read")
    code, why = run(one("/breaks"))
    assert code == 1011 and why.startswith("internal error (connection ")
    assert server.wait_for("RuntimeError: a bug")
    assert run(one("/nan")) == (1011, "the handler answered what JSON cannot carry")


def test_each_connection_is_logged_with_its_close_code(server: Server) -> None:
    """docs/spec.md, WebSockets (`websocket`): the server logs one JSON line per connection,
    with its id, its close code and reason, and the messages each way."""

    async def go() -> None:
        async with connect(ws_url(server, "/talk"), additional_headers=AUTH) as socket:
            await socket.send("bye")
            await socket.recv()
            await close_of(socket)

    run(go())
    assert server.wait_for('"message": "websocket closed"')
    lines = [json.loads(line) for line in server.lines if '"websocket closed"' in line]
    mine = [line for line in lines if line["path"] == "/talk" and line["received"] == 1]
    assert mine and mine[-1]["code"] == 1000 and mine[-1]["sent"] == 1


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An app with no model and no `cors`, behind `api_key` auth in its own header."""
    folder = tmp_path_factory.mktemp("keyed")
    (folder / "handlers.py").write_text(HANDLERS)
    spec = {
        "name": "keyed",
        "auth": {"mode": "api_key", "header": "X-Key"},
        "routes": [
            handler_route("/echo", "echo"),
            handler_route("/open", "echo", auth="none"),
            {"path": "/health", "action": "health"},
        ],
    }
    running = Server(write_spec(folder, spec))
    running.wait_ready()
    yield running
    running.stop()


def test_api_keys_are_checked_by_the_same_guard(keyed: Server) -> None:
    """docs/spec.md, WebSockets (`auth.<credential>`): with `api_key` auth the key goes in
    its header, or base64url in the subprotocol, or is traded for a ticket; a route with
    `auth: none` takes anyone."""
    r = httpx.post(keyed.url + "/echo/ticket", headers={"X-Key": KEY})
    assert r.status_code == 200, r.text
    url = ws_url(keyed, "/echo")

    async def echoed(path: str, **options: Any) -> Any:
        async with connect(ws_url(keyed, path), **options) as socket:
            try:
                await socket.send("hi")
                return await socket.recv()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else None

    async def go() -> list[Any]:
        return [
            await echoed("/echo", additional_headers={"X-Key": KEY}),
            await echoed("/echo", subprotocols=["endpointgen", "auth." + b64(KEY)]),
            await echoed("/echo", subprotocols=r.json()["protocols"]),
            await echoed("/echo", additional_headers={"X-API-Key": KEY}),
            await echoed("/open"),
        ]

    assert url.endswith("/echo")
    assert run(go()) == ["hi", "hi", "hi", 1008, "hi"]


def test_without_cors_only_the_apps_own_pages_may_connect(keyed: Server) -> None:
    """docs/spec.md, WebSockets (`Origin`): with no `cors`, a page may connect only from
    the app's own origin, as a browser lets only such pages read its HTTP routes."""
    host = keyed.url.removeprefix("http://")

    async def go() -> list[Any]:
        out: list[Any] = []
        for origin in (f"http://{host}", "https://elsewhere.example.com"):
            async with connect(ws_url(keyed, "/open"), origin=origin) as socket:
                try:
                    await socket.send("hi")
                    out.append(await socket.recv())
                except ConnectionClosed as closed:
                    out.append(closed.rcvd.code if closed.rcvd else None)
        return out

    assert run(go()) == ["hi", 1008]
