"""Batched text generation on this CPU, with GPT-2 small (random weights, real 124M shape).

The model has GPT2Config()'s shape: 12 layers, 768 wide, 50257 tokens. Each request is
a 32-token prompt generating 64 tokens, greedy; the random model almost never picks its
end-of-text token, so every request runs full length. Three ratios, each against a
baseline from the same run:

- `generate-batching`: served tokens/s at concurrency 16 with `batching` / the same
  server without it (one generation at a time). Target ≥ 4.
- `generate-served-vs-direct`: the batched server at concurrency 16 / the same 16
  prompts through `model.generate` in one batch, in one process, no HTTP. Target ≥ 0.8.
- `generate-ttft-c16`: the median time to the first streamed token when 16 streams
  start at once / one stream alone. Target ≤ 2.

Run: `python bench/run.py generate` (about 3 minutes on 2 cores). A smoke run
(`bench/run.py --smoke`) serves a one-layer, 32-wide model of the same vocabulary to 4
clients generating 4 tokens.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    API_KEY,
    Result,
    free_port,
    load_spec,
    loadgen,
    ratio_result,
    run_worker,
    serve_spec,
    sized,
    write_spec,
)

CONCURRENCY = sized(16, 4)
PROMPT_TOKENS = 32
NEW_TOKENS = sized(64, 4)
TTFT_ALONE = sized(5, 1)  # streams started one at a time, for the c1 time to first token


def make(folder: Path) -> dict[str, Any]:
    """The model, and a prompt of exactly PROMPT_TOKENS tokens (worker process).

    The tokenizer is word-level with one word per id of GPT-2's 50257, so every token the
    random model picks decodes to text and streams as an event.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    # GPT-2 124M: 12 layers, 768 wide, 1024 positions; a smoke run's is 1 layer, 32 wide.
    config = sized(GPT2Config(), GPT2Config(n_layer=1, n_embd=32, n_head=2))
    words = {f"w{i}": i for i in range(config.vocab_size - 1)}
    words["<|endoftext|>"] = config.vocab_size - 1
    tok = Tokenizer(models.WordLevel(words, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = fast.eos_token_id
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    prompt = " ".join(f"w{7 * i + 11}" for i in range(PROMPT_TOKENS))
    assert len(fast(prompt)["input_ids"]) == PROMPT_TOKENS
    return {"path": str(folder), "prompt": prompt}


def direct(path: Path, prompt: str) -> dict[str, Any]:
    """`model.generate` on the 16 prompts in one batch (worker process): best of two."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    inputs = tokenizer([prompt] * CONCURRENCY, return_tensors="pt")
    options = {"max_new_tokens": NEW_TOKENS, "do_sample": False, "pad_token_id": 0}
    with torch.inference_mode():
        model.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=0)
    prefill = {}  # one forward pass over the prompts: the floor of a first token
    for rows in (1, CONCURRENCY):
        times = []
        for _ in range(3):
            began = time.perf_counter()
            with torch.inference_mode():
                model(input_ids=inputs["input_ids"][:rows], logits_to_keep=1)
            times.append(time.perf_counter() - began)
        prefill[rows] = min(times)
    rates = []
    for _ in range(2):
        began = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, **options)
        elapsed = time.perf_counter() - began
        rates.append((output.shape[1] - PROMPT_TOKENS) * CONCURRENCY / elapsed)
    return {
        "tokens_per_s": max(rates),
        "rates": rates,
        "prefill_ms": {rows: 1000 * seconds for rows, seconds in prefill.items()},
    }


def spec_for(model_dir: str, batching: bool) -> dict[str, Any]:
    """specs/gpt2.yaml on the model, without its rate limit; batching on or off."""
    spec = load_spec("gpt2.yaml")
    spec["name"] = "bench-generate"
    spec["model"]["id"] = model_dir
    spec.pop("rate_limit", None)
    spec.pop("batching", None)
    # All the clients' requests at once (the spec's 8 would refuse a batch of 16).
    spec.setdefault("scaling", {})["max_inputs"] = CONCURRENCY
    if batching:
        spec["batching"] = {"max_batch_size": CONCURRENCY, "wait_ms": 5}
    return spec


def served(folder: Path, made: dict[str, Any], batching: bool, logs: Path) -> dict[str, Any]:
    """Tokens/s at concurrency 16; with batching, time to first token at 1 and 16."""
    spec = write_spec(folder / ("on" if batching else "off"), spec_for(made["path"], batching))
    port = free_port()
    body = {"prompt": made["prompt"], "max_tokens": NEW_TOKENS, "temperature": 0}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    base = {"host": "127.0.0.1", "port": port, "headers": headers}
    load = {
        **base,
        "mode": "load",
        "method": "POST",
        "path": "/generate",
        "bodies": [body],
        "sum_field": "tokens_generated",
    }
    streams = {**base, "mode": "streams", "stream_path": "/generate/stream", "stream_body": body}
    out: dict[str, Any] = {}
    name = "generate-batched" if batching else "generate-unbatched"
    with serve_spec(spec, port, logs / f"{name}.log"):
        loadgen({**load, "connections": 2, "per_connection": 1})  # warm-up
        rounds = 2 if batching else 1
        result = loadgen({**load, "connections": CONCURRENCY, "per_connection": rounds})
        if result["ok"] != CONCURRENCY * rounds:
            raise RuntimeError(f"generate failed: {result['statuses']}")
        if result["summed"] != CONCURRENCY * rounds * NEW_TOKENS:
            raise RuntimeError(f"short generations: {result['summed']} tokens")
        out["load"] = result
        if batching:
            out["ttft_c1"] = loadgen({**streams, "connections": 1, "rounds": TTFT_ALONE})
        rounds = 2 if batching else 1
        out["ttft_c16"] = loadgen({**streams, "connections": CONCURRENCY, "rounds": rounds})
    return out


def run(logs: Path) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as folder:
        # One worker process makes the model, then times `model.generate` on it.
        made = run_worker("generate.py", str(Path(folder) / "gpt2-124m"))
        baseline = made["direct"]
        on = served(Path(folder), made, True, logs)
        off = served(Path(folder), made, False, logs)
    batched = on["load"]["summed_per_s"]
    prefill = baseline["prefill_ms"]
    return [
        ratio_result(
            "generate-batching",
            batched,
            off["load"]["summed_per_s"],
            "tok/s",
            at_least=4.0,
            details={"c16_latency_ms_batched": on["load"]["latency_ms"]},
        ),
        ratio_result(
            "generate-served-vs-direct",
            batched,
            baseline["tokens_per_s"],
            "tok/s",
            at_least=0.8,
            details={"direct_rates": baseline["rates"]},
        ),
        ratio_result(
            "generate-ttft-c16",
            on["ttft_c16"]["ttft_ms"],
            on["ttft_c1"]["ttft_ms"],
            "ms",
            at_most=2.0,
            details={
                "c16_ms_sorted": sorted(round(t) for t in on["ttft_c16"]["ttft_all_ms"]),
                "c1_ms_sorted": sorted(round(t) for t in on["ttft_c1"]["ttft_all_ms"]),
                "c16_unbatched_ms": round(off["ttft_c16"]["ttft_ms"]),
                # Every stream needs its prompt read before its first token: one forward
                # pass over 16 prompts / over one is the floor of this ratio here.
                "prefill_ms": {k: round(v) for k, v in prefill.items()},
                "prefill_16_over_1": round(prefill[str(CONCURRENCY)] / prefill["1"], 2),
            },
        ),
    ]


if __name__ == "__main__":  # generate.py FOLDER: the model, and its direct figures
    made = make(Path(sys.argv[1]))
    print(json.dumps({**made, "direct": direct(Path(made["path"]), made["prompt"])}))
