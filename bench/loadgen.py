"""HTTP/1.1 load generator on raw asyncio sockets, run as its own process.

Why not httpx: on a 2-core machine the client shares the CPU with the server, so it
must cost far less per request than the server does, or every ratio collapses to 1.
Requests are pre-encoded bytes on keep-alive connections; responses are parsed just
enough (status, Content-Length or chunked framing) to know where each one ends.

Stdlib only (uvloop when installed), so it never shares code with the server.
Usage: python bench/loadgen.py CONFIG.json; prints one JSON object on stdout.

CONFIG keys: mode ("load" | "ttft"), host, port, headers {name: value}, and
  load: method, path, bodies [json], connections, duration, warmup, requests
        (a total that stops the run early), sum_field (a JSON field of the
        response to add up, e.g. tokens_generated), per_connection (requests
        each connection sends, instead of duration)
  ttft: stream_path, plain_path, stream_body, plain_body, n
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any


class HttpError(Exception):
    """The server broke HTTP framing or closed the connection mid-response."""


def encode_request(
    method: str, host: str, port: int, path: str, headers: dict[str, str], body: Any
) -> bytes:
    """One complete request; the body is JSON when given, or as it is when given as
    `{"content_type": ..., "base64": ...}` (a multipart upload, say)."""
    kind = "application/json"
    if isinstance(body, dict) and set(body) == {"content_type", "base64"}:
        kind, payload = body["content_type"], base64.b64decode(body["base64"])
    else:
        payload = b"" if body is None else json.dumps(body).encode()
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines += [f"Content-Type: {kind}", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes]]:
    """Status code and lower-cased headers of the next response."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise HttpError("connection closed before a response") from exc
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def body_chunks(
    reader: asyncio.StreamReader, headers: dict[bytes, bytes]
) -> AsyncIterator[bytes]:
    """The response body as it arrives: one piece per HTTP chunk, or all at once."""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)  # the chunk and its CRLF
            if size == 0:
                return
            yield data[:-2]
    else:
        length = int(headers.get(b"content-length", b"0"))
        yield await reader.readexactly(length) if length else b""


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, headers = await read_head(reader)
    parts = [chunk async for chunk in body_chunks(reader, headers)]
    return status, b"".join(parts)


