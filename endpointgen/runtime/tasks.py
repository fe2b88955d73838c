"""Model tasks: the model loaded once, and what each model route does with it.

A built module makes one `Model` per model its spec names, loads it in `@modal.enter`
(or once under `endpointgen serve`), and its routes call `generate`, `stream`,
`classify`, `embed` and `health`. Requests are checked against the route's limits
(`max_tokens`, `max_chars`, `max_items`) with a 422 before any model work.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import math
import queue
import re
import secrets
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, Self, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator, model_validator
from starlette.exceptions import HTTPException

from endpointgen.runtime import http
from endpointgen.runtime.batching import Batcher
from endpointgen.runtime.http import Rejected
from endpointgen.runtime.metrics import METRICS

__all__ = [
    "Asked",
    "Batching",
    "Chat",
    "Classification",
    "ClassifyRequest",
    "EmbedRequest",
    "EmbedResponse",
    "Entities",
    "Entity",
    "GenerateRequest",
    "GenerateResponse",
    "Loader",
    "Model",
    "Ranked",
    "Rejected",
    "RerankRequest",
    "Vllm",
    "ZeroShotRequest",
    "ZeroShotResult",
]

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
VLLM_STANDIN_BATCH = 8  # rows the transformers stand-in for vLLM batches off a GPU
MAX_TOKENS = 1024
MAX_CHARS = 20_000
MAX_ITEMS = 128
DRAWN_PIXELS = 1024 * 1024  # text-to-image: the largest width x height by default
DRAWN_STEPS = 50  # and the most denoising steps


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


class GenerateRequest(BaseModel):
    model_config = http.STRICT

    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=64, ge=1, description="new tokens at most")
    temperature: float = Field(default=1.0, ge=0, le=2, description="< 0.01 is greedy")
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(
        default=None,
        description=f"stop before these (at most {MAX_STOPS}, of {MAX_STOP_CHARS} characters)",
    )

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        return stops_within(stop, MAX_STOPS)

    def stop_list(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return [s for s in stop if s]


class GenerateResponse(BaseModel):
    text: str
    tokens_generated: int
    finish_reason: str = Field(description="stop, length or cancelled")


IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
BINARY = {"type": "string", "format": "binary"}


class ImageRequest(BaseModel):
    """What `generate` takes on a text-to-image model."""

    model_config = http.STRICT

    prompt: str = Field(min_length=1)
    negative_prompt: str | None = Field(default=None, description="what the image avoids")
    width: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    height: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    steps: int = Field(default=30, ge=1, le=150, description="denoising steps")
    guidance: float = Field(default=7.5, ge=0, le=30, description="classifier-free guidance")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="the same image")
    format: Literal["png", "jpeg", "webp"] = "png"
    base64: bool = Field(
        default=False, description="answer JSON {image, media_type, seed} instead of the bytes"
    )


class ImageResponse(BaseModel):
    image: str = Field(description="the encoded image, in base64")
    media_type: str
    seed: int


# What `generate` on a text-to-image model answers, for /openapi.json.
IMAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image, as `format` says; JSON with `base64: true`",
        "content": {
            **{kind: {"schema": BINARY} for kind in IMAGE_TYPES.values()},
            "application/json": {"schema": ImageResponse.model_json_schema()},
        },
    }
}


class ClassifyRequest(BaseModel):
    model_config = http.STRICT

    text: str | None = Field(default=None, min_length=1)
    texts: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send either `text` or `texts`")
        return self


class Classification(BaseModel):
    label: str
    score: float


MAX_LABELS = 64  # candidate labels of one zero-shot request


class ZeroShotRequest(ClassifyRequest):
    """Text (or texts) and the labels to score it against; the model is an NLI model."""

    labels: list[str] = Field(min_length=1, max_length=MAX_LABELS)
    multi_label: bool = Field(
        default=False, description="score each label alone (else the scores sum to 1)"
    )
    hypothesis_template: str = Field(default="This example is {}.", min_length=2, max_length=500)

    @model_validator(mode="after")
    def _labels(self) -> Self:
        if any(not label.strip() for label in self.labels):
            raise ValueError("`labels` may not hold an empty label")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("`labels` holds a label twice")
        if self.hypothesis_template.count("{}") != 1:
            raise ValueError("`hypothesis_template` must hold `{}` once, where a label goes")
        return self


class ZeroShotResult(BaseModel):
    label: str = Field(description="the best label")
    score: float
    labels: list[str] = Field(description="every label, best first")
    scores: list[float]


class Entity(BaseModel):
    entity_group: str = Field(description="the entity's type, e.g. PER or LOC")
    score: float = Field(description="the mean score of its tokens")
    word: str = Field(description="the text it spans")
    start: int = Field(description="its first character")
    end: int = Field(description="the character after its last")


class Entities(BaseModel):
    entities: list[Entity]


class RerankRequest(BaseModel):
    """A query and the texts to rank for it (Text Embeddings Inference's `/rerank`)."""

    model_config = http.STRICT

    query: str = Field(min_length=1)
    texts: list[str] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, description="the best N only")
    return_text: bool = False
    raw_scores: bool = Field(default=False, description="logits instead of 0-1 scores")


