"""Batching for rerank, zero-shot classification, named entities and image embeddings,
32 clients at once.

Each task's model has the shape of the models people serve for it, with random weights:
for the text tasks all-MiniLM-L6-v2 (6 layers, 384 wide, its WordPiece tokenizer;
`cross-encoder/ms-marco-MiniLM-L-6-v2` has this shape) with the task's head; for image
embeddings CLIP ViT-B/32. One app has the four models, each with its route, and
`endpointgen serve` serves it twice, side by side: with `batching` for each model (room
for all 32 requests: `max_batch_size` 32, or 128 for rerank, whose items are its 4
passages; `wait_ms` 5) and without it (one model call per request). One route at a time
is loaded, the other models idle: 32 connections send requests back to back, a rerank of
4 passages, a text against 3 labels, a text for its entities, a 224x224 PNG upload. The
ratio is batched / unbatched requests/s; target ≥ 2.

Beside each, for information, the model's own ceiling (`task-<task>-model-ceiling`): in
one process, with no server, the engine called once on 32 requests' items against 32
calls of one request's. No batcher can do better than that. On a CPU, where a bigger
matrix product is barely cheaper per row, it is what bounds the served ratio for the
models whose time is all in their forward pass (rerank, CLIP); on a GPU it is far larger.

A smoke run (`bench/run.py --smoke`) does all of this with one-layer models, 4 clients
and 8 requests.
"""

from __future__ import annotations

import json
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from harness import (
    Result,
    free_port,
    loadgen,
    ratio_result,
    run_worker,
    serve_spec,
    sized,
    write_spec,
)

CONNECTIONS = sized(32, 4)
REQUESTS = sized(480, 8)
CEILING_ROUNDS = sized(5, 1)
PASSAGES = [
    "The quick brown fox jumps over the lazy dog.",
    "Modal runs your code in the cloud with GPUs.",
    "Tokens stream back to the client one by one.",
    "A spec describes routes, auth, rate limits and CORS.",
]
# task -> (route action, one request's body)
TASKS: dict[str, tuple[str, dict[str, Any]]] = {
    "rerank": ("rerank", {"query": "Where does the code run?", "texts": PASSAGES}),
    "zero-shot-classification": (
        "classify",
        {"text": PASSAGES[1], "labels": ["cloud", "animals", "sports"]},
    ),
    "token-classification": ("classify", {"text": PASSAGES[3]}),
    "image-text-embeddings": ("upload", {}),  # a 224x224 PNG, as multipart (`upload_body`)
}


def photo_png() -> bytes:
    """A 224x224 photo-like PNG."""
    import io
    import random

    from PIL import Image

    rng = random.Random(0)
    image = Image.new("RGB", (224, 224))
    image.putdata([(rng.randrange(256), rng.randrange(256), 128) for _ in range(224 * 224)])
    png = io.BytesIO()
    image.save(png, format="PNG")
    return png.getvalue()


def upload_body() -> dict[str, str]:
    """A 224x224 photo-like PNG as a multipart/form-data body, for loadgen."""
    import base64

    boundary = "benchboundary"
    data = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="photo.png"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + photo_png()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    kind = f"multipart/form-data; boundary={boundary}"
    return {"content_type": kind, "base64": base64.b64encode(data).decode()}


def make(task: str, folder: Path) -> str:
    """The task's head on all-MiniLM-L6-v2's shape and tokenizer, random weights (worker
    process): the shape of `cross-encoder/ms-marco-MiniLM-L-6-v2`, with real WordPiece
    lengths."""
    import torch
    from harness import minilm_dir
    from transformers import (
        AutoConfig,
        AutoTokenizer,
        BertForSequenceClassification,
        BertForTokenClassification,
    )

    if task == "image-text-embeddings":
        return make_clip(folder)
    config = AutoConfig.from_pretrained(minilm_dir())
    config.num_hidden_layers = sized(config.num_hidden_layers, 1)  # 1 layer in a smoke run
    labels = {
        "rerank": ["score"],
        "zero-shot-classification": ["contradiction", "neutral", "entailment"],
        "token-classification": ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"],
    }[task]
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    torch.manual_seed(0)
    kind = BertForTokenClassification if task == "token-classification" else None
    model = (kind or BertForSequenceClassification)(config)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(folder)
    return str(folder)


def make_clip(folder: Path) -> str:
    """CLIP ViT-B/32's shape (12-layer 768-wide vision tower, 32-pixel patches, 512-wide
    text tower), random weights, MiniLM's tokenizer; in a smoke run each tower is one
    layer 32 wide."""
    import torch
    from harness import minilm_dir
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())
    torch.manual_seed(0)
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1}
    tower = sized({}, {**small, "num_attention_heads": 2})
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "eos_token_id": tokenizer.sep_token_id,
            **tower,
        },
        vision_config={"image_size": 224, "patch_size": 32, **tower},
        projection_dim=sized(512, 32),
    )
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor().save_pretrained(folder)
    return str(folder)


