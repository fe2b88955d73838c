"""The text engines on transformers: a causal language model (`TextGenerator`), one
generation at a time or continuously batched (`batcher`), and an encoder-decoder one
(`Seq2SeqGenerator`)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from endpointgen.runtime import http
from endpointgen.runtime.engine import Engine
from endpointgen.runtime.text.batcher import ContinuousBatcher, cache_of, supports_batching
from endpointgen.runtime.text.interface import (
    GREEDY_BELOW,
    Generation,
    OnText,
    TextBase,
    Watcher,
    temperature_of,
)

__all__ = ["Seq2SeqGenerator", "TextGenerator"]


class TextGenerator(Engine, TextBase):
    """A causal language model on transformers: one generation at a time, or with
    `batch(...)`, continuous batching (`batcher`)."""

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
        """Run concurrent generations in one batch from now on (`batcher`), if the
        model's cache allows it: a warm-up step tells. False: one at a time, as before."""
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
        options.update(self.sampling(request))
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

    def sampling(self, request: Generation) -> dict[str, Any]:
        """`model.generate`'s sampling options for `request`."""
        if temperature_of(request) >= GREEDY_BELOW:
            return {
                "do_sample": True,
                "temperature": temperature_of(request),
                "top_p": request.top_p,
            }
        return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


class Seq2SeqGenerator(TextGenerator):
    """An encoder-decoder model (T5, BART): summarization, translation. It reads the
    prompt with its encoder and writes the answer with its decoder, streamed like a
    causal model's, one request at a time."""

    model_kind = "AutoModelForSeq2SeqLM"

    def sampling(self, request: Generation) -> dict[str, Any]:
        """A request that sets no temperature samples as the model's own
        `generation_config` says (a summarizer's is usually greedy), one beam at a time
        (the answer streams as it is written); one that sets it, as it asks."""
        if request.temperature is not None:
            return super().sampling(request)
        config = self.model.generation_config
        if not config.do_sample:
            return {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        options = {"temperature": config.temperature, "top_p": config.top_p}
        return {"do_sample": True, "num_beams": 1, "top_k": config.top_k, **options}