class Ranked(BaseModel):
    index: int = Field(description="the text's place in the request")
    score: float
    text: str | None = Field(default=None, description="with `return_text`")


class EmbedRequest(BaseModel):
    model_config = http.STRICT

    texts: list[str] = Field(min_length=1)


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dim: int


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


def check_texts(field: str, texts: list[str], max_items: int, max_chars: int) -> None:
    if len(texts) > max_items:
        raise http.reject(field, f"at most {max_items} texts per request")
    for text in texts:
        if len(text) > max_chars:
            raise http.reject(field, f"texts may be at most {max_chars} characters")


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


Answer = TypeVar("Answer")


def texts_of(body: ClassifyRequest, max_items: int, max_chars: int) -> list[str]:
    """A request's `text` or `texts`, within the route's limits (422 past them)."""
    texts = body.texts if body.texts is not None else [body.text or ""]
    check_texts("texts" if body.texts is not None else "text", texts, max_items, max_chars)
    return texts


def one_or_all(body: ClassifyRequest, results: list[Answer]) -> Answer | list[Answer]:
    """A list of answers for `texts`, the one answer for `text`."""
    return results if body.texts is not None else results[0]


async def decoded(content: bytes, max_pixels: int | None) -> Any:
    """An uploaded image, decoded in a worker thread (a large one never holds up the event
    loop); 413 when it declares more than `max_pixels` (None: `engines.MAX_PIXELS`)."""
    from endpointgen.runtime.engines.vision import MAX_PIXELS, open_image

    cap = MAX_PIXELS if max_pixels is None else max_pixels
    return await asyncio.to_thread(open_image, content, cap)


class LoadFailed(RuntimeError):
    """A model could not load; its one argument is the short reason a client may see.

    Raised out of `@modal.enter`, so Modal replaces the container; when Modal gives up
    on a crash-looping class it fails the waiting calls with this exception, which is
    how a web tier in front of the class learns the model cannot load.
    """


ENGINE_METHODS = frozenset(
    {"__call__", "generate", "context_problem", "context_left", "chat_prompt", "count_tokens"}
)
# What a model class's `call` runs besides engine methods: a generation `Asked` for,
# checked and run in that container, so that the web tier makes one round trip for both.
CHECKED_GENERATE = "checked_generate"
CALLS = ENGINE_METHODS | {CHECKED_GENERATE}


@dataclass(frozen=True)
class Chat:
    """A chat's turns and how to sample: the model's chat template makes them a prompt.
    `max_tokens` None asks for as many tokens as fit after it, up to `fill`."""

    turns: list[dict[str, str]]
    max_tokens: int | None
    fill: int
    sampling: dict[str, Any]  # GenerateRequest's temperature, top_p, seed and stop


@dataclass(frozen=True)
class Asked:
    """A generation as a route asks for it, with the route's ceilings: checked (then run)
    where the model is, so a model class in another container checks it in the same call
    as it generates."""

    request: GenerateRequest | Chat
    max_tokens: int = MAX_TOKENS
    max_chars: int = MAX_CHARS


def within(body: GenerateRequest | Chat, max_tokens: int, max_chars: int) -> None:
    """The route's ceilings on a generation, which need no model (of a chat's, only
    max_tokens when it names a number: its prompt is the model's template's to make)."""
    if body.max_tokens is not None and body.max_tokens > max_tokens:
        raise Rejected("max_tokens", f"must be at most {max_tokens}")
    if isinstance(body, GenerateRequest) and len(body.prompt) > max_chars:
        raise Rejected("prompt", f"must be at most {max_chars} characters")


# A generation as it goes: ("token", text) pairs, then ("done", totals) or ("error", None).
Pieces = AsyncGenerator[tuple[str, Any]]
# Checking a generation: each engine call it needs, (method, args), answered by `send`.
Steps = Generator[tuple[str, tuple[Any, ...]], Any, GenerateRequest]


