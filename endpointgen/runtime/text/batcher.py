"""Continuous batching for text generation: concurrent requests share forward passes.

One thread runs the decode loop. A request joins the running batch at the next step: its
prompt is prefilled (with any other newcomers), its cache is merged into the batch's,
left-padded to one length, and from then on each step feeds one token per row. A row leaves
as soon as it is done (its `max_tokens`, a `stop` string, the end of sequence token, or its
client gone), and columns that are padding in every row left are dropped. So a short request
never waits for a long one, and a late one for the batch to drain.

Each row samples with its own `temperature` and `top_p` (and the model's `generation_config`
`top_k` and `repetition_penalty`, as `generate` would); a greedy row takes the argmax, so its
text equals an unbatched greedy generation. A row with a `seed` samples from its own
`torch.Generator`, so the same seed and prompt give the same text whatever else is in it.

Only models whose KV cache is transformers' plain `DynamicCache` can be merged and split this
way (GPT-2, Llama, Qwen, Mistral without a sliding window, ...); others (sliding-window or
hybrid caches, state-space models) are told apart by a warm-up step at load time and generate
one request at a time, as without batching.
"""

from __future__ import annotations

import atexit
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from endpointgen.runtime import http
from endpointgen.runtime.text import interface
from endpointgen.runtime.text.interface import GREEDY_BELOW, Generation, OnText, Watcher

__all__ = ["ContinuousBatcher", "cache_of", "supports_batching"]


class Batchable(Protocol):
    """What the loop takes from its engine (`transformers.TextGenerator`)."""

    model: Any
    tokenizer: Any  # used under `lock`: a fast tokenizer is not thread-safe
    lock: threading.Lock
    device: str

    @property
    def torch(self) -> Any: ...


@dataclass(eq=False)
class Row:
    """One request in the batch: its prompt, what it generated, and how to answer."""

    request: Generation
    prompt: list[int]
    watcher: Watcher
    cancelled: threading.Event | None
    answer: Future[dict[str, Any]]
    generator: Any  # a torch.Generator seeded with the request's seed, or None
    new: list[int] = field(default_factory=list)

    def sampled(self) -> bool:
        return interface.temperature_of(self.request) >= GREEDY_BELOW


class Batch:
    """The running rows and their shared state: one KV cache, left-padded to one length.

    `mask` is (rows, length) with 0 on padding; `positions` the next position of each
    row (its real tokens so far); `pending` the token each row sampled last, fed next.
    """

    def __init__(self, torch: Any) -> None:
        self.torch = torch
        self.rows: list[Row] = []
        self.cache: Any = None
        self.mask: Any = None
        self.positions: Any = None
        self.pending: Any = None

    def merge(self, rows: list[Row], cache: Any, mask: Any, positions: Any, pending: Any) -> None:
        """Add prefilled rows, padding the shorter side on the left to the longer length."""
        torch = self.torch
        if not self.rows:
            self.rows, self.cache, self.mask = rows, cache, mask
            self.positions, self.pending = positions, pending
            return
        ours, theirs = self.mask.shape[1], mask.shape[1]
        length = max(ours, theirs)
        pad = torch.nn.functional.pad
        for mine, new in zip(self.cache.layers, cache.layers, strict=True):
            mine.keys = torch.cat([left(pad, mine.keys, length), left(pad, new.keys, length)])
            mine.values = torch.cat([left(pad, mine.values, length), left(pad, new.values, length)])
        masks = [pad(self.mask, (length - ours, 0)), pad(mask, (length - theirs, 0))]
        self.mask = torch.cat(masks)
        self.positions = torch.cat([self.positions, positions])
        self.pending = torch.cat([self.pending, pending])
        self.rows = self.rows + rows

    def keep(self, kept: list[int]) -> None:
        """Only these rows stay; leading columns that are padding in all of them go."""
        if len(kept) == len(self.rows):
            return
        if not kept:
            self.rows, self.cache = [], None
            return
        torch = self.torch
        index = torch.tensor(kept, device=self.mask.device)
        self.mask = self.mask[index]
        used = self.mask.any(dim=0).nonzero()
        start = int(used[0]) if len(used) else 0
        self.mask = self.mask[:, start:]
        for layer in self.cache.layers:
            layer.keys = layer.keys[index, :, start:]
            layer.values = layer.values[index, :, start:]
        self.positions = self.positions[index]
        self.pending = self.pending[index]
        self.rows = [self.rows[i] for i in kept]


def left(pad: Callable[..., Any], states: Any, length: int) -> Any:
    """(rows, heads, n, dim) states padded on the left to `length` positions."""
    return pad(states, (0, 0, length - states.shape[2], 0))


def cache_keyword(model: Any) -> str:
    """The forward pass's cache argument: `cache` from transformers 5.24 on, before that
    `past_key_values` (an unknown keyword is swallowed by **kwargs: no error, no cache)."""
    return "cache" if "cache" in forward_arguments(model) else "past_key_values"


