# Built by endpointgen 0.2.0 from ../../specs/openai.yaml. Edit the spec, then rebuild.
"""The openai-gpt2 app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy openai_gpt2.py`; serve it here with `endpointgen serve`.
"""

from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, http, limits, openai, tasks
from fastapi import FastAPI, Request

APP_NAME = "openai-gpt2"
DESCRIPTION = "GPT-2 behind /v1/completions and /v1/chat/completions"
MODEL_ID = "gpt2"
MODEL_REVISION = None
GPU = "L4"

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
# Hub downloads are kept on a Volume, so new containers skip them.
hf_cache = modal.Volume.from_name("endpointgen-hf-cache", create_if_missing=True)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


def create_app(model: tasks.Model) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.bearer(env="API_KEYS")
    web = http.app(
        APP_NAME, DESCRIPTION, formats={"/v1": openai.ERRORS}, docs=require_auth
    )
    limit = limits.RateLimit("120/minute", key="api_key")

    @web.get("/v1/models", dependencies=http.guards(require_auth, limit, model.ready))
    async def v1_models() -> dict[str, Any]:
        return openai.models(model, owner=APP_NAME)

    @web.post(
        "/v1/completions",
        dependencies=http.guards(require_auth, limit, model.ready),
        responses=openai.STREAMED,
    )
    async def v1_completions(body: openai.CompletionRequest, request: Request) -> Any:
        return await openai.completions(
            model, body, request, max_tokens=512, max_chars=20000
        )

    @web.post(
        "/v1/chat/completions",
        dependencies=http.guards(require_auth, limit, model.ready),
        responses=openai.STREAMED,
    )
    async def v1_chat(body: openai.ChatRequest, request: Request) -> Any:
        return await openai.chat(model, body, request, max_tokens=512, max_chars=20000)

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(
    MODEL_ID, "text-generation", revision=MODEL_REVISION, batching=tasks.Batching(8, 5)
)


@app.cls(
    gpu=GPU,
    startup_timeout=600,
    secrets=[modal.Secret.from_name("openai-gpt2-keys", required_keys=["API_KEYS"])],
    volumes={"/hf-cache": hf_cache},
    max_containers=2,
)
@modal.concurrent(max_inputs=8)
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
    `modal run openai_gpt2.py::download` (`endpointgen deploy --warm-cache`).
    """
    model.download()
