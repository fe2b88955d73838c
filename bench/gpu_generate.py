"""Text generation on a GPU: tokens/s through the generated app against model.generate.

One command on a GPU machine: `python bench/gpu_generate.py`. It makes a model shaped
like GPT-2 124M (GPT2Config() defaults, random weights; a byte-level BPE tokenizer
trained on a few lines, the config's vocabulary kept at GPT-2's 50257), serves it with
`endpointgen serve` (the app picks CUDA when there is one) and measures generated
tokens/s at concurrency 1 and 16, then calls model.generate in this process on the same
device and dtype: one prompt at a time, then 16 prompts in one batch.

Greedy decoding with the same prompt makes both sides produce the same tokens. The
generated app runs one generation at a time, so at concurrency 16 it is compared with
a batched generate: that ratio says what batching generation would be worth.

`--quick` uses few tokens and requests so it finishes on a CPU (a smoke test).
Results go to stdout and bench/results/gpu_generate.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import (
    API_KEY,
    BENCH,
    Result,
    free_port,
    load_spec,
    loadgen,
    ratio_result,
    serve_spec,
    write_spec,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Modal runs your code in the cloud with GPUs.",
    "Serving models over HTTP is easy when the spec is small.",
    "Tokens stream back to the client one by one.",
    "0123456789 !?.,;:'\"()[]{}<>/\\|@#$%^&*-+=_~`",
] * 4
PROMPT = "The quick brown fox"
GPT2_VOCAB = 50257
TARGET_C1 = 0.80  # HTTP, JSON and the per-token stop check may cost up to a fifth


def make_model(path: Path, seed: int = 0) -> Path:
    """GPT-2 124M shaped, random weights; the tokenizer is tiny, the vocabulary is not."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
    )
    torch.manual_seed(seed)
    # GPT2Config() is GPT-2 124M: 12 layers, 768 wide, 1024 positions, 50257 tokens.
    # Its bos/eos stay 50256, an id a random model rarely picks, so runs go full length.
    config = GPT2Config()
    assert config.vocab_size == GPT2_VOCAB
    model = GPT2LMHeadModel(config)
    model.generation_config.pad_token_id = fast.eos_token_id
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    fast.save_pretrained(path)
    return path


def spec_for(model_dir: Path) -> dict[str, Any]:
    """specs/gpt2.yaml on the random model: float16 (the app loads float32 on a CPU)."""
    spec = load_spec("gpt2.yaml")
    spec["name"] = "bench-gpu-generate"
    spec["model"] = {"id": str(model_dir), "task": "text-generation", "dtype": "float16"}
    spec.pop("rate_limit", None)
    spec["routes"] = [r for r in spec["routes"] if not r.get("stream")]
    return spec


def served(model_dir: Path, tokens: int, plan: dict[int, int], logs: Path) -> dict[int, Any]:
    """Tokens/s through HTTP for each concurrency in `plan` (concurrency -> requests each)."""
    body = {"prompt": PROMPT, "max_tokens": tokens, "temperature": 0}
    out: dict[int, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as folder:
        spec = write_spec(Path(folder), spec_for(model_dir))
        port = free_port()
        base = {
            "mode": "load",
            "host": "127.0.0.1",
            "port": port,
            "method": "POST",
            "path": "/generate",
            "headers": {"Authorization": f"Bearer {API_KEY}"},
            "bodies": [body],
            "sum_field": "tokens_generated",
        }
        with serve_spec(spec, port, logs / "gpu-generate.log"):
            loadgen({**base, "connections": 2, "per_connection": 1})  # warm-up
            for concurrency, each in plan.items():
                result = loadgen({**base, "connections": concurrency, "per_connection": each})
                if result["ok"] != concurrency * each:
                    raise RuntimeError(f"generate failed: {result['statuses']}")
                out[concurrency] = result
    return out


def in_process(model_dir: Path, tokens: int, plan: dict[int, int]) -> dict[str, Any]:
    """model.generate directly: batches of `concurrency` prompts, `each` times over."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype).to(device).eval()
    eos = model.generation_config.eos_token_id

    def generate(batch: int) -> int:
        inputs = tokenizer([PROMPT] * batch, return_tensors="pt", padding=True).to(device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        new = output[:, inputs["input_ids"].shape[1] :].tolist()
        return sum(row.index(eos) + 1 if eos in row else len(row) for row in new)

    generate(1)  # warm-up
    out: dict[str, Any] = {"device": device, "dtype": str(dtype).removeprefix("torch.")}
    if device == "cuda":
        out["gpu"] = torch.cuda.get_device_name()
    for concurrency, each in plan.items():
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        produced = sum(generate(concurrency) for _ in range(each))
        if device == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - began
        out[str(concurrency)] = {"tokens": produced, "tokens_per_s": produced / elapsed}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few tokens: a CPU smoke test")
    parser.add_argument("--tokens", type=int, help="new tokens per request")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokens = args.tokens or (8 if args.quick else 128)
    # concurrency -> requests per client; enough work for steady numbers on a GPU.
    plan = {1: 2, 16: 1} if args.quick else {1: 8, 16: 4}
    results_dir = BENCH / "results"
    logs = results_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-gpt2-124m-") as folder:
        print("making a GPT-2 124M shaped model with random weights ...", flush=True)
        model_dir = make_model(Path(folder) / "gpt2-124m")
        print(f"serving it; {tokens} tokens per request, {plan} ...", flush=True)
        http = served(model_dir, tokens, plan, logs)
        print("model.generate in this process ...", flush=True)
        direct = in_process(model_dir, tokens, plan)
    rows: list[Result] = []
    for concurrency in plan:
        got = http[concurrency]["summed_per_s"]
        ceiling = direct[str(concurrency)]["tokens_per_s"]
        details = {
            "served_tokens": http[concurrency]["summed"],
            "inprocess_tokens": direct[str(concurrency)]["tokens"],
            "served_latency_ms": http[concurrency]["latency_ms"],
        }
        rows.append(
            ratio_result(
                f"generate-c{concurrency}",
                got,
                ceiling,
                "tok/s",
                at_least=TARGET_C1 if concurrency == 1 else None,
                details=details,
            )
        )
    c16_vs_c1 = http[16]["summed_per_s"] / http[1]["summed_per_s"]
    print(f"\ndevice: {direct.get('gpu', direct['device'])} ({direct['dtype']})")
    for r in rows:
        verdict = "INFO" if r.passed is None else "PASS" if r.passed else "FAIL"
        print(
            f"{r.name}: served {r.measured:,.1f} tok/s, in-process {r.baseline:,.1f} tok/s,"
            f" ratio {r.ratio:.2f}  {r.target or '(no target)'}  {verdict}"
        )
    print(f"served c16/c1: {c16_vs_c1:.2f} (1.0 means requests run one after another)")
    report = {
        "device": direct,
        "platform": platform.platform(),
        "tokens_per_request": tokens,
        "plan": plan,
        "served_c16_over_c1": c16_vs_c1,
        "results": [
            {"name": r.name, "measured": r.measured, "baseline": r.baseline}
            | {"ratio": r.ratio, "target": r.target, "details": r.details}
            for r in rows
        ],
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "gpu_generate.json").write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