def forward_arguments(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


def cache_of(out: Any) -> Any:
    """A forward pass's cache: `out.cache`, or `out.past_key_values` before transformers 5.24."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


def supports_batching(cache: Any) -> bool:
    """Whether a forward pass's cache can be merged and split by rows: a DynamicCache of
    plain layers, each holding (rows, heads, positions, dim) keys and values."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # transformers before 4.56 keeps its cache in lists, not layers
        return False
    if type(cache) is not DynamicCache or not getattr(cache, "layers", None):
        return False
    return all(
        type(layer) is DynamicLayer and getattr(layer, "keys", None) is not None
        for layer in cache.layers
    )


class ContinuousBatcher:
    """The decode loop of one text generator, in its own thread."""

    def __init__(
        self,
        engine: Batchable,
        max_batch_size: int,
        wait_ms: int,
        observe: Callable[[int, float], None] | None = None,
    ) -> None:
        self.engine = engine
        self.torch = engine.torch
        self.max_batch_size = max_batch_size
        self.wait = wait_ms / 1000
        self.cache_keyword = cache_keyword(engine.model)
        # The last position's logits only, where the model can be told (most can).
        keep = "logits_to_keep" in forward_arguments(engine.model)
        self.last_only: dict[str, int] = {"logits_to_keep": 1} if keep else {}
        self.observe = observe  # told each step's rows and seconds (for /metrics)
        self.incoming: queue.SimpleQueue[Row | None] = queue.SimpleQueue()  # None: stop
        self.unanswered = 0
        self.count_lock = threading.Lock()
        config = engine.model.generation_config
        eos = config.eos_token_id
        if eos is None:
            eos = engine.tokenizer.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        self.top_k = int(config.top_k or 0)
        self.repetition = float(config.repetition_penalty or 1.0)
        pad = engine.tokenizer.pad_token_id
        self.pad = pad if pad is not None else next(iter(self.eos), 0)
        self.thread = threading.Thread(target=self._loop, name="generation", daemon=True)
        self.thread.start()
        atexit.register(self.close)

    def close(self) -> None:
        """Stop the loop once the running rows are done (at exit, before torch unloads)."""
        self.incoming.put(None)
        self.thread.join(timeout=10)

    def waiting(self) -> int:
        """Requests not yet answered: queued, or rows of the running batch."""
        return self.unanswered

    def start(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> Future[dict[str, Any]]:
        """Queue one generation; the future gets what `TextGenerator.generate` returns."""
        engine = self.engine
        with engine.lock:  # the tokenizer is not safe across threads
            prompt = list(engine.tokenizer(request.prompt)["input_ids"])
        watcher = Watcher(engine.tokenizer, 0, request.stop_list(), on_text, cancelled)
        generator = None
        if request.seed is not None and interface.temperature_of(request) >= GREEDY_BELOW:
            generator = self.torch.Generator(device=engine.device)
            generator.manual_seed(request.seed)
        answer: Future[dict[str, Any]] = Future()
        answer.set_running_or_notify_cancel()
        with self.count_lock:
            self.unanswered += 1
        answer.add_done_callback(self._answered)
        self.incoming.put(Row(request, prompt, watcher, cancelled, answer, generator))
        return answer

    def _answered(self, _: Future[dict[str, Any]]) -> None:
        with self.count_lock:
            self.unanswered -= 1

    # --- the loop, in its own thread ---

    def _loop(self) -> None:
        batch = Batch(self.torch)
        closing = False
        while not closing or batch.rows:
            arrived = self._admit(len(batch.rows))
            closing = closing or None in arrived
            newcomers = [row for row in arrived if row is not None and not self._gone(row)]
            try:
                with self.torch.inference_mode():
                    if newcomers:
                        self._prefill(batch, newcomers)
                    if batch.rows:
                        self._step(batch)
            except Exception as exc:  # the model failed: fail the rows it was running
                http.log.error("generation failed for %d requests: %s", len(batch.rows), exc)
                for row in {*batch.rows, *newcomers}:
                    if not row.answer.done():
                        row.answer.set_exception(exc)
                batch = Batch(self.torch)

    def _admit(self, running: int) -> list[Row | None]:
        """Newcomers for the next step: without waiting when rows are running, else the
        first to come and whoever follows within `wait_ms`."""
        room = self.max_batch_size - running
        rows: list[Row | None] = []
        if running == 0:
            rows.append(self.incoming.get())
            deadline = time.monotonic() + self.wait
            while len(rows) < room and (left := deadline - time.monotonic()) > 0:
                try:
                    rows.append(self.incoming.get(timeout=left))
                except queue.Empty:
                    break
        while len(rows) < room:
            try:
                rows.append(self.incoming.get_nowait())
            except queue.Empty:
                break
        return rows

    def _gone(self, row: Row) -> bool:
        """A row whose client left before its first token: answered as cancelled."""
        if row.cancelled is None or not row.cancelled.is_set():
            return False
        row.watcher.reason = "cancelled"
        self._answer(row)
        return True

    def _prefill(self, batch: Batch, rows: list[Row]) -> None:
        torch = self.torch
        device = self.engine.device
        length = max(len(row.prompt) for row in rows)
        ids = torch.full((len(rows), length), self.pad, dtype=torch.long)
        mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, length - len(row.prompt) :] = torch.tensor(row.prompt)
            mask[i, length - len(row.prompt) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        started = time.perf_counter()
        out = self.engine.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **self.last_only,
        )
        picks = self._choose(out.logits[:, -1, :], rows)
        if self.observe is not None:
            self.observe(len(rows), time.perf_counter() - started)
        kept = self._advance(rows, picks)
        if not kept:
            return
        index = torch.tensor(kept, device=device)
        cache = cache_of(out)
        for layer in cache.layers:
            layer.keys, layer.values = layer.keys[index], layer.values[index]
        pending = torch.tensor([picks[i] for i in kept], device=device)
        next_positions = mask[index].sum(dim=1)
        batch.merge([rows[i] for i in kept], cache, mask[index], next_positions, pending)

    def _step(self, batch: Batch) -> None:
        torch = self.torch
        ones = torch.ones((len(batch.rows), 1), dtype=batch.mask.dtype, device=batch.mask.device)
        batch.mask = torch.cat([batch.mask, ones], dim=1)
        started = time.perf_counter()
        out = self.engine.model(
            input_ids=batch.pending[:, None],
            attention_mask=batch.mask,
            position_ids=batch.positions[:, None],
            **{self.cache_keyword: batch.cache},
            use_cache=True,
        )
        batch.cache = cache_of(out)
        picks = self._choose(out.logits[:, -1, :], batch.rows)
        if self.observe is not None:
            self.observe(len(batch.rows), time.perf_counter() - started)
        batch.positions = batch.positions + 1
        kept = self._advance(batch.rows, picks)
        batch.pending = torch.tensor(picks, device=batch.pending.device)
        batch.keep(kept)

    def _advance(self, rows: list[Row], picks: list[int]) -> list[int]:
        """Each row takes its token; the indexes of the rows that go on."""
        kept = []
        with self.engine.lock:  # decoding uses the tokenizer
            for i, (row, token) in enumerate(zip(rows, picks, strict=True)):
                row.new.append(token)
                if self._finished(row, token):
                    self._answer(row)
                else:
                    kept.append(i)
        return kept

    def _finished(self, row: Row, token: int) -> bool:
        if row.cancelled is not None and row.cancelled.is_set():
            row.watcher.reason = "cancelled"
            return True
        if row.watcher.update(row.new, final=False):
            return True
        return token in self.eos or len(row.new) >= row.request.max_tokens

    def _answer(self, row: Row) -> None:
        row.watcher.finish(row.new)
        generated = len(row.new)
        result = {
            "text": row.watcher.text,
            "prompt_tokens": len(row.prompt),
            "tokens_generated": generated,
            "finish_reason": row.watcher.finish_reason(generated, row.request.max_tokens),
        }
        if not row.answer.done():
            row.answer.set_result(result)

    def _choose(self, logits: Any, rows: list[Row]) -> list[int]:
        """The next token of each row: the argmax, or a sample under its own settings."""
        torch = self.torch
        logits = logits.float()
        if self.repetition != 1.0:
            logits = logits.clone()
            for i, row in enumerate(rows):
                seen = torch.tensor(row.prompt + row.new, device=logits.device).unique()
                scores = logits[i, seen]
                penalised = torch.where(
                    scores < 0, scores * self.repetition, scores / self.repetition
                )
                logits[i, seen] = penalised
        picks: list[int] = logits.argmax(dim=-1).tolist()
        sampled = [i for i, row in enumerate(rows) if row.sampled()]
        if not sampled:
            return picks
        index = torch.tensor(sampled, device=logits.device)
        temperature = torch.tensor(
            [interface.temperature_of(rows[i].request) for i in sampled], device=logits.device
        )
        top_p = torch.tensor([rows[i].request.top_p for i in sampled], device=logits.device)
        scores = logits[index] / temperature[:, None]
        k = self.top_k if 0 < self.top_k < scores.shape[1] else scores.shape[1]
        scores, tokens = scores.topk(k, dim=-1)  # sorted, highest first
        probs = scores.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # the mass ranked above each token
        outside = before >= top_p[:, None]
        outside[:, 0] = False  # the likeliest always stays (a top_p of 1e-50 is 0 in float32)
        probs = probs.masked_fill(outside, 0.0)
        for j, i in enumerate(sampled):
            chosen = torch.multinomial(probs[j], 1, generator=rows[i].generator)
            picks[i] = int(tokens[j, chosen])
        return picks
