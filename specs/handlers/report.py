"""The handler behind specs/jobs.yaml's /report: a long document's word statistics."""

from collections import Counter
from typing import Any


def report(data: dict, model: Any) -> dict:
    """Words, sentences and the ten commonest words of `text` (`model` is unused here)."""
    text = data["text"]
    words = [w.strip(".,;:!?\"'()").lower() for w in text.split()]
    words = [w for w in words if w]
    sentences = sum(text.count(mark) for mark in ".!?") or 1
    return {
        "words": len(words),
        "sentences": sentences,
        "common": [word for word, _ in Counter(words).most_common(10)],
    }
