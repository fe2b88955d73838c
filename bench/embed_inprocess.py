"""Worker: the built module's own embedding engine, called directly with batches, no HTTP.

This is the ceiling the served, batched app is compared with. It runs in its own
process, shares nothing with the harness or a server, and stays up so that its
measurements can alternate with the servers' (a noisy neighbour then hits both).

Protocol: prints `ready` once the model is loaded; then for each stdin line
`BATCH SECONDS` prints one JSON line with texts/s at that batch size.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import SENTENCES, embed_spec, sized, write_spec


def load_embedder() -> Any:
    """The engine of a freshly built embeddings module's model, loaded as the app loads it."""
    from endpointgen.compiler import pipeline

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as folder:
        spec_path = write_spec(Path(folder), embed_spec(32, 5))
        built = pipeline.build(spec_path, folder)
        built.path.write_text(built.source, encoding="utf-8")
        found = importlib.util.spec_from_file_location(built.path.stem, built.path)
        assert found is not None and found.loader is not None
        module = importlib.util.module_from_spec(found)
        found.loader.exec_module(module)
        return module.model.load().engine


def throughput(embedder: Any, batch_size: int, seconds: float) -> dict[str, float]:
    batches = [
        [SENTENCES[(start + i) % len(SENTENCES)] for i in range(batch_size)]
        for start in range(len(SENTENCES))
    ]
    embedder(batches[0])  # warm-up
    texts, calls = 0, 0
    began = time.perf_counter()
    while time.perf_counter() - began < seconds:
        texts += len(embedder(batches[calls % len(batches)]))
        calls += 1
    elapsed = time.perf_counter() - began
    return {"texts_per_s": texts / elapsed, "ms_per_batch": 1000 * elapsed / calls}


def main() -> None:
    import torch

    embedder = load_embedder()
    for size in (1, 32):  # first calls of a shape are slow; not part of any figure
        throughput(embedder, size, sized(0.5, 0.05))
    threads = {
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
    }
    print("ready", flush=True)
    for line in sys.stdin:
        batch, seconds = line.split()
        result = throughput(embedder, int(batch), float(seconds))
        print(json.dumps({**result, **threads}), flush=True)


if __name__ == "__main__":
    main()
