# Built by endpointgen 0.2.0 from ../../specs/multi.yaml. Edit the spec, then rebuild.
"""The multi app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy multi.py`; serve it here with `endpointgen serve`.
"""

from collections.abc import Iterator
from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, http, limits, openai, remote, tasks
from fastapi import FastAPI, Request

APP_NAME = "multi"
DESCRIPTION = "GPT-2 on an L4 and all-MiniLM-L6-v2 on a T4, behind one API"

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


def create_app(writer: tasks.Model, embedder: tasks.Model) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.bearer(env="API_KEYS")
    web = http.app(
        APP_NAME, DESCRIPTION, formats={"/v1": openai.ERRORS}, docs=require_auth
    )
    limit = limits.RateLimit(
        "600/minute", key="api_key", storage="modal-dict", app=APP_NAME
    )
    guards = http.guards(require_auth, limit, writer.ready)

    @web.post("/generate", dependencies=guards)
    async def generate(body: tasks.GenerateRequest) -> tasks.GenerateResponse:
        return await writer.generate(body, max_tokens=1024, max_chars=20000)

    @web.post("/embed", dependencies=http.guards(require_auth, limit, embedder.ready))
    async def embed(body: tasks.EmbedRequest) -> tasks.EmbedResponse:
        return await embedder.embed(body, max_items=128, max_chars=20000)

    @web.get("/v1/models", dependencies=guards)
    async def v1_models() -> dict[str, Any]:
        return openai.models(writer, owner=APP_NAME)

    @web.post("/v1/completions", dependencies=guards, responses=openai.STREAMED)
    async def v1_completions(body: openai.CompletionRequest, request: Request) -> Any:
        return await openai.completions(
            writer, body, request, max_tokens=1024, max_chars=20000
        )

    @web.post("/v1/chat/completions", dependencies=guards, responses=openai.STREAMED)
    async def v1_chat(body: openai.ChatRequest, request: Request) -> Any:
        return await openai.chat(
            writer, body, request, max_tokens=1024, max_chars=20000
        )

    @web.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return web


writer = tasks.Model("gpt2", "text-generation")

embedder = tasks.Model(
    "sentence-transformers/all-MiniLM-L6-v2",
    "embeddings",
    batching=tasks.Batching(32, 5),
)

# A stream whose client went away is stopped in the model's own container.
cancels = remote.Cancels(APP_NAME)


@app.cls(
    gpu="L4",
    startup_timeout=600,
    volumes={"/hf-cache": hf_cache},
    max_containers=2,
    scaledown_window=300,
)
@modal.concurrent(max_inputs=8, target_inputs=1)
class WriterModel:
    """The model `writer`, on its own GPU type; the web tier calls it."""

    @modal.enter()
    def load(self) -> None:
        writer.load()

    @modal.exit()
    def stop(self) -> None:
        writer.close()

    @modal.method()
    def checked_generate(self, asked: tasks.Asked) -> dict[str, Any] | tasks.Rejected:
        return writer.checked_generate(asked)

    @modal.method()
    def tokens(
        self, request: tasks.Asked, request_id: str
    ) -> Iterator[tuple[str, Any]]:
        yield from writer.tokens(request, cancels.watch(request_id))

    @modal.method()
    def generate(self, request: tasks.GenerateRequest) -> dict[str, Any]:
        return writer.loaded.generate(request)

    @modal.method()
    def chat_prompt(self, turns: list[dict[str, str]]) -> str:
        return writer.loaded.chat_prompt(turns)

    @modal.method()
    def context_left(self, prompt: str) -> int | None:
        return writer.loaded.context_left(prompt)

    @modal.method()
    def context_problem(self, request: tasks.GenerateRequest) -> str | None:
        return writer.loaded.context_problem(request)


@app.cls(
    gpu="T4", startup_timeout=600, volumes={"/hf-cache": hf_cache}, max_containers=4
)
@modal.concurrent(max_inputs=64)
class EmbedderModel:
    """The model `embedder`, on its own GPU type; the web tier calls it."""

    @modal.enter()
    def load(self) -> None:
        embedder.load()

    @modal.exit()
    def stop(self) -> None:
        embedder.close()

    @modal.method()
    def run(self, texts: list[str]) -> list[list[float]]:
        return embedder.loaded(texts)

    @modal.method()
    def count_tokens(self, texts: list[str]) -> int:
        return embedder.loaded.count_tokens(texts)


@app.function(
    image=web_image,
    secrets=[modal.Secret.from_name("multi-keys", required_keys=["API_KEYS"])],
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app(
        remote.serve(writer, WriterModel, cancels),
        remote.serve(embedder, EmbedderModel),
    )


@app.function(volumes={"/hf-cache": hf_cache}, timeout=3600)
def download() -> None:
    """Fill the Hub cache Volume ahead of the first cold start:
    `modal run multi.py::download` (`endpointgen deploy --warm-cache`).
    """
    writer.download()
    embedder.download()
