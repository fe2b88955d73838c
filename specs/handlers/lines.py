"""Handlers that stream: each yielded string is sent as it is made."""

from collections.abc import Iterator


def lines(data: dict) -> Iterator[str]:
    for i in range(data["count"]):
        yield f"Line {i}\n"
