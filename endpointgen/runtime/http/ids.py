"""Request ids: made for each request by `RequestContext`, read back by `request_id`."""

from __future__ import annotations

import itertools
import os

from fastapi import Request


class _Ids:
    """Request ids: unique per process start (random) and per request (a counter);
    cheaper than a uuid4 each, as unguessable as a client needs (they are not secrets).
    Made a thousand at a time, each as text and as a header value."""

    def __init__(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count(1)
        self.ready: list[tuple[str, bytes]] = []

    def next(self) -> tuple[str, bytes]:
        if not self.ready:
            made = [f"{self.prefix}{n:016x}" for n in itertools.islice(self.counter, 1024)]
            self.ready = [(rid, rid.encode("ascii")) for rid in reversed(made)]
        return self.ready.pop()


IDS = _Ids()


def request_id(request: Request) -> str:
    """The id `RequestContext` gave this request ("" outside one)."""
    return str(getattr(request.state, "request_id", ""))
