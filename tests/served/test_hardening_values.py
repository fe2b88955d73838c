"""Hardening, round 3 (docs/security.md): values JSON cannot carry, and request heads too
large or with too many headers, each sent over real sockets to `endpointgen serve`."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import write_spec
from servers import Server

pytestmark = pytest.mark.slow

HANDLERS = """
def echo(data):
    return data


def nan(data):
    return {"score": float("nan")}


def surrogate(data):
    return {"text": "\\ud800"}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A served app whose routes take `any` and `object` fields and echo them back."""
    folder = tmp_path_factory.mktemp("values")
    (folder / "run.py").write_text(HANDLERS)
    fields = {"data": {"type": "any", "default": None}, "obj": {"type": "object", "default": {}}}
    handler = {"method": "POST", "action": "handler", "request": fields}
    spec = {
        "name": "values",
        "routes": [
            {**handler, "path": "/echo", "handler": "run.py:echo"},
            {**handler, "path": "/nan", "handler": "run.py:nan"},
            {**handler, "path": "/surrogate", "handler": "run.py:surrogate"},
            {"path": "/health", "action": "respond", "response": {"ok": True}},
            {
                "path": "/fill",
                "method": "POST",
                "action": "respond",
                "request": fields,
                "response": {"got": "{data}"},
            },
        ],
    }
    served = Server(write_spec(folder, spec))
    served.wait_ready()
    yield served
    served.stop()


@pytest.mark.parametrize("path", ["/echo", "/fill"])
@pytest.mark.parametrize(
    "body",
    [
        b'{"data": NaN}',
        b'{"data": [1e400]}',
        b'{"obj": {"a": Infinity}}',
        b'{"data": -Infinity}',
        b'{"data": "\\ud800"}',
        b'{"obj": {"\\udc00": 1}}',
        b'{"data": {"deep": ["\xed\xa0\x80"]}}',  # a surrogate's bytes, not its escape
    ],
)
def test_a_value_json_cannot_carry_is_refused_with_422(
    server: Server, path: str, body: bytes
) -> None:
    """Hardening 27.1: NaN, Infinity, 1e400 (infinite once parsed) or a lone surrogate in
    an `any` or `object` field was taken, then echoed, and the answer could not be written
    (500). It is refused at the request: 422, a JSON error body, no traceback."""
    answer = httpx.post(
        server.url + path, content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()
    assert error["error"] == "invalid request"
    assert error["detail"][0]["loc"][0] == "body"
    assert "Traceback" not in answer.text


def test_values_json_can_carry_still_pass(server: Server) -> None:
    """A surrogate pair (an emoji), a large finite number and a huge integer are JSON."""
    body = b'{"data": ["\\ud83d\\ude00", 1e308, ' + b"9" * 400 + b'], "obj": {"\xc3\xa9": 1}}'
    answer = httpx.post(
        server.url + "/echo", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 200
    assert answer.json() == {"data": ["\U0001f600", 1e308, int("9" * 400)], "obj": {"é": 1}}
    broken = httpx.post(
        server.url + "/echo", content=b'{"data": ', headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    assert broken.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.parametrize(
    ("path", "said"),
    [
        ("/nan", "handler returned a value JSON cannot carry: NaN"),
        ("/surrogate", "handler returned a value JSON cannot carry: a string with a lone"),
    ],
)
def test_a_handler_returning_a_value_json_cannot_carry_is_a_clear_500(
    server: Server, path: str, said: str
) -> None:
    """Hardening 27.1: a handler that returns NaN or a lone surrogate is a 500 whose log
    line says so, without the JSON encoder's traceback."""
    answer = httpx.post(server.url + path, json={})
    assert answer.status_code == 500
    assert answer.json()["error"] == "internal server error"
    rid = answer.json()["request_id"]
    assert server.wait_for(f"request {rid} failed: {said}")
    line = next(line for line in server.lines if f"request {rid} failed" in line)
    assert "traceback" not in json.loads(line)


# --- Request heads under `endpointgen serve` ---


def rss(server: Server) -> int:
    return int(psutil.Process(server.proc.pid).memory_info().rss)


