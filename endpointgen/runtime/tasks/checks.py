"""The route's ceilings on a request, and the checks that need no model: how many texts
and how long each, how many stop strings. Past one, a 422 before any model work."""

from __future__ import annotations

from endpointgen.runtime import http
from endpointgen.runtime.defaults import (
    DRAWN_PIXELS,
    DRAWN_STEPS,
    MAX_CHARS,
    MAX_ITEMS,
    MAX_TOKENS,
)

__all__ = ["DRAWN_PIXELS", "DRAWN_STEPS", "MAX_CHARS", "MAX_ITEMS", "MAX_TOKENS"]


MAX_STOPS = 16  # stop strings of one generation
MAX_STOP_CHARS = 100  # and the length of each


def stops_within(stop: str | list[str] | None, most: int) -> str | list[str] | None:
    """A request's `stop`, if it holds at most `most` strings of at most MAX_STOP_CHARS
    each: every step of a generation looks for each of them in its text."""
    stops = [stop] if isinstance(stop, str) else stop or []
    if len(stops) > most:
        raise ValueError(f"at most {most} stop strings")
    if any(len(s) > MAX_STOP_CHARS for s in stops):
        raise ValueError(f"stop strings may be at most {MAX_STOP_CHARS} characters")
    return stop


def check_texts(field: str, texts: list[str], max_items: int, max_chars: int) -> None:
    if len(texts) > max_items:
        raise http.reject(field, f"at most {max_items} texts per request")
    for text in texts:
        if len(text) > max_chars:
            raise http.reject(field, f"texts may be at most {max_chars} characters")
