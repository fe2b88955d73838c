"""The engines that run a model: transformers on torch, loaded once per container.

torch and transformers are imported when an engine is made, inside `@modal.enter`, never
when this module is: building, deploying and `endpointgen openapi` need neither.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import io
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from starlette.exceptions import HTTPException

from endpointgen.runtime import http, hub
from endpointgen.runtime.handlers import image_bytes

if TYPE_CHECKING:
    from endpointgen.runtime.generation import ContinuousBatcher

__all__ = [
    "ENGINES",
    "Classifier",
    "Embedder",
    "ImageClassifier",
    "TextEngine",
    "TextGenerator",
]

GREEDY_BELOW = 0.01  # smaller temperatures overflow the logits; they mean "greedy"
OnText = Callable[[str], None]


class Generation(Protocol):
    """What a text generator is asked: the fields of a GenerateRequest."""

    prompt: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int | None

    def stop_list(self) -> list[str]: ...


# Where engines load: None for the best device here; "cpu" before a memory snapshot,
# whatever the container will have after it (`placed`).
_PLACED: contextvars.ContextVar[str | None] = contextvars.ContextVar("placed", default=None)


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
            model = self.hub_load(kind.from_pretrained, dtype=self.dtype, device_map="auto")
            return model.eval()
        model = self.hub_load(kind.from_pretrained, dtype=self.dtype)
        model.to(self.device).eval()
        return model


class TextEngine(Protocol):
    """What serves text generation, whichever library runs the model: `TextGenerator`
    (transformers) and `VllmGenerator` (vLLM) implement it, and
    `tests/test_engine_contract.py` holds each to it. Loading is the constructor:
    `(source, revision, dtype)` plus the engine's own options.

    `start` never blocks: it queues a generation and returns a future of its totals,
    `{text, prompt_tokens, tokens_generated, finish_reason}`, where `finish_reason` is
    `length`, `stop` (a stop string or the end-of-text token) or `cancelled`.
    `on_text` is called with each new piece of text as it comes (from any thread), and
    setting `cancelled` stops the generation at its next token. `generate` is `start`
    waited on. `health` is None while the engine can serve, else why not.
    """

    def start(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> Future[dict[str, Any]]: ...

    def generate(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> dict[str, Any]: ...

    def count(self, text: str) -> int: ...

    def context_left(self, prompt: str) -> int | None: ...

    def context_problem(self, request: Generation) -> str | None: ...

    def chat_prompt(self, turns: list[dict[str, str]]) -> str: ...

    def health(self) -> str | None: ...


# The methods a text engine has: what a loader's object behind generate routes needs.
TEXT_ENGINE = tuple(name for name in vars(TextEngine) if not name.startswith("_"))


class TextBase:
    """What text engines share: prompts, token counts and the context's limit, from a
    Hugging Face tokenizer used under `lock` (a fast tokenizer is not thread-safe)."""

    tokenizer: Any
    lock: threading.Lock

    def context_length(self) -> int | None:
        """The most tokens the model takes, prompt and generation together."""
        raise NotImplementedError

    def chat_prompt(self, turns: list[dict[str, str]]) -> str:
        """The tokenizer's chat template; without one, `role: content` lines.

        A template that refuses the turns (many call `raise_exception` on a `system` turn,
        on roles that do not alternate, or on `tool`) is the request's fault: `Rejected`
        on `messages`, with the template's own message."""
        if getattr(self.tokenizer, "chat_template", None):
            from jinja2 import TemplateError, TemplateSyntaxError

            options = {"tokenize": False, "add_generation_prompt": True}
            try:
                with self.lock:
                    return str(self.tokenizer.apply_chat_template(turns, **options))
            except TemplateSyntaxError:
                raise  # the model's template is broken, whatever is asked
            except TemplateError as exc:
                reason = str(exc) or "the model's chat template refuses these messages"
                raise http.Rejected("messages", reason) from None
        lines = [f"{turn['role']}: {turn['content']}" for turn in turns]
        return "\n".join([*lines, "assistant:"])

    def count(self, text: str) -> int:
        """Tokens in `text`, as the model reads it."""
        with self.lock:
            return len(self.tokenizer(text)["input_ids"])

    def context_left(self, prompt: str) -> int | None:
        """How many tokens fit after `prompt` in the model's context, if it has a limit."""
        context = self.context_length()
        return None if not context else context - self.count(prompt)

    def context_problem(self, request: Generation) -> str | None:
        """Why the prompt and max_tokens do not fit the model's context, if they don't."""
        context = self.context_length()
        if not context:
            return None
        prompt = self.count(request.prompt)
        if prompt + request.max_tokens > context:
            return (
                f"the prompt ({prompt} tokens) plus max_tokens ({request.max_tokens}) "
                f"exceed the model's context of {context} tokens"
            )
        return None


