"""GPU names: any case in, Modal's spelling out, with `:N` counts and fallback lists."""

from __future__ import annotations

import difflib
from typing import Any

# Modal's GPU types, spelled as Modal spells them.
GPU_TYPES = (
    "T4",
    "L4",
    "A10",
    "L40S",
    "A100",
    "A100-40GB",
    "A100-80GB",
    "H100",
    "H200",
    "B200",
)
_BY_KEY = {name.lower(): name for name in GPU_TYPES}
MAX_GPU_COUNT = 8


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The nearest choice to `word`, or None when nothing is close."""
    lowered = {c.lower(): c for c in choices}
    match = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[match[0]] if match else None


def normalize_one(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a GPU is a name like 'L40S' or 'H100:2', not {type(value).__name__}")
    name, sep, count_text = value.strip().partition(":")
    canonical = _BY_KEY.get(name.strip().lower())
    if canonical is None:
        hint = suggest(name.strip(), GPU_TYPES)
        did_you_mean = f"; did you mean '{hint}'?" if hint else ""
        raise ValueError(
            f"unknown GPU {value!r}{did_you_mean} (known: {', '.join(GPU_TYPES)})"
        )
    if not sep:
        return canonical
    if not count_text.strip().isdigit() or not 1 <= int(count_text) <= MAX_GPU_COUNT:
        raise ValueError(f"GPU count in {value!r} must be a whole number from 1 to {MAX_GPU_COUNT}")
    count = int(count_text)
    return canonical if count == 1 else f"{canonical}:{count}"


def normalize(value: Any) -> list[str] | None:
    """`"l40s"` -> `["L40S"]`; `["h100:2", "a100-80gb:2"]` -> Modal's names; None -> CPU."""
    if value is None:
        return None
    if isinstance(value, list):
        if not value:
            raise ValueError("an empty GPU list; omit `gpu` (or set it to null) for CPU only")
        names = [normalize_one(v) for v in value]
        if len(set(names)) != len(names):
            raise ValueError("the GPU fallback list names the same GPU twice")
        return names
    return [normalize_one(value)]


def split(name: str) -> tuple[str, int]:
    """`"H100:2"` -> `("H100", 2)`."""
    kind, _, count = name.partition(":")
    return kind, int(count or 1)