class Stats:
    """What the connections saw inside the measured window."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.summed = 0.0
        self.completed = 0


async def connection(
    cfg: dict[str, Any],
    requests: list[bytes],
    offset: int,
    stats: Stats,
    window: tuple[float, float],
    budget: list[int],
) -> None:
    """One keep-alive connection sending requests back to back until the window ends."""
    host, port = cfg["host"], cfg["port"]
    start, end = window
    sum_field = cfg.get("sum_field")
    per_connection = cfg.get("per_connection")
    reader, writer = await asyncio.open_connection(host, port)
    sent = 0
    try:
        while time.perf_counter() < end and budget[0] > 0:
            if per_connection is not None and sent >= per_connection:
                break
            request = requests[(offset + sent) % len(requests)]
            sent += 1
            began = time.perf_counter()
            if began >= start:
                budget[0] -= 1
            writer.write(request)
            try:
                status, body = await read_response(reader)
            except HttpError:
                stats.errors += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            if began < start:
                continue  # warm-up
            stats.completed += 1
            stats.latencies.append(time.perf_counter() - began)
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            if sum_field and status == 200:
                stats.summed += json.loads(body)[sum_field]
    finally:
        writer.close()


async def run_load(cfg: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: `connections` clients, each awaiting its answer before the next."""
    headers = cfg.get("headers", {})
    bodies = cfg.get("bodies") or [None]
    requests = [
        encode_request(cfg["method"], cfg["host"], cfg["port"], cfg["path"], headers, b)
        for b in bodies
    ]
    connections = cfg["connections"]
    warmup = cfg.get("warmup", 0.0)
    now = time.perf_counter()
    start = now + warmup
    end = start + cfg.get("duration", 1e9)
    budget = [cfg.get("requests", 1 << 60)]
    stats = Stats()
    step = max(1, len(requests) // connections)
    tasks = [
        connection(cfg, requests, i * step, stats, (start, end), budget) for i in range(connections)
    ]
    await asyncio.gather(*tasks)
    elapsed = min(time.perf_counter(), end) - start
    lat = sorted(stats.latencies) or [0.0]
    ok = stats.statuses.get(200, 0)
    return {
        "requests": stats.completed,
        "ok": ok,
        "errors": stats.errors,
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "elapsed_s": elapsed,
        "rps": ok / elapsed if elapsed > 0 else 0.0,
        "summed": stats.summed,
        "summed_per_s": stats.summed / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {
            "p50": 1000 * lat[len(lat) // 2],
            "p90": 1000 * lat[int(len(lat) * 0.9)],
            "p99": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        },
    }


async def time_to_token(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[float, bool]:
    """Seconds to the first SSE `token` event (or to the end), and whether one came."""
    began = time.perf_counter()
    writer.write(request)
    status, headers = await read_head(reader)
    if status != 200:
        raise HttpError(f"stream answered {status}")
    first: float | None = None
    seen = b""
    async for chunk in body_chunks(reader, headers):
        if first is None:
            seen += chunk
            if b"event: token" in seen:
                first = time.perf_counter() - began
    return (first, True) if first is not None else (time.perf_counter() - began, False)


async def run_ttft(cfg: dict[str, Any]) -> dict[str, Any]:
    """Alternate a streamed request and a one-token plain request, one at a time."""
    host, port, headers = cfg["host"], cfg["port"], cfg.get("headers", {})
    stream = encode_request("POST", host, port, cfg["stream_path"], headers, cfg["stream_body"])
    plain = encode_request("POST", host, port, cfg["plain_path"], headers, cfg["plain_body"])
    reader, writer = await asyncio.open_connection(host, port)
    ttft: list[float] = []
    full: list[float] = []
    without_token = 0
    try:
        for _ in range(cfg["n"]):
            seconds, had_token = await time_to_token(reader, writer, stream)
            ttft.append(seconds)
            without_token += not had_token
            began = time.perf_counter()
            writer.write(plain)
            status, _ = await read_response(reader)
            if status != 200:
                raise HttpError(f"generate answered {status}")
            full.append(time.perf_counter() - began)
    finally:
        writer.close()
    return {
        "ttft_ms": 1000 * statistics.median(ttft),
        "plain_ms": 1000 * statistics.median(full),
        "ttft_all_ms": [1000 * t for t in ttft],
        "plain_all_ms": [1000 * t for t in full],
        "streams_without_token": without_token,
    }


async def run_streams(cfg: dict[str, Any]) -> dict[str, Any]:
    """`connections` clients start a streamed request at once, `rounds` times: the time
    to each one's first SSE `token` event."""
    host, port, headers = cfg["host"], cfg["port"], cfg.get("headers", {})
    stream = encode_request("POST", host, port, cfg["stream_path"], headers, cfg["stream_body"])
    ttft: list[float] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            seconds, had_token = await time_to_token(reader, writer, stream)
            if not had_token:
                raise HttpError("a stream ended without a token")
            ttft.append(seconds)
        finally:
            writer.close()

    for _ in range(cfg.get("rounds", 1)):
        await asyncio.gather(*(client() for _ in range(cfg["connections"])))
    return {
        "ttft_ms": 1000 * statistics.median(ttft),
        "ttft_all_ms": [1000 * t for t in ttft],
    }


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:
        runner = asyncio.run
    work = {"ttft": run_ttft, "streams": run_streams}.get(cfg["mode"], run_load)
    print(json.dumps(runner(work(cfg))))


if __name__ == "__main__":
    main()