class TextGenerator(Engine, TextBase):
    """A causal language model on transformers: one generation at a time, or with
    `batch(...)`, continuous batching (`generation.py`)."""

    model_kind = "AutoModelForCausalLM"

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        import transformers

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(transformers.AutoTokenizer)
        self.model = self.weights(getattr(transformers, self.model_kind))
        self.encoder_decoder = bool(getattr(self.model.config, "is_encoder_decoder", False))
        self.batcher: ContinuousBatcher | None = None
        # Unbatched, generations queue for one thread: none holds a thread while waiting.
        self.alone = ThreadPoolExecutor(1, thread_name_prefix="generation")

    def start(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> Future[dict[str, Any]]:
        if self.batcher is not None:
            return self.batcher.start(request, on_text, cancelled)
        return self.alone.submit(self.generate_alone, request, on_text, cancelled)

    def close(self) -> None:
        """The container is shutting down: the batch loop's thread ends once its running
        generations are done, and so does the thread of unbatched ones."""
        if self.batcher is not None:
            self.batcher.close()
        self.alone.shutdown(wait=True, cancel_futures=True)

    def generate(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> dict[str, Any]:
        return self.start(request, on_text, cancelled).result()

    def health(self) -> str | None:
        if self.batcher is not None and not self.batcher.thread.is_alive():
            return "the generation loop stopped"
        return None

    def context_length(self) -> int | None:
        context = getattr(self.model.config, "max_position_embeddings", None)
        return int(context) if context else None

    def context_problem(self, request: Generation) -> str | None:
        if not self.encoder_decoder:
            return super().context_problem(request)
        context = self.context_length()  # the encoder's: the decoder has its own
        prompt = self.count(request.prompt)
        if context and prompt > context:
            return f"the prompt ({prompt} tokens) exceeds the model's input of {context} tokens"
        return None

    def batch(
        self, max_batch_size: int, wait_ms: int, observe: Callable[[int, float], None] | None
    ) -> bool:
        """Run concurrent generations in one batch from now on (`generation.py`), if the
        model's cache allows it: a warm-up step tells. False: one at a time, as before."""
        from endpointgen.runtime.generation import ContinuousBatcher, cache_of, supports_batching

        if max_batch_size < 2 or self.encoder_decoder:
            return False
        token = self.tokenizer.eos_token_id or 0
        with self.torch.inference_mode():
            ids = self.torch.tensor([[token]], device=self.device)
            cache = cache_of(self.model(input_ids=ids, use_cache=True))
        if not supports_batching(cache):
            kind = type(cache).__name__
            http.log.warning(
                "%s cannot be batched (its cache is a %s): one generation at a time",
                self.source,
                kind,
            )
            return False
        self.batcher = ContinuousBatcher(self, max_batch_size, wait_ms, observe)
        return True

    def generate_alone(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> dict[str, Any]:
        """One generation by `model.generate`, the model to itself (under the lock)."""
        from transformers import StoppingCriteriaList

        torch = self.torch
        with self.lock:
            inputs = self.tokenizer(request.prompt, return_tensors="pt").to(self.device)
        prompt_length = int(inputs["input_ids"].shape[1])
        # A decoder-only model's output repeats the prompt; a seq2seq one's starts with
        # the decoder's start token.
        skip = 1 if self.encoder_decoder else prompt_length
        watcher = Watcher(self.tokenizer, skip, request.stop_list(), on_text, cancelled)
        pad = self.tokenizer.pad_token_id
        options: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "stopping_criteria": StoppingCriteriaList([watcher]),
            "pad_token_id": pad if pad is not None else self.tokenizer.eos_token_id,
        }
        if request.temperature >= GREEDY_BELOW:
            options.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with self.lock, torch.inference_mode():
            if request.seed is not None:
                torch.manual_seed(request.seed)
            output = self.model.generate(**inputs, **options)
            new_tokens = output[0, skip:]
            watcher.finish(new_tokens)  # the tokenizer again: still under the lock
        generated = int(new_tokens.shape[0])
        return {
            "text": watcher.text,
            "prompt_tokens": prompt_length,
            "tokens_generated": generated,
            "finish_reason": watcher.finish_reason(generated, request.max_tokens),
        }


class Seq2SeqGenerator(TextGenerator):
    """An encoder-decoder model (T5, BART): summarization, translation. It reads the
    prompt with its encoder and writes the answer with its decoder, streamed like a
    causal model's, one request at a time."""

    model_kind = "AutoModelForSeq2SeqLM"


class Watcher:
    """Decodes new tokens as they come: hands out text, stops at `stop` or on cancel.

    Text that could be the start of a stop string is held back until the next token
    says whether it is, so no client ever sees part of a stop string."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_length: int,
        stop: list[str],
        on_text: OnText | None,
        cancelled: threading.Event | None,
    ) -> None:
        self.tokenizer = tokenizer
        self.prompt_length = prompt_length
        self.stop = stop
        self.on_text = on_text
        self.cancelled = cancelled
        self.text = ""
        self.reason: str | None = None

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        if self.cancelled is not None and self.cancelled.is_set():
            self.reason = "cancelled"
            return True
        return self.update(input_ids[0, self.prompt_length :], final=False)

    def finish(self, new_tokens: Any) -> None:
        if self.reason is None:
            self.update(new_tokens, final=True)

    def finish_reason(self, generated: int, max_tokens: int) -> str:
        if self.reason is not None:
            return self.reason
        return "length" if generated >= max_tokens else "stop"

    def update(self, new_tokens: Any, final: bool) -> bool:
        text = str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))
        stopped = False
        for stop in self.stop:
            at = text.find(stop)
            if at != -1:
                text, stopped = text[:at], True
        if not final and not stopped and text.endswith("\ufffd"):
            return False  # half of a multi-byte character: wait for the rest
        if stopped:
            self.reason = "stop"
        else:  # text that may begin a stop string waits for the next token
            text = text[: len(text) - self.held(text)] if not final else text
        if text.startswith(self.text) and len(text) > len(self.text):
            piece, self.text = text[len(self.text) :], text
            if self.on_text is not None:
                self.on_text(piece)
        return stopped

    def held(self, text: str) -> int:
        """How many characters at the end of `text` could begin a stop string."""
        longest = 0
        for stop in self.stop:
            for size in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:size]):
                    longest = size
                    break
        return longest


POOLING_MODES = {  # sentence-transformers' Pooling config keys -> how we pool
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
}


class Embedder(Engine):
    """Sentence embeddings, pooled as the model's sentence-transformers config says (the
    `Pooling` module of `modules.json`: CLS, mean, max or last token; L2-normalised when
    a `Normalize` module follows). A model without that config: mean pooling under the
    attention mask, L2-normalised."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoModel, AutoTokenizer

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(AutoTokenizer)
        self.model = self.weights(AutoModel)
        self.pooling, self.normalize = self.pooling_config()

    def json_file(self, name: str) -> Any:
        """A JSON file of the model (a local folder's, or from the Hub), or None."""
        from transformers.utils.hub import cached_file

        found = cached_file(
            self.source,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **self.options,
        )
        return json.loads(Path(found).read_text(encoding="utf-8")) if found else None

    def pooling_config(self) -> tuple[str, bool]:
        """(pooling, normalize) from `modules.json` and its Pooling module's config."""
        modules = self.json_file("modules.json")
        if not isinstance(modules, list):
            return "mean", True
        kinds = {str(m.get("type", "")).rsplit(".", 1)[-1]: m for m in modules}
        normalize = "Normalize" in kinds
        pooling = kinds.get("Pooling")
        if pooling is None:
            return "mean", normalize
        folder = str(pooling.get("path") or "").strip("/")
        config = self.json_file(f"{folder}/config.json" if folder else "config.json") or {}
        chosen = [mode for key, mode in POOLING_MODES.items() if config.get(key)]
        others = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
        if len(chosen) != 1 or len(others) != 1:
            raise ValueError(
                f"pooling {', '.join(others) or 'none'} is not supported "
                "(one of: cls, mean, max or last token)"
            )
        return chosen[0], normalize

    def count_tokens(self, texts: list[str]) -> int:
        with self.lock:
            return sum(len(ids) for ids in self.tokenizer(texts)["input_ids"])

    def __call__(self, texts: list[str]) -> list[list[float]]:
        torch = self.torch
        with self.lock, torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            batch = batch.to(self.device)
            hidden = self.model(**batch).last_hidden_state
            pooled = self.pool(hidden, batch["attention_mask"]).float()
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        vectors: list[list[float]] = pooled.cpu().tolist()
        return vectors

    def pool(self, hidden: Any, attention: Any) -> Any:
        """One vector per text from its token vectors, padding left out."""
        torch = self.torch
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "last":
            if self.tokenizer.padding_side == "left":
                return hidden[:, -1]
            last = attention.sum(dim=1) - 1
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        mask = attention.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "max":
            return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class ImageTextEmbedder(Engine):
    """A CLIP-style model: texts and images into one space, L2-normalised, so a text's
    vector can be compared with an image's. A batch may mix both."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(AutoTokenizer)
        self.processor = self.pretrained(AutoImageProcessor)
        self.model = self.weights(AutoModel)

    def __call__(self, items: list[Any]) -> list[list[float]]:
        torch = self.torch
        texts = [i for i, item in enumerate(items) if isinstance(item, str)]
        images = [i for i, item in enumerate(items) if not isinstance(item, str)]
        out: list[list[float]] = [[] for _ in items]
        with self.lock, torch.inference_mode():
            if texts:
                batch = self.tokenizer(
                    [items[i] for i in texts], padding=True, truncation=True, return_tensors="pt"
                )
                found = self.model.get_text_features(**batch.to(self.device))
                self._place(out, texts, found)
            if images:
                pixels = self.processor(images=[items[i] for i in images], return_tensors="pt")
                found = self.model.get_image_features(**pixels.to(self.device))
                self._place(out, images, found)
        return out

    def _place(self, out: list[list[float]], where: list[int], found: Any) -> None:
        vectors = getattr(found, "pooler_output", found)  # a tensor, or an output object
        vectors = self.torch.nn.functional.normalize(vectors.float(), p=2, dim=-1)
        for i, vector in zip(where, vectors.cpu().tolist(), strict=True):
            out[i] = vector


class Classifier(Engine):
    """A sequence classifier: the top label and its softmax score for each text."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(AutoTokenizer)
        self.model = self.weights(AutoModelForSequenceClassification)
        self.labels = self.model.config.id2label

    def __call__(self, texts: list[str]) -> list[dict[str, Any]]:
        with self.lock, self.torch.inference_mode():
            batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            logits = self.model(**batch.to(self.device)).logits
        return top_labels(logits, self.labels)


class Pipelined(Engine):
    """A transformers pipeline over the model: what `pipeline(task)` answers, on the
    engine's device and dtype, batched as the requests come."""

    task = ""
    model_kind = "AutoModelForSequenceClassification"

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        import transformers

        super().__init__(source, revision, dtype)
        self.tokenizer = self.pretrained(transformers.AutoTokenizer)
        self.model = self.weights(getattr(transformers, self.model_kind))
        device = None if self.spread else self.device
        make: Any = transformers.pipeline
        self.pipe = make(self.task, model=self.model, tokenizer=self.tokenizer, device=device)


class ZeroShotClassifier(Pipelined):
    """Zero-shot classification with an NLI model: each text against candidate labels.
    Requests with the same labels and settings share one pipeline call."""

    task = "zero-shot-classification"

    def __call__(self, items: list[tuple[str, tuple[str, ...], bool, str]]) -> list[Any]:
        groups: dict[tuple[tuple[str, ...], bool, str], list[int]] = {}
        for i, (_, labels, multi, template) in enumerate(items):
            groups.setdefault((labels, multi, template), []).append(i)
        out: list[Any] = [None] * len(items)
        for (labels, multi, template), where in groups.items():
            texts = [items[i][0] for i in where]
            with self.lock, self.torch.inference_mode():
                found = self.pipe(
                    texts,
                    candidate_labels=list(labels),
                    multi_label=multi,
                    hypothesis_template=template,
                    batch_size=len(texts) * len(labels),  # one forward pass for all
                )
            for i, result in zip(where, found, strict=True):
                scores = [float(s) for s in result["scores"]]
                best = {"label": result["labels"][0], "score": scores[0]}
                out[i] = {**best, "labels": list(result["labels"]), "scores": scores}
        return out


class TokenClassifier(Pipelined):
    """Named entities: token labels grouped into spans (IOB tags joined, as the
    pipeline's `simple` aggregation does), with character offsets into the text."""

    task = "token-classification"
    model_kind = "AutoModelForTokenClassification"

    def __call__(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        with self.lock, self.torch.inference_mode():
            found = self.pipe(texts, aggregation_strategy="simple", batch_size=len(texts))
        return [
            [
                {
                    "entity_group": str(e["entity_group"]),
                    "score": float(e["score"]),
                    "word": str(e["word"]),
                    "start": int(e["start"]),
                    "end": int(e["end"]),
                }
                for e in entities
            ]
            for entities in found
        ]


class Reranker(Classifier):
    """A cross-encoder: a sequence classifier reading each (query, text) pair together,
    one relevance logit. Answers (logit, score): the score is its sigmoid, or for a model
    with several labels the softmax of the last."""

    def __call__(self, pairs: list[tuple[str, str]]) -> list[tuple[float, float]]:  # type: ignore[override]
        queries, texts = [q for q, _ in pairs], [t for _, t in pairs]
        with self.lock, self.torch.inference_mode():
            batch = self.tokenizer(
                queries, texts, padding=True, truncation=True, return_tensors="pt"
            )
            logits = self.model(**batch.to(self.device)).logits.float()
        if logits.shape[1] == 1:
            raw = logits[:, 0]
            score = raw.sigmoid()
        else:
            raw = logits[:, -1]
            score = logits.softmax(dim=-1)[:, -1]
        return list(zip(raw.cpu().tolist(), score.cpu().tolist(), strict=True))


class ImageClassifier(Engine):
    """An image classifier: the top label and its softmax score for each image."""

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        super().__init__(source, revision, dtype)
        self.processor = self.pretrained(AutoImageProcessor)
        self.model = self.weights(AutoModelForImageClassification)
        self.labels = self.model.config.id2label

    def __call__(self, images: list[Any]) -> list[dict[str, Any]]:
        with self.lock, self.torch.inference_mode():
            batch = self.processor(images=images, return_tensors="pt").to(self.device)
            logits = self.model(**batch).logits
        return top_labels(logits, self.labels)


class ObjectDetector(Engine):
    """An object detector (DETR, YOLOS, ...): each object found with a score over
    `THRESHOLD`, best first, as `{label, score, box: {xmin, ymin, xmax, ymax}}` in the
    image's own pixels, as transformers' object-detection pipeline answers.

    One image per forward pass even in a batch: these models predict boxes relative to
    their input, which a batch pads to its largest image."""

    THRESHOLD = 0.5

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        super().__init__(source, revision, dtype)
        self.processor = self.pretrained(AutoImageProcessor)
        self.model = self.weights(AutoModelForObjectDetection)
        self.labels = self.model.config.id2label

    def __call__(self, images: list[Any]) -> list[list[dict[str, Any]]]:
        return [self.detect(image) for image in images]

    def detect(self, image: Any) -> list[dict[str, Any]]:
        with self.lock, self.torch.inference_mode():
            batch = self.processor(images=[image], return_tensors="pt").to(self.device)
            outputs = self.model(**batch)
            (found,) = self.processor.post_process_object_detection(
                outputs, threshold=self.THRESHOLD, target_sizes=[(image.height, image.width)]
            )
        objects = []
        for score, label, box in zip(
            found["scores"].tolist(),
            found["labels"].tolist(),
            found["boxes"].int().tolist(),
            strict=True,
        ):
            corners = dict(zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
            name = str(self.labels.get(int(label), label))
            objects.append({"label": name, "score": float(score), "box": corners})
        return sorted(objects, key=lambda found: -found["score"])


class SpeechRecognizer(Engine):
    """Speech to text with transformers' automatic-speech-recognition pipeline: Whisper
    (an encoder-decoder) or a CTC model such as wav2vec2. Audio comes as the uploaded
    file's bytes: WAV, FLAC, OGG or MP3, decoded with libsndfile (`soundfile`), mixed to
    mono and resampled to the model's rate. Audio longer than `CHUNK_SECONDS` is cut into
    overlapping chunks, as the pipeline does. With timestamps, `chunks` gives each
    segment (Whisper) or word (CTC) with its start and end in seconds."""

    CHUNK_SECONDS = 30
    MAX_SECONDS = 4 * 3600

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        import transformers

        super().__init__(source, revision, dtype)
        config = self.pretrained(transformers.AutoConfig)
        self.seq2seq = bool(getattr(config, "is_encoder_decoder", False))
        kind = "AutoModelForSpeechSeq2Seq" if self.seq2seq else "AutoModelForCTC"
        self.model = self.weights(getattr(transformers, kind))
        self.tokenizer = self.pretrained(transformers.AutoTokenizer)
        self.features = self.pretrained(transformers.AutoFeatureExtractor)
        self.rate = int(self.features.sampling_rate)
        make: Any = transformers.pipeline
        self.pipe = make(
            "automatic-speech-recognition",
            model=self.model,
            tokenizer=self.tokenizer,
            feature_extractor=self.features,
            device=None if self.spread else self.device,
        )

    def __call__(self, items: list[tuple[bytes, bool]]) -> list[dict[str, Any]]:
        return [self.transcribe(content, timestamps) for content, timestamps in items]

    def transcribe(self, content: bytes, timestamps: bool) -> dict[str, Any]:
        audio = read_audio(content, self.rate, self.MAX_SECONDS)
        options: dict[str, Any] = {}
        if len(audio) > self.CHUNK_SECONDS * self.rate:
            options["chunk_length_s"] = self.CHUNK_SECONDS
        if timestamps:
            options["return_timestamps"] = True if self.seq2seq else "word"
        with self.lock, self.torch.inference_mode():
            found = self.pipe({"raw": audio, "sampling_rate": self.rate}, **options)
        answer: dict[str, Any] = {
            "text": str(found["text"]).strip(),
            "seconds": round(len(audio) / self.rate, 3),
        }
        if timestamps:
            answer["chunks"] = [
                {
                    "text": str(chunk["text"]).strip(),
                    "start": _seconds(chunk["timestamp"][0]),
                    "end": _seconds(chunk["timestamp"][1]),
                }
                for chunk in found.get("chunks", [])
            ]
        return answer


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


MIN_RATE, MAX_RATE = 8_000, 192_000  # Hz: telephone audio to studio audio
MAX_CHANNELS = 8  # 7.1 sound
MAX_SAMPLES = 1 << 28  # decoded mono samples, float32: 1 GiB (4 hours at 16 kHz fit)
AUDIO_BLOCK = 1 << 20  # frames decoded at a time, mixed to mono as they come


def read_audio(content: bytes, rate: int, max_seconds: float) -> Any:
    """The uploaded bytes as mono float32 samples at `rate`; 422 when they are no audio
    libsndfile reads, or its header gives a sample rate outside `MIN_RATE`-`MAX_RATE` or
    channels outside 1-`MAX_CHANNELS`; 413 when the file says it lasts more than
    `max_seconds` or holds more than `MAX_SAMPLES` frames (checked from its header,
    before anything is decoded: a 132-byte FLAC can declare 273 GiB of samples). It is
    decoded in blocks, each mixed to mono at once, and stops with a 413 should it decode
    past those limits after all (a header that leaves its length out, or lies)."""
    import numpy as np
    import soundfile

    too_long = HTTPException(
        413,
        f"the audio is longer than {max_seconds:.0f} seconds or {MAX_SAMPLES} samples, "
        "the most accepted",
    )
    try:
        with soundfile.SoundFile(io.BytesIO(content)) as audio:
            given, channels, frames = audio.samplerate, audio.channels, audio.frames
            if not MIN_RATE <= given <= MAX_RATE:
                raise HTTPException(
                    422,
                    f"the audio's sample rate is {given} Hz; {MIN_RATE} to {MAX_RATE} are accepted",
                )
            if not 1 <= channels <= MAX_CHANNELS:
                raise HTTPException(
                    422, f"the audio has {channels} channels; 1 to {MAX_CHANNELS} are accepted"
                )
            most = min(MAX_SAMPLES, int(max_seconds * given))
            if frames > most:
                raise too_long
            mono = np.empty(max(frames, 0), dtype=np.float32)
            count = 0
            for block in audio.blocks(AUDIO_BLOCK, dtype="float32", always_2d=True):
                end = count + len(block)
                if end > most:
                    raise too_long
                if end > len(mono):  # more than the header said
                    mono = np.concatenate([mono[:count], np.empty(end - count, np.float32)])
                mono[count:end] = block.mean(axis=1)
                count = end
    except (RuntimeError, ValueError, TypeError, soundfile.LibsndfileError):
        raise HTTPException(422, "the file is not readable audio (WAV, FLAC, OGG or MP3)") from None
    mono = mono[:count]
    if given != rate:
        from math import gcd

        from scipy.signal import resample_poly

        common = gcd(rate, given)
        mono = resample_poly(mono, rate // common, given // common).astype(np.float32)
    if not len(mono):
        raise HTTPException(422, "the audio file holds no samples")
    return mono


class ImageGenerator(Engine):
    """Text to image with `diffusers`: whatever pipeline the model's `model_index.json`
    names (Stable Diffusion, SDXL, ...), on the engine's device and dtype. One image per
    call, seeded by the request, encoded as it asks."""

    ROOT_FILE = "model_index.json"  # a diffusers pipeline: its parts are in folders

    def __init__(self, source: str | Path, revision: str | None, dtype: str) -> None:
        from diffusers import AutoPipelineForText2Image

        super().__init__(source, revision, dtype)
        dtype = self.dtype
        if dtype == "auto":  # half precision where it is fast
            dtype = self.torch.float16 if self.device == "cuda" else self.torch.float32
        load: Any = AutoPipelineForText2Image.from_pretrained  # untyped in diffusers
        self.pipe = self.hub_load(load, dtype=dtype)
        self.pipe.to(self.device)
        self.pipe.set_progress_bar_config(disable=True)
        self.accepts = set(inspect.signature(self.pipe.__call__).parameters)

    def __call__(self, request: Any, stop: threading.Event | None = None) -> bytes:
        """`request`: a `tasks.ImageRequest` with its seed set. Once `stop` is set (no one
        waits for the image any more) the denoising ends at the next step, and the
        answer is empty."""

        def step_end(pipe: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> Any:
            if stop is not None and stop.is_set():
                pipe._interrupt = True  # diffusers' own way out: the remaining steps skip
            return tensors

        options: dict[str, Any] = {}
        if stop is not None and "callback_on_step_end" in self.accepts:
            options["callback_on_step_end"] = step_end
        generator = self.torch.Generator(device="cpu").manual_seed(int(request.seed))
        with self.lock, self.torch.inference_mode():
            image = self.pipe(
                request.prompt,
                negative_prompt=request.negative_prompt,
                width=request.width,
                height=request.height,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=generator,
                **options,
            ).images[0]
        if stop is not None and stop.is_set():
            return b""
        return image_bytes(image, f"image/{request.format}")


MAX_PIXELS = 40_000_000  # about 40 MP: 7000 x 5700, beyond any camera a route expects
MAX_ASPECT = 20  # longer side / shorter side: a panorama is under 10


def open_image(content: bytes, max_pixels: int = MAX_PIXELS) -> Any:
    """The uploaded bytes as an RGB image; a 422 when they are not an image, a 413 when
    its header declares more than `max_pixels` (checked before anything is decoded: a
    20 KB PNG can declare 13000 x 13000 pixels, 2.7 GB once decoded), a 422 when its
    longer side is more than `MAX_ASPECT` times its shorter, also from the header.
    Image processors scale the shorter side to their size and the longer with it: a
    1,000,000 x 1 image becomes 224,000,000 x 224 (9.7 GB) for CLIP, and 20,000 x 1
    becomes 0 pixels high for a detector; within `MAX_ASPECT` a processor's input stays
    within 20 times its square."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise HTTPException(
                    413, f"the image is {width}x{height} pixels; at most {max_pixels} are accepted"
                )
            if max(width, height) > MAX_ASPECT * min(width, height):
                raise HTTPException(
                    422,
                    f"the image is {width}x{height} pixels; its longer side may be at most "
                    f"{MAX_ASPECT} times its shorter",
                )
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        raise HTTPException(422, "the file is not a readable image") from None


def top_labels(logits: Any, labels: dict[int, str]) -> list[dict[str, Any]]:
    scores, best = logits.float().softmax(dim=-1).max(dim=-1)
    return [
        {"label": str(labels.get(int(i), i)), "score": float(s)}
        for s, i in zip(scores.cpu().tolist(), best.cpu().tolist(), strict=True)
    ]


ENGINES: dict[str, type[Engine]] = {
    "text-generation": TextGenerator,
    "text2text-generation": Seq2SeqGenerator,
    "embeddings": Embedder,
    "image-text-embeddings": ImageTextEmbedder,
    "text-classification": Classifier,
    "zero-shot-classification": ZeroShotClassifier,
    "token-classification": TokenClassifier,
    "rerank": Reranker,
    "image-classification": ImageClassifier,
    "object-detection": ObjectDetector,
    "automatic-speech-recognition": SpeechRecognizer,
    "text-to-image": ImageGenerator,
}
