"""What every engine shares: where it loads (`placed`), whether the Hub cache holds its
model, and `Engine`, one model on one device, loaded once per container.

torch and transformers are imported when an engine is made, inside `@modal.enter`, never
when this module is: building, deploying and `endpointgen openapi` need neither.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from endpointgen.runtime import http, hub

__all__ = [
    "Engine",
    "Loading",
    "best_device",
    "device_and_dtype",
    "hub_cached",
    "placed",
    "top_labels",
]

# Where engines load: None for the best device here; "cpu" before a memory snapshot,
# whatever the container will have after it (`placed`).
_PLACED: contextvars.ContextVar[str | None] = contextvars.ContextVar("placed", default=None)
_VARIANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("variant", default=None)


@contextlib.contextmanager
def variant(name: str | None) -> Iterator[None]:
    """Engines made inside load the weights variant `name` (`model.fp16.safetensors` for
    `fp16`): the model's `variant`; None, the plain weights."""
    token = _VARIANT.set(name)
    try:
        yield
    finally:
        _VARIANT.reset(token)


@contextlib.contextmanager
def placed(device: str | None) -> Iterator[None]:
    """Engines made inside load on `device` (None: the best one here). Before Modal's
    memory snapshot they load on the CPU, in the dtype the spec asks for, and
    `Engine.to` moves them after the restore."""
    token = _PLACED.set(device)
    try:
        yield
    finally:
        _PLACED.reset(token)


def best_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def device_and_dtype(dtype: str) -> tuple[str, Any]:
    import torch

    device = _PLACED.get() or best_device()
    if dtype == "auto":
        return device, "auto"
    if _PLACED.get() is not None:  # for a snapshot: the dtype the weights will run in
        return device, getattr(torch, dtype)
    if device == "cpu" and dtype == "float16":
        http.log.warning("float16 is slow or unsupported on CPU; loading float32 instead")
        return device, torch.float32
    return device, getattr(torch, dtype)


def hub_cached(source: str, revision: str | None, root: str = "config.json") -> bool:
    """Whether a Hub model is complete in the cache (the app's Volume, after a first
    start or `hub.fetch`): its weights all there and whole, not only its config, as an
    interrupted download leaves it (`hub`, which also says what a cache written before
    its markers gets). Then it loads without asking the Hub anything. `root`: the file
    every snapshot of such a model has."""
    if Path(source).is_dir():
        return False
    return hub.cached(source, revision, root) is not None


class Loading(type):
    """The type of engines: once an engine's constructor returns, its model is loaded,
    and `loaded` runs (whatever the subclass loads after its parent's constructor)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:  # typed by the class's __init__
        engine = super().__call__(*args, **kwargs)
        engine.loaded()
        return engine


class Engine(metaclass=Loading):
    """One model on one device; calls hold a lock, so `seed` stays reproducible.

    Several GPUs in one container share the model (`device_map="auto"`, by accelerate),
    so a spec's `h100:2` uses both. A model complete in the Hub cache loads offline; one
    that is not is downloaded, from where an earlier download stopped, and its snapshot
    is marked complete once it has loaded (`hub`).
    """

    ROOT_FILE = "config.json"  # at the top of every snapshot of this kind of model

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        import torch

        self.torch = torch
        self.device, self.dtype = device_and_dtype(dtype)
        self.source, self.revision = str(source), revision
        self.spread = self.device == "cuda" and torch.cuda.device_count() > 1
        self.options: dict[str, Any] = {"revision": revision}
        # The weights' own files only: tokenizers and processors have no variants.
        self.variant = {"variant": name} if (name := _VARIANT.get()) else {}
        if hub_cached(self.source, revision, self.ROOT_FILE):
            self.options["local_files_only"] = True
        elif not Path(self.source).is_dir() and not hub.offline():
            hub.begin(self.source, revision, self.ROOT_FILE)
        self.lock = threading.Lock()

    def loaded(self) -> None:
        """Every file of the model is read: a model the Hub was asked for has its snapshot
        marked complete, so the next container loads it offline."""
        if not self.options.get("local_files_only") and not Path(self.source).is_dir():
            hub.loaded(self.source, self.revision, self.ROOT_FILE)

    def hub_load(self, load: Callable[..., Any], **options: Any) -> Any:
        """`load(source, **options)`, with the engine's options. A snapshot complete in
        the cache can still lack a file besides its weights (a tokenizer's, when a
        download stopped after the weights): then the load asks the Hub for it, and so
        does every load of this engine after it."""
        try:
            return load(self.source, **options, **self.options)
        except OSError:
            if not self.options.get("local_files_only") or hub.offline():
                raise
            http.log.warning("%s lacks a file in the Hub cache: downloading it", self.source)
            del self.options["local_files_only"]
            return load(self.source, **options, **self.options)

    def pretrained(self, kind: Any) -> Any:
        return self.hub_load(kind.from_pretrained)

    def to(self, device: str) -> None:
        """Move the loaded weights to `device`: after a restore from a memory snapshot,
        the weights loaded on the CPU go to the GPU. Every model, diffusers pipeline and
        transformers pipeline the engine holds moves."""
        if device == self.device:
            return
        from transformers import Pipeline

        for value in vars(self).values():
            if isinstance(value, Pipeline):
                model: Any = value.model
                model.to(device)
                value.device = self.torch.device(device)
            elif isinstance(value, self.torch.nn.Module) or hasattr(value, "components"):
                value.to(device)
        self.device = device
        self.spread = False

    def weights(self, kind: Any) -> Any:
        if self.spread:
            options = {"dtype": self.dtype, "device_map": "auto", **self.variant}
            return self.hub_load(kind.from_pretrained, **options).eval()
        model = self.hub_load(kind.from_pretrained, dtype=self.dtype, **self.variant)
        model.to(self.device).eval()
        return model


def top_labels(logits: Any, labels: dict[int, str]) -> list[dict[str, Any]]:
    scores, best = logits.float().softmax(dim=-1).max(dim=-1)
    return [
        {"label": str(labels.get(int(i), i)), "score": float(s)}
        for s, i in zip(scores.cpu().tolist(), best.cpu().tolist(), strict=True)
    ]
