"""A WebSocket through Modal's own ASGI adapter (tests/modal_container.py): the split
shape's CPU web tier holds the connection, the model class generates.

Modal's adapter (`modal._runtime.asgi.asgi_app_wrapper`, installed SDK) carries a
`websocket` scope: `websocket.connect` and each client message arrive on the input's
data stream, and the app's `websocket.accept`, `websocket.send` and `websocket.close`
come back as the messages it yields. What lies beyond it, Modal's proxy, is stood in
for: the scope it builds (no `subprotocols` key: the app reads the header) and the
client's messages."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import gpt2_spec, write_spec
from modal._runtime.execution_context import _set_current_context_ids
from modal_container import Cloud, Container

from endpointgen.compiler import pipeline

pytestmark = pytest.mark.slow

KEY = "key-one"
PAGE = "https://example.com"  # specs/gpt2.yaml's CORS origin


@pytest.fixture
def split_app(tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """specs/gpt2.yaml with `shape: split` and a WebSocket generate route."""
    spec = gpt2_spec(tiny_gpt2, shape="split")
    spec["routes"].insert(-1, {"path": "/generate/ws", "action": "generate", "websocket": True})
    built = pipeline.build(write_spec(tmp_path / "spec", spec), tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    monkeypatch.setenv("API_KEYS", KEY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return built.path


@contextlib.asynccontextmanager
async def modal_socket(
    web: Container, path: str, headers: dict[str, str]
) -> AsyncIterator[tuple[asyncio.Queue[dict[str, Any]], AsyncIterator[dict[str, Any]]]]:
    """One WebSocket input: the queue the client's messages go on (`websocket.connect`
    first), and the messages the app sends back through Modal's adapter. Leaving it, the
    client disconnects, as Modal's proxy reports it."""
    await web.serve()
    assert web._web is not None
    call_id = f"fc-ws-{id(headers)}"
    data_in: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    web.io.inputs[call_id] = data_in
    data_in.put_nowait({"type": "websocket.connect"})
    reset = _set_current_context_ids([f"in-{call_id}"], [call_id], ["attempt"])
    sent = {"host": "app--web.modal.run", **headers}
    scope = {  # what Modal's proxy builds: no "asgi" key, no "server"
        "type": "websocket",
        "http_version": "1.1",
        "scheme": "wss",
        "path": path,
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in sent.items()],
        "client": ("203.0.113.7", 40000),
    }
    replies = web._web(scope)
    try:
        yield data_in, replies
    finally:
        data_in.put_nowait({"type": "websocket.disconnect", "code": 1000})
        with contextlib.suppress(TimeoutError, StopAsyncIteration):
            async with asyncio.timeout(5):
                async for _ in replies:
                    pass
        await replies.aclose()
        reset()


def sent_text(message: dict[str, Any]) -> dict[str, Any]:
    assert message["type"] == "websocket.send", message
    found: dict[str, Any] = json.loads(message["text"])
    return found


def test_a_websocket_through_modals_asgi_adapter(
    split_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, WebSockets (`websocket`): on Modal (`@modal.asgi_app`), a connection is
    one input of the web tier: its handshake checks the credential offered as a
    subprotocol (accepted with `endpointgen`), its requests stream from the model class
    one `tokens` stream each, a cancel stops one, and the text is the HTTP route's.
    Without a credential it is accepted, then closed with 1008."""
    cloud = Cloud(split_app, monkeypatch)
    web = cloud.start("web")
    offered = "endpointgen, auth." + base64.urlsafe_b64encode(KEY.encode()).decode().rstrip("=")
    greedy = {"prompt": "Hello", "max_tokens": 5, "temperature": 0}

    async def go() -> dict[str, Any]:
        out: dict[str, Any] = {}
        headers = {"origin": PAGE, "sec-websocket-protocol": offered}
        async with modal_socket(web, "/generate/ws", headers) as (client, replies):
            out["accept"] = await anext(replies)
            since = len(cloud.log)
            client.put_nowait({"type": "websocket.receive", "text": json.dumps(greedy)})
            events = [sent_text(await anext(replies))]
            while events[-1]["event"] == "token":
                events.append(sent_text(await anext(replies)))
            out["events"] = events
            long = {"prompt": "Hi", "max_tokens": 200, "temperature": 0}
            client.put_nowait({"type": "websocket.receive", "text": json.dumps(long)})
            first = sent_text(await anext(replies))
            client.put_nowait({"type": "websocket.receive", "text": '{"type": "cancel"}'})
            tail = [first]
            while tail[-1]["event"] == "token":
                tail.append(sent_text(await anext(replies)))
            out["cancelled"] = tail
            out["calls"] = [m for c, m in cloud.log[since:] if c == "Inference"]
        auth = {"Authorization": f"Bearer {KEY}"}
        out["http"] = (await web.request("POST", "/generate", json=greedy, headers=auth)).json()
        async with modal_socket(web, "/generate/ws", {"origin": PAGE}) as (_, replies):
            out["refused"] = [await anext(replies), await anext(replies)]
        await web.shutdown()
        return out

    out = asyncio.run(asyncio.wait_for(go(), 120))
    assert out["accept"] == {
        "type": "websocket.accept",
        "subprotocol": "endpointgen",
        "headers": [],
    }
    *tokens, done = out["events"]
    assert tokens and done["event"] == "done"
    assert "".join(t["text"] for t in tokens) == done["text"] == out["http"]["text"]
    assert out["cancelled"][-1]["event"] == "cancelled" and len(out["cancelled"]) < 100
    assert out["calls"] == ["tokens", "tokens"]
    accepted, closed = out["refused"]
    assert accepted["type"] == "websocket.accept"
    assert closed == {
        "type": "websocket.close",
        "code": 1008,
        "reason": "missing or invalid bearer token",
    }
