"""GPU names: any case in, Modal's spelling out, with `:N` counts and fallback lists."""

from __future__ import annotations

import difflib
import re
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


def shown(value: Any, limit: int = 60) -> str:
    """`value` as it goes into a message: quoted, escaped, on one line, not too long."""
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "..."
    text = repr(value)
    return text if len(text) <= limit + 2 else text[:limit] + "..."


def kind_of(value: Any) -> str:
    """What a YAML value is, in a user's words."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    names = {
        str: "a string",
        int: "a number",
        float: "a number",
        list: "a list",
        dict: "a mapping",
    }
    return names.get(type(value), type(value).__name__)


# What users call things, and the name the spec gives them: Hugging Face's pipeline
# names and everyday words for a task.
SYNONYMS = {
    "summarization": "text2text-generation",
    "translation": "text2text-generation",
    "ner": "token-classification",
    "sentiment": "text-classification",
    "sentiment-analysis": "text-classification",
    "stable-diffusion": "text-to-image",
    "diffusion": "text-to-image",
    "whisper": "automatic-speech-recognition",
    "asr": "automatic-speech-recognition",
    "speech-to-text": "automatic-speech-recognition",
    "feature-extraction": "embeddings",
    "sentence-similarity": "embeddings",
}


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The nearest choice to `word` when it looks like a slip of the keyboard (`methd`,
    `embedings`, `l40` for `L40S`) or is what users call it (`summarization`, `ner`,
    `whisper`), else None: `text-to-image` is not a misspelt `text-generation`, nor
    `websocket` a misspelt `webhook`."""
    lowered = {c.lower(): c for c in choices}
    key = word.lower()
    if SYNONYMS.get(key.replace("_", "-")) in lowered:
        return lowered[SYNONYMS[key.replace("_", "-")]]
    match = difflib.get_close_matches(key, list(lowered), n=1, cutoff=0.75)
    if match:
        return lowered[match[0]]
    if len(key) >= 2:  # a name cut short, or with a letter added: `l40`, `a10g`
        for choice in lowered:
            if choice.startswith(key) or key.startswith(choice):
                return lowered[choice]
    return None


def normalize_one(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a GPU is a name like 'L40S' or 'H100:2', not {kind_of(value)}")
    name, sep, count_text = value.strip().partition(":")
    canonical = _BY_KEY.get(name.strip().lower())
    if canonical is None:
        hint = suggest(name.strip(), GPU_TYPES)
        counted = re.fullmatch(r"([0-9]{1,3})\s*[x\u00d7*]\s*(.+)", name.strip(), re.IGNORECASE)
        if counted and not sep:  # `2xH100`: Modal writes the count after the name
            kind = _BY_KEY.get(counted.group(2).strip().lower())
            kind = kind or suggest(counted.group(2).strip(), GPU_TYPES)
            hint = f"{kind}:{int(counted.group(1))}" if kind else hint
        did_you_mean = f"; did you mean '{hint}'?" if hint else ""
        raise ValueError(
            f"unknown GPU {shown(value)}{did_you_mean} (known: {', '.join(GPU_TYPES)})"
        )
    if not sep:
        return canonical
    # ASCII digits only: str.isdigit() also takes '²', which int() refuses.
    if not re.fullmatch(r"[0-9]{1,3}", count_text.strip()) or not (
        1 <= int(count_text) <= MAX_GPU_COUNT
    ):
        raise ValueError(
            f"GPU count in {shown(value)} must be a whole number from 1 to {MAX_GPU_COUNT}"
        )
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
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"the GPU fallback list names {name} twice")
        return names
    return [normalize_one(value)]


def split(name: str) -> tuple[str, int]:
    """`"H100:2"` -> `("H100", 2)`."""
    kind, _, count = name.partition(":")
    return kind, int(count or 1)
