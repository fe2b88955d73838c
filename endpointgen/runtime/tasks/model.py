"""`Model`: one model, loaded once (and let go at shutdown), and what its routes run."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Self

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from endpointgen.runtime import http
from endpointgen.runtime.batching import Batcher
from endpointgen.runtime.metrics import METRICS
from endpointgen.runtime.tasks.classify import Classifying
from endpointgen.runtime.tasks.container import Serving
from endpointgen.runtime.tasks.generate import Generating
from endpointgen.runtime.tasks.loading import (
    Batching,
    Loader,
    LoadFailed,
    Task,
    Vllm,
    here,
    load_reason,
)
from endpointgen.runtime.tasks.media import Media

VLLM_STANDIN_BATCH = 8  # rows the transformers stand-in for vLLM batches off a GPU
NOT_READY = http.documented(503, "The model is loading, or failed to load")


class Model(Generating, Classifying, Media, Serving):
    """One model: how to load it, then the loaded engine, or why it is not there.

    `status` is "loading", "ready" or "failed"; routes behind `ready` answer 503 until it
    is "ready", and `health` says which.
    """

    def __init__(
        self,
        id: str,
        task: Task,
        *,
        revision: str | None = None,
        dtype: str = "auto",
        variant: str | None = None,
        path: Path | str | None = None,
        batching: Batching | None = None,
        loader: Loader | None = None,
        engine: Vllm | None = None,
    ) -> None:
        self.id = id
        self.task = task
        self.revision = revision
        self.dtype = dtype
        self.variant = variant  # a weights variant on the Hub (`fp16`), else the plain ones
        self.path = path  # a local model directory (shipped into the image), else the Hub
        self.batching = batching
        self.loader = loader
        self.vllm = engine
        self.status = "loading"
        self.error: str | None = None
        self.engine: Any = None
        self.batcher: Batcher | None = None
        self.retry_at = 0.0  # a remote model class that failed to load: when to try again
        self.unstarted: Any = None  # an engine loaded before a memory snapshot (`start`)
        self.ready = http.documents(self._guard(), NOT_READY)

    def load(self, snapshot: bool = False) -> Self:
        """Load the weights, once.

        In a Modal container a failure is raised, so Modal replaces the container instead
        of keeping a broken one warm. Elsewhere (`endpointgen serve`) it is kept: routes
        answer 503 with a short reason, and the log has the details.

        `snapshot`: in `@modal.enter(snap=True)`, before Modal's memory snapshot. The
        weights load into CPU memory, in the dtype they will have on the GPU, and nothing
        starts (no batching thread: a snapshot keeps memory, not threads); `start`, in
        `@modal.enter(snap=False)`, moves them to the GPU and serves, after each restore.
        """
        import modal

        from endpointgen.runtime.engine import variant as weights_variant
        from endpointgen.runtime.engines import ENGINES, placed

        started = time.perf_counter()
        source = str(self.path) if self.path is not None else self.id
        http.log.info("loading model %s (%s)", self.name, self.task)
        try:
            if self.path is not None and modal.is_local():
                source = here(source)
            if self.loader is not None:
                engine = self.loader(source)
            elif self.vllm is not None:
                engine = self._vllm(source)
            else:
                with placed("cpu" if snapshot else None), weights_variant(self.variant):
                    engine = ENGINES[self.task](source, self.revision, self.dtype)
        except Exception as exc:
            self.status = "failed"
            self.error = load_reason(exc)
            http.log.exception("model failed to load: %s", self.error)
            if not modal.is_local():
                raise LoadFailed(self.error) from exc
            return self
        seconds = time.perf_counter() - started
        if snapshot:
            self.unstarted = engine
            http.log.info("model loaded in CPU memory in %.1fs, for the snapshot", seconds)
            return self
        self.serve(engine)
        METRICS.loaded(self.name, seconds)
        http.log.info("model ready in %.1fs", seconds)
        return self

    def start(self) -> Self:
        """After a restore from Modal's memory snapshot (`@modal.enter(snap=False)`): the
        weights `load(snapshot=True)` left in CPU memory move to the GPU (when there is
        one), and the model serves."""
        from endpointgen.runtime.engine import best_device

        engine, self.unstarted = self.unstarted, None
        if engine is None:  # not loaded for a snapshot (or its load failed, and raised)
            return self
        started = time.perf_counter()
        move = getattr(engine, "to", None)
        if callable(move):
            move(best_device())
        self.serve(engine)
        seconds = time.perf_counter() - started
        METRICS.loaded(self.name, seconds)
        http.log.info("model ready in %.1fs after the restore", seconds)
        return self

    def close(self) -> None:
        """The container is shutting down (`@modal.exit()`): the batching thread ends
        once its running generations are done, vLLM's engine shuts down, and the weights
        are let go. Routes answer 503 from then on."""
        engine, self.engine, self.unstarted = self.engine, None, None
        if self.status == "ready":
            self.status, self.error = "failed", "the container is shutting down"
        close = getattr(engine, "close", None)
        if callable(close) and not hasattr(engine, "ask"):  # not a remote model class
            try:
                close()
            except Exception:
                http.log.exception("model %s did not close cleanly", self.name)
        self.batcher = None
        http.log.info("model %s closed", self.name)

    def download(self) -> Path:
        """Fill the Hub cache with the model's whole snapshot (the app's `download`
        function, before the first cold start), marked complete for the containers that
        load it after."""
        from endpointgen.runtime import hub
        from endpointgen.runtime.engines import ENGINES

        root = getattr(ENGINES.get(self.task), "ROOT_FILE", "config.json")
        folder = hub.fetch(self.id, self.revision, root)
        http.log.info("model %s is in the Hub cache at %s", self.name, folder)
        return folder

    def _vllm(self, source: str) -> Any:
        """vLLM's engine on a CUDA GPU; elsewhere (`endpointgen serve` on a laptop) the
        same routes on transformers, batching like vLLM would."""
        import torch

        from endpointgen.runtime.text.transformers import TextGenerator

        if torch.cuda.is_available():
            from endpointgen.runtime.text.vllm import VllmGenerator

            return VllmGenerator(source, self.revision, self.dtype, **vars(self.vllm))
        http.log.warning("vLLM needs a CUDA GPU: serving %s on transformers here", self.name)
        generator = TextGenerator(source, self.revision, self.dtype)
        generator.batch(VLLM_STANDIN_BATCH, 5, partial(METRICS.batch, self.name))
        return generator

    def serve(self, engine: Any) -> None:
        """Answer with `engine` from now on (a loaded one, or a remote model class)."""
        self.engine = engine
        batch = getattr(engine, "batch", None)  # a text generator batches its generations
        if self.batching is not None and batch is not None:
            size, wait = self.batching.max_batch_size, self.batching.wait_ms
            if batch(size, wait, partial(METRICS.batch, self.name)):
                METRICS.queue(self.name, engine.batcher.waiting)
        elif self.batching is not None:
            size, wait = self.batching.max_batch_size, self.batching.wait_ms
            # A remote model class is called with `.remote.aio`: its batches are awaited.
            remote = getattr(engine, "ask", None)
            run = remote.__call__ if remote is not None else engine
            self.batcher = Batcher(run, size, wait, observe=partial(METRICS.batch, self.name))
            METRICS.queue(self.name, self.batcher.waiting)
        self.status = "ready"

    def unavailable(self, reason: str, seconds: float) -> HTTPException:
        """A remote model class cannot load: answer 503 with `reason` for `seconds`, then
        let calls through again (Modal may have started a container that can)."""
        if self.status != "failed":
            http.log.error("model %s cannot load: %s", self.name, reason)
        self.status, self.error = "failed", reason
        self.retry_at = time.monotonic() + seconds
        return HTTPException(503, f"model is not ready (failed): {reason}")

    def _settled(self) -> str:
        if self.status == "failed" and self.retry_at and time.monotonic() >= self.retry_at:
            self.status, self.error, self.retry_at = "ready", None, 0.0
        return self.status

    def _guard(self) -> Callable[[Request], None]:
        def model_ready(request: Request) -> None:
            if self._settled() != "ready":
                raise HTTPException(503, f"model is not ready ({self.status})")

        return model_ready

    def health(self) -> JSONResponse:
        problem = getattr(self.engine, "health", None)
        if self.status == "ready" and callable(problem) and (reason := problem()):
            self.status, self.error = "failed", reason
            http.log.error("model %s cannot serve: %s", self.name, reason)
        if self._settled() != "ready":
            body = {"status": self.status, "error": self.error, "model": self.name}
            return JSONResponse(body, 503)
        return JSONResponse({"status": "ok", "model": self.name, "task": self.task})
