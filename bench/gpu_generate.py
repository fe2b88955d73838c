"""Text generation on a GPU: both engines, served against direct, at concurrency 1, 16, 64.

One command on a GPU machine: `python bench/gpu_generate.py` (about 10 minutes on one
GPU). The model has GPT-2 small's shape with random weights and a word-level tokenizer
(`generate.make`): every request is a 32-token prompt generating `--tokens` tokens
(default 128), greedy, and runs full length. For each engine:

- transformers: `endpointgen serve` of the spec with `batching: {max_batch_size: 64}`,
  against `model.generate` on a batch of the same prompts in one process;
- vLLM (when `vllm` is installed and there is a CUDA GPU): the spec with
  `engine: vllm`, against vLLM's own offline `LLM.generate` of the same prompts.

Each row is served tokens/s / direct tokens/s at one concurrency. Targets: vLLM at 64
>= 0.9 (what endpointgen's HTTP, auth and streaming cost on top of vLLM); transformers
at 16 >= 0.8. `--quick` uses few tokens and skips 64, so the transformers half finishes
on a CPU. Results go to stdout and bench/results/gpu_generate.json.

`--smoke` (what `bench/run.py --smoke` runs, in CI): imports this file, parses its
arguments and builds both engines' specs; without a CUDA GPU it then says so and skips
the rest, exit 0. On a GPU it also runs both engines with 4 tokens at concurrency 1 and
2, figures not judged (bench/results/gpu_generate_smoke.json).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from generate import PROMPT_TOKENS, make
from harness import (
    API_KEY,
    BENCH,
    Result,
    free_port,
    load_spec,
    loadgen,
    ratio_result,
    run_worker,
    serve_spec,
    write_spec,
)

TARGETS = {("vllm", 64): 0.9, ("transformers", 16): 0.8}


def spec_for(model_dir: str, engine: str) -> dict[str, Any]:
    """specs/gpt2.yaml on the model, without its rate limit, on `engine`."""
    spec = load_spec("gpt2.yaml")
    spec["name"] = f"bench-gpu-{engine}"
    spec["model"] = {"id": model_dir, "task": "text-generation", "dtype": "float16"}
    spec.pop("rate_limit", None)
    spec["scaling"] = {"max_inputs": 64}
    if engine == "vllm":
        spec.pop("batching", None)
        spec["model"] |= {"engine": "vllm", "vllm": {"gpu_memory_utilization": 0.5}}
    else:
        spec["batching"] = {"max_batch_size": 64, "wait_ms": 5}
    return spec


def served(
    made: dict[str, Any], engine: str, tokens: int, levels: list[int], logs: Path
) -> dict[int, Any]:
    """Served tokens/s at each concurrency: `rounds` closed-loop requests per client."""
    body = {"prompt": made["prompt"], "max_tokens": tokens, "temperature": 0}
    out: dict[int, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as folder:
        spec = write_spec(Path(folder), spec_for(made["path"], engine))
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
        with serve_spec(spec, port, logs / f"gpu-generate-{engine}.log"):
            loadgen({**base, "connections": 4, "per_connection": 1})  # warm-up
            for concurrency in levels:
                rounds = 3 if concurrency == 1 else 2
                result = loadgen({**base, "connections": concurrency, "per_connection": rounds})
                if result["ok"] != concurrency * rounds:
                    raise RuntimeError(f"{engine}: generate failed: {result['statuses']}")
                out[concurrency] = result
    return out


def direct(engine: str, path: str, prompt: str, tokens: int, levels: list[int]) -> dict[str, Any]:
    """Tokens/s of the engine itself on batches of the prompt (worker process)."""
    import torch

    rates: dict[str, float] = {}
    if engine == "vllm":
        from vllm import LLM, SamplingParams

        llm = LLM(model=path, dtype="float16", gpu_memory_utilization=0.5)
        params = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
        llm.generate([prompt] * 2, params)  # warm-up
        for n in levels:
            began = time.perf_counter()
            outputs = llm.generate([prompt] * n, params, use_tqdm=False)
            made = sum(len(o.outputs[0].token_ids) for o in outputs)
            rates[str(n)] = made / (time.perf_counter() - began)
        return {"tokens_per_s": rates, "gpu": torch.cuda.get_device_name()}
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
    options = {"max_new_tokens": tokens, "min_new_tokens": tokens, "do_sample": False}
    with torch.inference_mode():  # warm-up
        warm = tokenizer([prompt], return_tensors="pt").to(device)
        model.generate(**warm, max_new_tokens=2, do_sample=False, pad_token_id=0)
    for n in levels:
        inputs = tokenizer([prompt] * n, return_tensors="pt").to(device)
        if device == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(**inputs, **options, pad_token_id=0)
        if device == "cuda":
            torch.cuda.synchronize()
        rates[str(n)] = (output.shape[1] - PROMPT_TOKENS) * n / (time.perf_counter() - began)
    gpu = torch.cuda.get_device_name() if device == "cuda" else None
    return {"tokens_per_s": rates, "device": device, "gpu": gpu}


def vllm_here() -> str | None:
    """Why vLLM cannot run here, or None."""
    if importlib.util.find_spec("vllm") is None:
        return "vllm is not installed"
    import torch

    return None if torch.cuda.is_available() else "no CUDA GPU"


def specs_build() -> None:
    """Both engines' specs through the compiler, as `endpointgen serve` would take them."""
    from endpointgen.compiler import pipeline

    with tempfile.TemporaryDirectory(prefix="bench-gpu-specs-") as folder:
        for engine in ("transformers", "vllm"):
            out = Path(folder) / engine
            pipeline.build(write_spec(out, spec_for(str(Path(folder) / "model"), engine)), out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few tokens: a CPU smoke test")
    parser.add_argument("--tokens", type=int, help="new tokens per request")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="check the imports, arguments and specs; on a GPU, a tiny run too",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.smoke:
        import torch

        specs_build()
        if not torch.cuda.is_available():
            print(
                "gpu_generate --smoke: imports, arguments and both engines' specs checked; "
                "no CUDA GPU here, so nothing was served or measured (skipped)"
            )
            return 0
    tokens = args.tokens or (4 if args.smoke else 8 if args.quick else 128)
    levels = [1, 2] if args.smoke else [1, 16] if args.quick else [1, 16, 64]
    results_dir = BENCH / "results"
    logs = results_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    skipped = vllm_here()
    engines = ["transformers"] + ([] if skipped else ["vllm"])
    rows: list[Result] = []
    report: dict[str, Any] = {"platform": platform.platform(), "tokens_per_request": tokens}
    with tempfile.TemporaryDirectory(prefix="bench-gpt2-124m-") as folder:
        print("making a GPT-2 124M shaped model with random weights ...", flush=True)
        made = make(Path(folder) / "gpt2-124m")
        for engine in engines:
            print(f"{engine}: direct ...", flush=True)
            level_args = [str(n) for n in levels]
            args_ = ["direct", engine, made["path"], made["prompt"], str(tokens), *level_args]
            baseline = run_worker("gpu_generate.py", *args_, timeout=1800)
            print(f"{engine}: served, concurrency {levels} ...", flush=True)
            http = served(made, engine, tokens, levels, logs)
            report[engine] = {"direct": baseline, "served": http}
            for n in levels:
                rows.append(
                    ratio_result(
                        f"{engine}-c{n}",
                        http[n]["summed_per_s"],
                        baseline["tokens_per_s"][str(n)],
                        "tok/s",
                        at_least=TARGETS.get((engine, n)),
                        details={"latency_ms": http[n]["latency_ms"]},
                    )
                )
    if skipped:
        print(f"\nvLLM skipped: {skipped}")
        report["vllm_skipped"] = skipped
    for r in rows:
        verdict = "INFO" if r.passed is None else "PASS" if r.passed else "FAIL"
        print(
            f"{r.name}: served {r.measured:,.1f} tok/s, direct {r.baseline:,.1f} tok/s,"
            f" ratio {r.ratio:.2f}  {r.target or '(no target)'}  {verdict}"
        )
    report["results"] = [
        {"name": r.name, "measured": r.measured, "baseline": r.baseline}
        | {"ratio": r.ratio, "target": r.target, "details": r.details}
        for r in rows
    ]
    name = "gpu_generate_smoke.json" if args.smoke else "gpu_generate.json"
    (results_dir / name).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if args.smoke or all(r.passed is not False for r in rows) else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "direct":
        engine, path, prompt, tokens, *levels = sys.argv[2:]
        print(json.dumps(direct(engine, path, prompt, int(tokens), [int(n) for n in levels])))
    else:
        sys.exit(main())