def preparing(asked: Asked) -> Steps:
    """The generation `asked` is for, checked: a chat's prompt made by the model's
    template, then the route's ceilings and the model's context (`Rejected` when it fails
    one). It asks for each engine call it needs and is sent the answer, so the checks are
    the same whether the engine is here or in a model class's container."""
    body = asked.request
    if isinstance(body, Chat):
        prompt = yield "chat_prompt", (body.turns,)
        wanted = body.max_tokens
        if wanted is None:  # OpenAI's "as much as fits"; here, up to `fill`
            room = (yield "context_left", (prompt,)) or body.fill
            wanted = max(1, min(body.fill, asked.max_tokens, room))
        body = GenerateRequest(prompt=prompt or " ", max_tokens=wanted, **body.sampling)
    within(body, asked.max_tokens, asked.max_chars)
    problem = yield "context_problem", (body,)
    if problem:
        raise Rejected("prompt", problem)
    return body


class Model:
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
        path: Path | str | None = None,
        batching: Batching | None = None,
        loader: Loader | None = None,
        engine: Vllm | None = None,
    ) -> None:
        self.id = id
        self.task = task
        self.revision = revision
        self.dtype = dtype
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

    @property
    def name(self) -> str:
        """The model's name for clients: the repo id, or a local directory's name."""
        return self.id if self.path is None else self.id.rstrip("/").rsplit("/", 1)[-1]

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
                with placed("cpu" if snapshot else None):
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
            run = partial(remote, "__call__") if remote is not None else engine
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

    async def ask(self, method: str, *args: Any) -> Any:
        """One engine call that never holds up the event loop: awaited when the engine is
        a remote model class (`.remote.aio`), else in a worker thread (torch blocks)."""
        # A job's submit (`http.check`) stops here: even a check on the engine waits for
        # its lock, which a running generation holds, or for another container to start.
        http.starting_work()
        remote = getattr(self.engine, "ask", None)
        started = time.perf_counter()
        METRICS.calling(self.name, 1)
        try:
            if remote is not None:
                result = await remote(method, *args)
            elif method == "generate" and (start := self._start()) is not None:
                result = await asyncio.wrap_future(start(*args))
            else:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(None, getattr(self.engine, method), *args)
        finally:
            METRICS.calling(self.name, -1)
            METRICS.model_call(self.name, method, time.perf_counter() - started)
        if method in ("generate", CHECKED_GENERATE):
            METRICS.generated(self.name, int(result["tokens_generated"]))
        return result

    def _start(self) -> Callable[..., concurrent.futures.Future[dict[str, Any]]] | None:
        """A text engine's `start` (engines.TextEngine): a generation no thread waits on.
        None for a loader's own object and a remote model class."""
        start: Callable[..., concurrent.futures.Future[dict[str, Any]]] | None
        start = getattr(self.engine, "start", None)
        return start

    async def run(self, items: list[Any]) -> list[Any]:
        """The engine on `items`, batched with other requests' when the spec says so."""
        http.starting_work()
        if self.batcher is not None:
            return await self.batcher(items)
        result: list[Any] = await self.ask("__call__", items)
        return result

    # --- Text generation ---

    async def prepared(self, asked: Asked) -> GenerateRequest:
        """The generation `asked` is for, checked here (`preparing`): each engine call
        the checks need is one `ask`."""
        steps = preparing(asked)
        answer: Any = None
        try:
            while True:
                method, args = steps.send(answer)
                answer = await self.ask(method, *args)
        except StopIteration as done:
            prepared: GenerateRequest = done.value
            return prepared

    def _remote(self) -> bool:
        """The engine is a model class in another container (`remote.RemoteEngine`)."""
        return getattr(self.engine, "ask", None) is not None

    async def generated(self, asked: Asked) -> dict[str, Any]:
        """The totals of the generation `asked` is for, after its checks (a 422 when it
        fails one). A model class in another container checks and generates in one call;
        the route's own ceilings are checked here first, which costs it no call."""
        if not self._remote():
            return dict(await self.ask("generate", await self.prepared(asked)))
        within(asked.request, asked.max_tokens, asked.max_chars)
        return dict(await self.ask(CHECKED_GENERATE, asked))

    async def generate(
        self, body: GenerateRequest, max_tokens: int = MAX_TOKENS, max_chars: int = MAX_CHARS
    ) -> GenerateResponse:
        return GenerateResponse(**await self.generated(Asked(body, max_tokens, max_chars)))

    async def draw(
        self,
        body: ImageRequest,
        max_pixels: int = DRAWN_PIXELS,
        max_steps: int = DRAWN_STEPS,
        max_chars: int = MAX_CHARS,
    ) -> http.Response:
        """An image from a text-to-image model (`engines.ImageGenerator`): its bytes as
        `format` says, or `ImageResponse` with `base64`. Without a seed one is drawn and
        given back (`X-Seed`, or `seed`), so a good image can be made again. A request
        over the route's ceilings (size, steps, prompt length) is a 422 before any work."""
        if body.width * body.height > max_pixels:
            side = math.isqrt(max_pixels) // 8 * 8
            raise http.reject(
                "width",
                f"width x height must be at most {max_pixels} pixels (e.g. {side}x{side})",
            )
        if body.steps > max_steps:
            raise http.reject("steps", f"must be at most {max_steps}")
        for field in ("prompt", "negative_prompt"):
            text = getattr(body, field)
            if text is not None and len(text) > max_chars:
                raise http.reject(field, f"must be at most {max_chars} characters")
        if body.seed is None:
            body = body.model_copy(update={"seed": secrets.randbelow(2**32)})
        # An engine here stops denoising when its caller goes (a cancelled job); one in
        # another container is stopped by Modal cancelling its input.
        stop = None if hasattr(self.engine, "ask") else threading.Event()
        try:
            content = await self.ask("__call__", body, *([stop] if stop else []))
        except asyncio.CancelledError:
            if stop is not None:
                stop.set()
            raise
        media = IMAGE_TYPES[body.format]
        if body.base64:
            encoded = base64.b64encode(content).decode()
            answer = ImageResponse(image=encoded, media_type=media, seed=int(body.seed or 0))
            return http.JSONResponse(answer.model_dump())
        return http.Response(content, media_type=media, headers={"X-Seed": str(body.seed)})

    async def stream(
        self,
        body: GenerateRequest,
        request: Request,
        max_tokens: int = MAX_TOKENS,
        max_chars: int = MAX_CHARS,
    ) -> http.EventStream:
        """Server-Sent Events: `token` events as text arrives, then `done` with the totals."""
        request_id = http.request_id(request)
        pieces = await self.opened(Asked(body, max_tokens, max_chars), request_id)
        return http.EventStream(self._events(pieces, request_id))

    async def _events(self, pieces: Pieces, request_id: str) -> AsyncIterator[str]:
        async with aclosing(pieces):
            async for kind, value in pieces:
                if kind == "token":
                    yield http.sse("token", {"text": value})
                elif kind == "done":
                    yield http.sse("done", value)
                else:
                    yield http.sse("error", http.error_body(request_id, "generation failed"))

    async def opened(self, asked: Asked, request_id: str) -> Pieces:
        """The generation `asked` is for, as `generation` streams it, once its checks
        have passed: a failed one is raised here (its 422), before the route answers.

        A model class in another container checks in the stream it opens, and reports
        the outcome as the stream's first item, awaited here: ("checked", None), or
        ("rejected", the `Rejected`) and nothing more.
        """
        if not self._remote():
            return self.generation(await self.prepared(asked), request_id)
        within(asked.request, asked.max_tokens, asked.max_chars)
        http.starting_work()
        remote: Pieces = self.engine.stream(asked, request_id)
        first: tuple[str, Any] = await anext(remote, ("error", None))
        if first[0] == "rejected":
            await remote.aclose()
            raise first[1]
        ahead = [] if first[0] == "checked" else [first]
        return self._metered(self._relayed(remote, request_id, ahead))

    def generation(self, body: GenerateRequest, request_id: str) -> Pieces:
        """("token", text) pairs as text arrives, then ("done", totals) or ("error", None),
        for a request already checked.

        When the client goes away the iterator is closed, which stops the generation.
        """
        if self._remote():  # a model class: no thread held per stream
            return self._metered(self._relayed(self.engine.stream(body, request_id), request_id))
        return self._metered(self._generation(body, request_id))

    async def _metered(self, pieces: Pieces) -> Pieces:
        started = time.perf_counter()
        METRICS.calling(self.name, 1)
        try:
            async with aclosing(pieces):
                async for kind, value in pieces:
                    if kind == "done":
                        METRICS.generated(self.name, int(value["tokens_generated"]))
                    yield kind, value
        finally:
            METRICS.calling(self.name, -1)
            METRICS.model_call(self.name, "stream", time.perf_counter() - started)

    @staticmethod
    async def _relayed(
        remote: Pieces,
        request_id: str,
        ahead: list[tuple[str, Any]] | None = None,
    ) -> AsyncGenerator[tuple[str, Any]]:
        """A model class's stream (after the pieces `ahead` of it, already read) up to its
        end; one that breaks off ends with ("error", None), the reason logged."""
        async with aclosing(remote):
            try:
                for kind, value in ahead or []:
                    yield kind, value
                    if kind != "token":
                        return
                async for kind, value in remote:
                    yield kind, value
                    if kind != "token":
                        return
            except Exception as exc:
                http.log.error("request %s: generation failed: %s", request_id, exc)
                yield "error", None

    async def _generation(
        self, body: GenerateRequest, request_id: str
    ) -> AsyncGenerator[tuple[str, Any]]:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()
        engine = self.engine

        def on_text(piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, ("token", piece))

        start = self._start()
        if start is None:  # a thread waits on the generation
            worker = loop.run_in_executor(None, engine.generate, body, on_text, cancelled)
        else:  # the engine answers a future
            worker = asyncio.wrap_future(start(body, on_text, cancelled))
        worker.add_done_callback(partial(self._finished, pieces, request_id))
        try:
            while True:
                kind, value = await pieces.get()
                yield kind, value
                if kind != "token":
                    break
        finally:
            cancelled.set()  # the generation stops at its next token
            del worker

    @staticmethod
    def _finished(
        pieces: asyncio.Queue[tuple[str, Any]], request_id: str, done: asyncio.Future[Any]
    ) -> None:
        """A generation's end, from its thread or the decode loop: ("done", totals), or
        ("error", None) with the reason logged."""
        if done.cancelled():
            return
        if done.exception() is not None:
            http.log.error("request %s: generation failed: %s", request_id, done.exception())
            pieces.put_nowait(("error", None))
            return
        result = done.result()
        if result["finish_reason"] == "cancelled":
            http.log.info(
                "request %s: client went away; generation stopped after %d tokens",
                request_id,
                result["tokens_generated"],
            )
        pieces.put_nowait(("done", result))

    # --- Classification and embeddings ---

    async def classify(
        self, body: ClassifyRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> Classification | list[Classification]:
        found = await self.run(texts_of(body, max_items, max_chars))
        return one_or_all(body, [Classification(**r) for r in found])

    async def zero_shot(
        self, body: ZeroShotRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> ZeroShotResult | list[ZeroShotResult]:
        """Each text scored against the request's labels, best first."""
        texts = texts_of(body, max_items, max_chars)
        check_texts("labels", body.labels, MAX_LABELS, 200)
        settings = (tuple(body.labels), body.multi_label, body.hypothesis_template)
        found = await self.run([(text, *settings) for text in texts])
        return one_or_all(body, [ZeroShotResult(**r) for r in found])

    async def entities(
        self, body: ClassifyRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> Entities | list[Entities]:
        """The named entities of each text, tokens of one entity grouped into one span."""
        found = await self.run(texts_of(body, max_items, max_chars))
        return one_or_all(body, [Entities(entities=spans) for spans in found])

    async def rerank(
        self, body: RerankRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> list[Ranked]:
        """The texts by relevance to the query, best first (`top_n` of them)."""
        check_texts("texts", body.texts, max_items, max_chars)
        check_texts("query", [body.query], 1, max_chars)
        scored = await self.run([(body.query, text) for text in body.texts])
        order = sorted(range(len(scored)), key=lambda i: -scored[i][0])[: body.top_n]
        pick = 0 if body.raw_scores else 1  # (logit, 0-1 score)
        return [
            Ranked(
                index=i,
                score=scored[i][pick],
                text=body.texts[i] if body.return_text else None,
            )
            for i in order
        ]

    async def embed(
        self, body: EmbedRequest, max_items: int = MAX_ITEMS, max_chars: int = MAX_CHARS
    ) -> EmbedResponse:
        check_texts("texts", body.texts, max_items, max_chars)
        vectors = await self.run(body.texts)
        return EmbedResponse(embeddings=vectors, dim=len(vectors[0]))

    async def classify_image(self, content: bytes, max_pixels: int | None = None) -> dict[str, Any]:
        """The image's top label; 413 when it declares more than `max_pixels` (None: the
        default cap, `engines.MAX_PIXELS`)."""
        (result,) = await self.run([await decoded(content, max_pixels)])
        return dict(result)

    async def detect_objects(self, content: bytes, max_pixels: int | None = None) -> dict[str, Any]:
        """The objects found in the image (`engines.ObjectDetector`); 413 past
        `max_pixels`, as `classify_image`."""
        (objects,) = await self.run([await decoded(content, max_pixels)])
        return {"objects": objects}

    async def transcribe(self, content: bytes, timestamps: bool = False) -> dict[str, Any]:
        """The speech in an audio file as `{text, seconds}`, and `chunks` of it with their
        times when `timestamps` (`engines.SpeechRecognizer`); decoded in the model's own
        worker, 422 when it is no audio."""
        (result,) = await self.run([(content, timestamps)])
        return dict(result)

    async def embed_image(self, content: bytes, max_pixels: int | None = None) -> dict[str, Any]:
        """The image's vector in the model's text-and-image space (`embed` gives texts'),
        and its dimension; 413 past `max_pixels`, as `classify_image`."""
        (vector,) = await self.run([await decoded(content, max_pixels)])
        return {"embedding": vector, "dim": len(vector)}

    # --- Inside a model's own Modal class, called by the web tier (`models:`) ---

    def call(self, method: str, *args: Any) -> Any:
        """Run one engine method in this container, or `CHECKED_GENERATE`: the
        generation an `Asked` is for, checked first, its totals; a request that fails a
        check is answered with its `Rejected` (a value, not a failure of the call)."""
        if method not in CALLS:
            raise ValueError(f"no engine method {method!r}")
        if self.status != "ready":
            raise RuntimeError(f"model is not ready ({self.status}): {self.error}")
        if method == CHECKED_GENERATE:
            try:
                request = self._prepared_here(*args)
            except Rejected as exc:
                return exc
            return self.engine.generate(request)
        return getattr(self.engine, method)(*args)

    def _prepared_here(self, asked: Asked) -> GenerateRequest:
        """`prepared`, with each engine call made in this thread."""
        steps = preparing(asked)
        answer: Any = None
        try:
            while True:
                method, args = steps.send(answer)
                answer = self.call(method, *args)
        except StopIteration as done:
            prepared: GenerateRequest = done.value
            return prepared

    def tokens(
        self, request: Asked | GenerateRequest, stop: Stop | None = None
    ) -> Iterator[tuple[str, Any]]:
        """("token", text) pairs as a generation goes, then ("done", totals).

        For an `Asked`, its checks come first, and their outcome is the first item:
        ("checked", None), or ("rejected", the `Rejected`) and nothing more. A
        `GenerateRequest` was checked by the caller.

        `stop` is asked twice a second, apart from the stream (a caller that stops reading
        does not stop this): once it says so (the web tier's client went away), the
        generation stops at its next token. Closing this generator early stops it too.
        """
        if isinstance(request, Asked):
            try:
                checked = self._prepared_here(request)
            except Rejected as exc:
                yield "rejected", exc
                return
            yield "checked", None
            request = checked
        pieces: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        cancelled = threading.Event()

        def work() -> None:
            try:
                result = self.call("generate", request, on_text, cancelled)
            except Exception as exc:
                pieces.put(("error", f"{type(exc).__name__}: {exc}"))
            else:
                pieces.put(("done", result))
            finally:
                done.set()

        def on_text(piece: str) -> None:
            pieces.put(("token", piece))

        def watch(stop: Stop) -> None:  # apart from the stream: works if nobody reads it
            while not done.wait(STOP_POLL):
                if stop():
                    http.log.info("the web tier says the client went away: stopping")
                    cancelled.set()
                    break
            done.wait()
            stop.forget()

        done = threading.Event()
        threading.Thread(target=work, daemon=True).start()
        if stop is not None:
            threading.Thread(target=watch, args=(stop,), daemon=True).start()
        try:
            while True:
                kind, value = pieces.get()
                if kind == "error":
                    raise RuntimeError(value)
                yield kind, value
                if kind == "done":
                    return
        finally:
            if not done.is_set():  # closed early, here: stop the generation too
                cancelled.set()


STOP_POLL = 0.5  # seconds between asking whether a stream's client went away


class Stop(Protocol):
    """Whether a stream's client went away (asked while it runs); `forget` once it ends."""

    def __call__(self) -> bool: ...

    def forget(self) -> None: ...


NOT_READY = http.documented(503, "The model is loading, or failed to load")
