"""The text-generation interface: what is asked of a text engine (`Generation`), what it
offers (`TextEngine`), and what the engines share: prompts and token counts from a Hugging
Face tokenizer (`TextBase`), and new tokens decoded into text as they come (`Watcher`).

The engines that implement it are `transformers.TextGenerator` (with `batcher`, its
continuous batching) and `vllm.VllmGenerator`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from endpointgen.runtime import http

__all__ = [
    "DEFAULT_TEMPERATURE",
    "GREEDY_BELOW",
    "TEXT_ENGINE",
    "Generation",
    "OnText",
    "TextBase",
    "TextEngine",
    "Watcher",
]

GREEDY_BELOW = 0.01  # smaller temperatures overflow the logits; they mean "greedy"
DEFAULT_TEMPERATURE = 1.0  # a request that sets none, on a model whose own config is not used
OnText = Callable[[str], None]


class Generation(Protocol):
    """What a text generator is asked: the fields of a GenerateRequest."""

    prompt: str
    max_tokens: int
    temperature: float | None  # None: the engine's default (`temperature_of`)
    top_p: float
    seed: int | None

    def stop_list(self) -> list[str]: ...


def temperature_of(request: Generation) -> float:
    """The temperature a request samples at: its own, else DEFAULT_TEMPERATURE."""
    return DEFAULT_TEMPERATURE if request.temperature is None else request.temperature


class TextEngine(Protocol):
    """What serves text generation, whichever library runs the model: `TextGenerator`
    (transformers) and `VllmGenerator` (vLLM) implement it, and
    `tests/runtime/test_engine_contract.py` holds each to it. Loading is the constructor:
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
