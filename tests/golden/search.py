# Built by endpointgen 0.2.0 from ../../specs/search.yaml. Edit the spec, then rebuild.
"""The search app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy search.py`; serve it here with `endpointgen serve`.
"""

from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, http, limits, remote, tasks
from fastapi import FastAPI

APP_NAME = "search"
DESCRIPTION = "Rerank, zero-shot labels and named entities behind one API"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(
        runtime.locked(
            "fastapi[standard]==0.165.0",
            "pydantic==2.14.4",
            "torch==2.13.0",
            "transformers==5.24.0",
        ),
    )
    .env({"HF_HOME": "/hf-cache", "HF_XET_HIGH_PERFORMANCE": "1"})
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
# The web tier needs no model packages: it calls the models' own containers.
web_image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(runtime.locked("fastapi[standard]==0.165.0", "pydantic==2.14.4"))
    .env({"HF_HOME": "/hf-cache", "HF_XET_HIGH_PERFORMANCE": "1"})
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
# Hub downloads are kept on a Volume, so new containers skip them.
hf_cache = modal.Volume.from_name("endpointgen-hf-cache", create_if_missing=True)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


def create_app(
    reranker: tasks.Model, labeler: tasks.Model, tagger: tasks.Model
) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.api_key(env="API_KEYS", header="X-API-Key")
    web = http.app(APP_NAME, DESCRIPTION, docs=require_auth)
    limit = limits.RateLimit("1200/minute", key="api_key")

    @web.post("/rerank", dependencies=http.guards(require_auth, limit, reranker.ready))
    async def rerank(body: tasks.RerankRequest) -> list[tasks.Ranked]:
        return await reranker.rerank(body, max_items=100, max_chars=20000)

    @web.post("/labels", dependencies=http.guards(require_auth, limit, labeler.ready))
    async def labels(
        body: tasks.ZeroShotRequest,
    ) -> tasks.ZeroShotResult | list[tasks.ZeroShotResult]:
        return await labeler.zero_shot(body, max_items=16, max_chars=20000)

    @web.post("/entities", dependencies=http.guards(require_auth, limit, tagger.ready))
    async def entities(
        body: tasks.ClassifyRequest,
    ) -> tasks.Entities | list[tasks.Entities]:
        return await tagger.entities(body, max_items=128, max_chars=20000)

    @web.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return web


reranker = tasks.Model(
    "BAAI/bge-reranker-base", "rerank", batching=tasks.Batching(64, 5)
)

labeler = tasks.Model(
    "facebook/bart-large-mnli",
    "zero-shot-classification",
    batching=tasks.Batching(32, 5),
)

tagger = tasks.Model(
    "dslim/bert-base-NER", "token-classification", batching=tasks.Batching(64, 5)
)


@app.cls(
    gpu="T4", startup_timeout=600, volumes={"/hf-cache": hf_cache}, max_containers=4
)
@modal.concurrent(max_inputs=64)
class RerankerModel:
    """The model `reranker`, on its own GPU type; the web tier calls it."""

    @modal.enter()
    def load(self) -> None:
        reranker.load()

    @modal.exit()
    def stop(self) -> None:
        reranker.close()

    @modal.method()
    def run(
        self, pairs: list[tuple[str, str] | tuple[str, str, bool, str]]
    ) -> list[tuple[float, float] | str]:
        return reranker.loaded(pairs)


@app.cls(
    gpu="L4", startup_timeout=600, volumes={"/hf-cache": hf_cache}, max_containers=2
)
@modal.concurrent(max_inputs=32)
class LabelerModel:
    """The model `labeler`, on its own GPU type; the web tier calls it."""

    @modal.enter()
    def load(self) -> None:
        labeler.load()

    @modal.exit()
    def stop(self) -> None:
        labeler.close()

    @modal.method()
    def run(self, items: list[tuple[str, tuple[str, ...], bool, str]]) -> list[Any]:
        return labeler.loaded(items)


@app.cls(
    gpu="T4", startup_timeout=600, volumes={"/hf-cache": hf_cache}, max_containers=2
)
@modal.concurrent(max_inputs=64)
class TaggerModel:
    """The model `tagger`, on its own GPU type; the web tier calls it."""

    @modal.enter()
    def load(self) -> None:
        tagger.load()

    @modal.exit()
    def stop(self) -> None:
        tagger.close()

    @modal.method()
    def run(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        return tagger.loaded(texts)


@app.function(
    image=web_image,
    secrets=[modal.Secret.from_name("search-keys", required_keys=["API_KEYS"])],
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app(
        remote.serve(reranker, RerankerModel),
        remote.serve(labeler, LabelerModel),
        remote.serve(tagger, TaggerModel),
    )


@app.function(volumes={"/hf-cache": hf_cache}, timeout=3600)
def download() -> None:
    """Fill the Hub cache Volume ahead of the first cold start:
    `modal run search.py::download` (`endpointgen deploy --warm-cache`).
    """
    reranker.download()
    labeler.download()
    tagger.download()
