"""The access log: one JSON line per request, written a batch at a time."""

from __future__ import annotations

import asyncio
import atexit
import json
import sys
import time
from time import perf_counter
from typing import Any

_quote = json.encoder.encode_basestring


class AccessLog:
    """One JSON line per request, on stderr, without the `logging` machinery on the hot
    path: a request leaves its fields, and every `EVERY` seconds (and at exit) the lines
    are written out together, in one write. An app with `/metrics` has its requests
    counted then too, so a request pays for neither; a scrape flushes first, so its
    counts are current.

    Each line is one JSON object, as the `endpointgen` logger's own lines are:
    `{"time": "2026-01-31T12:00:00.123", "level": "info", "app": ..., "request_id": ...,
    "method", "path", "status", "latency_ms"}` (and `client_request_id` when given).
    """

    EVERY = 0.05  # seconds: under load, one write for hundreds of lines
    # perf_counter() at the end, app (JSON-quoted), request id, client's id, method,
    # path, status, seconds taken, metrics (or None) and route template.
    Entry = tuple[float, str, str, str, str, str, int, float, Any, str]

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream
        self.pending: list[AccessLog.Entry] = []
        self.quoted: dict[str, str] = {}  # paths and methods, JSON-quoted
        atexit.register(self.flush)

    def add(self, entry: AccessLog.Entry) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_later(self.EVERY, self.flush)
        self.pending.append(entry)

    def quote(self, text: str) -> str:
        found = self.quoted.get(text)
        if found is None:
            found = _quote(text)
            if len(self.quoted) < 1000:  # paths are the clients' to choose
                self.quoted[text] = found
        return found

    def lines(self, entries: list[AccessLog.Entry]) -> str:
        out = []
        second, stamp = -1, ""
        to_wall = time.time() - perf_counter()
        quote = self.quote
        for ended, app, rid, client_id, method, path, status, took, _, _ in entries:
            now = ended + to_wall
            if int(now) != second:
                second = int(now)
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now))
            client = f'"client_request_id": {_quote(client_id)}, ' if client_id else ""
            out.append(
                f'{{"time": "{stamp}.{int(now * 1000) % 1000:03d}", "level": "info", '
                f'"app": {app}, "request_id": "{rid}", {client}"method": {quote(method)}, '
                f'"path": {quote(path)}, "status": {status}, "latency_ms": {took * 1000:.2f}}}\n'
            )
        return "".join(out)

    def flush(self) -> None:
        if not self.pending:
            return
        entries, self.pending = self.pending, []
        for _, _, _, _, method, _, status, took, metrics, route in entries:
            if metrics is not None:
                metrics.request(route, method, status, took)
        stream = self.stream if self.stream is not None else sys.stderr
        try:
            stream.write(self.lines(entries))
            stream.flush()
        except (OSError, ValueError):  # a closed stream at shutdown: nothing to say it on
            pass


ACCESS_LOG = AccessLog()
