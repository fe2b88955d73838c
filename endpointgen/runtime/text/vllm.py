"""vLLM's engine behind the same routes: `generate`, its stream, and the OpenAI routes.

`model: {engine: vllm}` runs vLLM's `AsyncLLM` in the model's container, in an event
loop of its own thread: vLLM batches and schedules the generations (continuous
batching, paged attention), while auth, CORS, rate limits, request ids, limits and
errors stay endpointgen's. It implements `interface.TextEngine`, and
`tests/runtime/test_engine_contract.py` holds it to that wherever a GPU is present.

vllm is imported only here, when the model loads, and only in a container that has a
CUDA GPU: `endpointgen serve` elsewhere runs the same app on transformers.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from endpointgen.runtime import http
from endpointgen.runtime.text.interface import (
    GREEDY_BELOW,
    Generation,
    OnText,
    TextBase,
    temperature_of,
)

__all__ = ["VllmGenerator"]


class VllmGenerator(TextBase):
    """One model on vLLM. Loading blocks until the weights are on the GPU(s)."""

    def __init__(
        self,
        source: str | Path,
        revision: str | None,
        dtype: str,
        *,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        tensor_parallel_size: int | None = None,
        quantization: str | None = None,
        enforce_eager: bool = False,
    ) -> None:
        import torch
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        given = {
            "max_model_len": max_model_len,
            "gpu_memory_utilization": gpu_memory_utilization,
            "quantization": quantization,
        }
        args = AsyncEngineArgs(
            model=str(source),
            revision=revision,
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size or max(1, torch.cuda.device_count()),
            enforce_eager=enforce_eager,
            **{key: value for key, value in given.items() if value is not None},
        )
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="vllm", daemon=True)
        self.thread.start()

        async def make() -> Any:  # in our loop, so vLLM's output handler runs in it
            engine = AsyncLLM.from_engine_args(args)
            tokenizer = engine.get_tokenizer()
            return engine, await tokenizer if inspect.isawaitable(tokenizer) else tokenizer

        made = asyncio.run_coroutine_threadsafe(make(), self.loop).result()
        self.engine, self.tokenizer = made
        self.max_model_len = int(self.engine.model_config.max_model_len)
        self.lock = threading.Lock()

    def context_length(self) -> int | None:
        return self.max_model_len

    def start(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> Future[dict[str, Any]]:
        work = self._generate(request, on_text, cancelled)
        return asyncio.run_coroutine_threadsafe(work, self.loop)

    def generate(
        self,
        request: Generation,
        on_text: OnText | None = None,
        cancelled: threading.Event | None = None,
    ) -> dict[str, Any]:
        return self.start(request, on_text, cancelled).result()

    def health(self) -> str | None:
        if self.engine.errored:
            return "the vLLM engine stopped"
        return None

    def close(self) -> None:
        self.engine.shutdown()
        self.loop.call_soon_threadsafe(self.loop.stop)

    async def _generate(
        self, request: Generation, on_text: OnText | None, cancelled: threading.Event | None
    ) -> dict[str, Any]:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        greedy = temperature_of(request) < GREEDY_BELOW
        params = SamplingParams(
            max_tokens=request.max_tokens,
            temperature=0.0 if greedy else temperature_of(request),
            top_p=1.0 if greedy else request.top_p,
            seed=request.seed,
            stop=request.stop_list() or None,
            output_kind=RequestOutputKind.CUMULATIVE,
        )
        request_id = uuid.uuid4().hex
        text, last, gone = "", None, False
        async for output in self.engine.generate(request.prompt, params, request_id):
            last = output
            now = output.outputs[0].text
            if on_text is not None and len(now) > len(text) and now.startswith(text):
                on_text(now[len(text) :])
            text = now
            if cancelled is not None and cancelled.is_set() and not output.finished:
                await self.engine.abort(request_id)
                gone = True
                break
        if last is None:
            raise RuntimeError("vLLM returned no output")
        completion = last.outputs[0]
        reason = completion.finish_reason
        if gone or reason == "abort":
            finish = "cancelled"
        elif reason == "length":
            finish = "length"
        elif reason == "stop":
            finish = "stop"
        else:  # "error", or None: the request did not finish
            http.log.error("vLLM request %s ended with %r", request_id, reason)
            raise RuntimeError(f"vLLM ended the generation with {reason!r}")
        return {
            "text": text,
            "prompt_tokens": len(last.prompt_token_ids or ()),
            "tokens_generated": len(completion.token_ids),
            "finish_reason": finish,
        }