def send_head(server: Server, head: bytes, then: bytes = b"", size: int = 0) -> bytes:
    """Send `head`, then `then` repeated up to `size` bytes in all (a header still being
    written), reading any answer as it comes; what the server answered, once it closes
    or within 20 seconds."""
    received = b""
    deadline = time.monotonic() + 20
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.setblocking(False)
        pending, sent = head, 0
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += chunk
                continue
            except BlockingIOError:
                pass
            except OSError:  # reset: the server closed with bytes unread
                break
            if not pending and sent < size:
                pending = then[: size - sent]
            if pending:
                try:
                    count = sock.send(pending)
                except BlockingIOError:
                    time.sleep(0.001)
                    continue
                except OSError:  # the server closed: read what it said
                    sock.settimeout(2)
                    try:
                        received += sock.recv(65536)
                    except OSError:
                        pass
                    break
                pending, sent = pending[count:], sent + count
            else:
                time.sleep(0.005)
    return received


def test_a_50_mb_header_is_refused_quickly(server: Server) -> None:
    """Hardening 27.2: a 50 MB header was read whole (the parser copying it over and over,
    seconds and hundreds of MB) and answered 200. It is refused with 431 once the head
    passes 64 KiB, without the server's memory growing."""
    before = rss(server)
    started = time.monotonic()
    head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
    answer = send_head(server, head, b"a" * 1_048_576, 50 * 1_048_576)
    took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    assert b'"error": "request header fields too large"' in answer
    assert took < 5
    assert rss(server) - before < 8 * 1_048_576


def test_ten_thousand_headers_are_refused(server: Server) -> None:
    """Hardening 27.2: a request could carry any number of headers (a million, each a
    Python object); past 100 it is refused with 431. A head within the limits passes."""
    many = b"a:1\r\n" * 10_000  # 50 KB: within the size limit, only their count refuses it
    just_over = b"".join(b"a%d: 1\r\n" % i for i in range(100))  # and Host: 101 headers
    for headers in (many, just_over):
        answer = send_head(server, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    fine = b"".join(b"x-h%d: %s\r\n" % (i, b"v" * 500) for i in range(90))  # 92 in all
    answer = send_head(
        server, b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + fine + b"\r\n"
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]


def test_large_bodies_and_pipelined_requests_are_not_taken_for_heads(server: Server) -> None:
    """A body that arrives with its head, or many small requests sent at once, pass the
    head limit: only a head's own bytes count."""
    data = json.dumps({"data": "x" * 500_000}).encode()
    answer = send_head(
        server,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data),
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    last = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = send_head(server, one * 3000 + last)
    assert answer.count(b"HTTP/1.1 200 ") == 3001


def test_health_answers_while_huge_headers_arrive(server: Server) -> None:
    """Hardening 27.2: twelve connections sending 50 MB headers held /health for seconds.
    With six such connections open, /health answers within a second."""
    stop = time.monotonic() + 15
    results: list[bytes] = []

    def attack() -> None:
        head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: "
        while time.monotonic() < stop and len(results) < 60:
            results.append(send_head(server, head, b"a" * 1_048_576, 50 * 1_048_576)[:20])

    threads = [threading.Thread(target=attack, daemon=True) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        took = []
        with httpx.Client(timeout=10) as client:
            for _ in range(10):
                started = time.monotonic()
                assert client.get(server.url + "/health").status_code == 200
                took.append(time.monotonic() - started)
                time.sleep(0.1)
    finally:
        stop = time.monotonic()
        for thread in threads:
            thread.join(timeout=25)
    assert max(took) < 1, took
    assert results and all(r.startswith(b"HTTP/1.1 431 ") for r in results), set(results)


def test_a_job_route_refuses_them_before_any_job_is_made(tmp_path: Path) -> None:
    """Hardening 27.1 on a job route: NaN or a lone surrogate in the submit, with or
    without `Prefer: wait`, is a 422 at the request; no job is made that could not be
    stored or answered."""
    (tmp_path / "run.py").write_text(HANDLERS)
    route = {
        "path": "/echo",
        "method": "POST",
        "action": "handler",
        "handler": "run.py:echo",
        "request": {"data": {"type": "any", "default": None}},
        "job": True,
    }
    served = Server(write_spec(tmp_path, {"name": "job-values", "routes": [route]}))
    try:
        served.wait_ready()
        for body in (b'{"data": NaN}', b'{"data": "\\ud800"}'):
            for prefer in ({}, {"Prefer": "wait=5"}):
                headers = {"Content-Type": "application/json", **prefer}
                answer = httpx.post(served.url + "/echo", content=body, headers=headers)
                assert answer.status_code == 422, answer.text
                assert answer.json()["error"] == "invalid request"
        fine = httpx.post(served.url + "/echo", json={"data": [1]}, headers={"Prefer": "wait=5"})
        assert fine.status_code == 200, fine.text
        assert fine.json() == {"data": [1]}
    finally:
        served.stop()
    assert "Traceback" not in served.output
