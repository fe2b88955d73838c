# Built by endpointgen 0.2.0 from ../../specs/vllm.yaml. Edit the spec, then rebuild.
"""The qwen-vllm app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy qwen_vllm.py`; serve it here with `endpointgen serve`.
"""

from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, http, limits, openai, tasks
from fastapi import FastAPI, Request

APP_NAME = "qwen-vllm"
DESCRIPTION = "Qwen2.5 1.5B Instruct on vLLM"
MODEL_ID = "Qwen/Qwen2.5-1.5B-Instruct"
MODEL_REVISION = None
GPU = "L40S"

image = (
    modal.Image.from_registry("nvidia/cuda:13.0.0-devel-ubuntu22.04", add_python="3.11")
    .entrypoint([])
    .uv_pip_install(
        runtime.locked(
            "fastapi[standard]==0.136.3",
            "pydantic==2.14.4",
            "vllm==0.33.0",
            lock="vllm",
        ),
    )
    .env({"HF_HOME": "/hf-cache", "HF_XET_HIGH_PERFORMANCE": "1"})
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
# Hub downloads are kept on a Volume, so new containers skip them.
hf_cache = modal.Volume.from_name("endpointgen-hf-cache", create_if_missing=True)
# vLLM's compiled kernels and CUDA graphs, kept for later cold starts.
vllm_cache = modal.Volume.from_name("endpointgen-vllm-cache", create_if_missing=True)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


def create_app(model: tasks.Model) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.bearer(env="API_KEYS")
    web = http.app(
        APP_NAME, DESCRIPTION, formats={"/v1": openai.ERRORS}, docs=require_auth
    )
    limit = limits.RateLimit("600/minute", key="api_key")
    guards = http.guards(require_auth, limit, model.ready)

    @web.get("/v1/models", dependencies=guards)
    async def v1_models() -> dict[str, Any]:
        return openai.models(model, owner=APP_NAME)

    @web.post("/v1/completions", dependencies=guards, responses=openai.STREAMED)
    async def v1_completions(body: openai.CompletionRequest, request: Request) -> Any:
        return await openai.completions(
            model, body, request, max_tokens=2048, max_chars=20000
        )

    @web.post("/v1/chat/completions", dependencies=guards, responses=openai.STREAMED)
    async def v1_chat(body: openai.ChatRequest, request: Request) -> Any:
        return await openai.chat(model, body, request, max_tokens=2048, max_chars=20000)

    @web.post("/generate", dependencies=guards)
    async def generate(body: tasks.GenerateRequest) -> tasks.GenerateResponse:
        return await model.generate(body, max_tokens=2048, max_chars=20000)

    @web.post("/generate/stream", dependencies=guards, response_class=http.EventStream)
    async def generate_stream(
        body: tasks.GenerateRequest, request: Request
    ) -> http.EventStream:
        return await model.stream(body, request, max_tokens=2048, max_chars=20000)

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(
    MODEL_ID,
    "text-generation",
    revision=MODEL_REVISION,
    engine=tasks.Vllm(
        max_model_len=8192, gpu_memory_utilization=0.9, enforce_eager=True
    ),
)


@app.cls(
    gpu=GPU,
    startup_timeout=1200,
    secrets=[modal.Secret.from_name("qwen-vllm-keys", required_keys=["API_KEYS"])],
    volumes={"/hf-cache": hf_cache, "/root/.cache/vllm": vllm_cache},
    max_containers=4,
    scaledown_window=300,
)
@modal.concurrent(max_inputs=64)
class Server:
    @modal.enter()
    def load(self) -> None:
        model.load()

    @modal.exit()
    def stop(self) -> None:
        model.close()

    @modal.asgi_app()
    def web(self) -> FastAPI:
        return create_app(model)


@app.function(volumes={"/hf-cache": hf_cache}, timeout=3600)
def download() -> None:
    """Fill the Hub cache Volume ahead of the first cold start:
    `modal run qwen_vllm.py::download` (`endpointgen deploy --warm-cache`).
    """
    model.download()