def items(task: str) -> list[Any]:
    """One request's items as `tasks.Model` hands them to the engine."""
    body = TASKS[task][1]
    if task == "rerank":
        return [(body["query"], text) for text in body["texts"]]
    if task == "zero-shot-classification":
        return [(body["text"], tuple(body["labels"]), False, "This example is {}.")]
    if task == "token-classification":
        return [body["text"]]
    from endpointgen.runtime.engines import open_image

    return [open_image(photo_png())]


def ceiling(task: str, model: str, rounds: int = CEILING_ROUNDS) -> dict[str, float]:
    """The engine on 32 requests' items at once, against 32 calls of one request's: each
    way timed `rounds` times, alternating, in this process (worker)."""
    import time

    from endpointgen.runtime.engines import ENGINES

    engine = ENGINES[task](model, None, "auto")
    one = items(task)
    engine(one * CONNECTIONS)  # warm-up
    alone, together = [], []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(CONNECTIONS):
            engine(one)
        alone.append(time.perf_counter() - started)
        started = time.perf_counter()
        engine(one * CONNECTIONS)
        together.append(time.perf_counter() - started)
    return {"batched_s": sorted(together)[rounds // 2], "alone_s": sorted(alone)[rounds // 2]}


def app_spec(models: dict[str, str], batching: bool) -> dict[str, Any]:
    """One app with every task's model and a route for each (`/<task>`), all with
    `batching` or none: room for every client's request, where a rerank's items are its
    passages."""
    spec: dict[str, Any] = {
        "name": f"bench-tasks-{'batched' if batching else 'unbatched'}",
        "models": {},
        "routes": [{"path": "/health", "action": "health"}],
    }
    for task, model in models.items():
        action, body = TASKS[task]
        key = task.replace("-", "_")
        spec["models"][key] = {"id": model, "task": task}
        if batching:
            items = len(body["texts"]) if action == "rerank" else 1
            spec["models"][key]["batching"] = {"max_batch_size": CONNECTIONS * items, "wait_ms": 5}
        route = {"path": f"/{task}", "method": "POST", "action": action, "model": key}
        if action == "upload":
            route["processor"] = "image-embeddings"
        spec["routes"].append({**route, "public": True})
    return spec


def hammer(port: int, task: str) -> dict[str, Any]:
    """A warm-up, then REQUESTS requests to the task's route from CONNECTIONS clients."""
    action, body = TASKS[task]
    load = {
        "mode": "load",
        "host": "127.0.0.1",
        "port": port,
        "method": "POST",
        "path": f"/{task}",
        "bodies": [upload_body() if action == "upload" else body],
        "connections": CONNECTIONS,
    }
    loadgen({**load, "requests": CONNECTIONS * 2})  # warm-up
    result = loadgen({**load, "requests": REQUESTS})
    if result["ok"] != REQUESTS:
        raise RuntimeError(f"{task} on port {port}: {result['statuses']}")
    return result


def run(logs: Path) -> list[Result]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tasks-") as folder, ExitStack() as stack:
        # One worker process makes every task's model, then measures each one's ceiling
        # in turn; and two apps serve all four models.
        made = run_worker("tasks.py", folder)
        models = {task: made[task]["path"] for task in TASKS}
        ports = {}
        for name, batching in {"batched": True, "unbatched": False}.items():
            path = write_spec(Path(folder) / name, app_spec(models, batching))
            ports[name] = free_port()
            stack.enter_context(serve_spec(path, ports[name], logs / f"tasks-{name}.log"))
        for task in TASKS:
            batched = hammer(ports["batched"], task)
            alone = hammer(ports["unbatched"], task)
            rows.append(
                ratio_result(
                    f"task-{task}",
                    batched["rps"],
                    alone["rps"],
                    "req/s",
                    at_least=2.0,
                    details={
                        "batched_latency_ms": batched["latency_ms"],
                        "unbatched_latency_ms": alone["latency_ms"],
                    },
                )
            )
            rows.append(  # requests/s: 32 requests in each timed span
                ratio_result(
                    f"task-{task}-model-ceiling",
                    CONNECTIONS / made[task]["batched_s"],
                    CONNECTIONS / made[task]["alone_s"],
                    "req/s",
                )
            )
    return rows


if __name__ == "__main__":  # tasks.py FOLDER: each task's model in FOLDER/TASK, its ceiling
    paths = {task: make(task, Path(sys.argv[1]) / task) for task in TASKS}
    print(json.dumps({task: {"path": path, **ceiling(task, path)} for task, path in paths.items()}))
