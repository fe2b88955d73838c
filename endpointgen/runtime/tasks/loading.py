"""What to load and how: the model's task, its batching, `engine: vllm`, the spec's own
loader, and the short reason a failed load gives clients."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from endpointgen.runtime import http

Task = Literal[
    "text-generation",
    "text2text-generation",
    "text-classification",
    "zero-shot-classification",
    "token-classification",
    "rerank",
    "embeddings",
    "image-text-embeddings",
    "image-classification",
    "object-detection",
    "automatic-speech-recognition",
    "text-to-image",
]


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    wait_ms: int


@dataclass(frozen=True)
class Vllm:
    """`engine: vllm` and its options (None: vLLM's default; tensor_parallel_size: all
    the container's GPUs)."""

    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    tensor_parallel_size: int | None = None
    quantization: str | None = None
    enforce_eager: bool = False


@dataclass(frozen=True)
class Loader:
    """The spec's own loader, `file.py:function`: given where the model is, any object."""

    file: Path
    function: str
    shown: str  # as the spec wrote the file, for messages
    text_engine: bool = False  # it serves generate/openai routes: an engines.TextEngine

    def __call__(self, source: str) -> Any:
        from endpointgen.runtime import handlers
        from endpointgen.runtime.text.interface import TEXT_ENGINE

        made = handlers.load(self.file, self.function, self.shown)(source)
        missing = [m for m in TEXT_ENGINE if not callable(getattr(made, m, None))]
        if self.text_engine and missing:
            raise TypeError(
                f"{self.shown}:{self.function} returned a {type(made).__name__}, not a text "
                f"engine (engines.TextEngine) as generate and openai routes need: it lacks "
                f"{', '.join(missing)}"
            )
        return made


PATH = re.compile(r"(?<![\w.~:/-])(?:[A-Za-z]:)?(?:[\\/][^\s'\"\\/:]+)+[\\/]?")  # absolute


def short_reason(exc: BaseException) -> str:
    """What went wrong, in one line a client may see: the exception's class and the first
    line of its message, with every absolute path cut to its last part."""
    first = (str(exc).strip().splitlines() or [""])[0]
    shown = PATH.sub(
        lambda m: m.group(0).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1], first
    )
    text = f"{type(exc).__name__}: {shown}" if shown else type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


# What a load failure the Hub refused means, by the class huggingface_hub raised.
HUB_REFUSALS = {
    "GatedRepoError": "the model is gated",
    "RepositoryNotFoundError": "no such model, or it is private",
}
TOKEN_HINT = ": set HF_TOKEN to a token with access (deployed: in a Modal Secret under `secrets:`)"


def load_reason(exc: BaseException) -> str:
    """`short_reason`, and what to do when the Hub refused the download."""
    reason = short_reason(exc)
    seen: BaseException | None = exc
    for _ in range(8):  # the exception and what it was raised from
        if seen is None:
            break
        refusal = HUB_REFUSALS.get(type(seen).__name__)
        if refusal is not None:
            return f"{reason} ({refusal}{TOKEN_HINT})"
        seen = seen.__cause__ or seen.__context__
    return reason


def here(path: str) -> str:
    """A model's folder as this machine has it (`http.on_this_machine`); a Volume's that
    is not here fails the load saying how to get it."""
    mapped = http.on_this_machine(path)
    if mapped == path and path.startswith(http.VOLUMES) and not Path(path).exists():
        name = path.removeprefix(http.VOLUMES).partition("/")[0]
        raise FileNotFoundError(
            f"the model is on the Modal Volume '{name}', which only Modal's containers "
            f"mount; here, copy it (`modal volume get {name} / DIR`) and serve with "
            f"`--volume {name}=DIR`"
        )
    return mapped


class LoadFailed(RuntimeError):
    """A model could not load; its one argument is the short reason a client may see.

    Raised out of `@modal.enter`, so Modal replaces the container; when Modal gives up
    on a crash-looping class it fails the waiting calls with this exception, which is
    how a web tier in front of the class learns the model cannot load.
    """
