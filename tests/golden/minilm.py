# Built by endpointgen 0.2.0 from ../../specs/minilm.yaml. Edit the spec, then rebuild.
"""The minilm app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy minilm.py`; serve it here with `endpointgen serve`.
"""

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, http, limits, tasks
from fastapi import FastAPI

APP_NAME = "minilm"
DESCRIPTION = "all-MiniLM-L6-v2 sentence embeddings (384 dimensions)"
MODEL_ID = "./models/all-MiniLM-L6-v2"
MODEL_REVISION = None
GPU = "T4"
MODEL_DIR = files.Shipped(__file__, "../../specs/models/all-MiniLM-L6-v2", "/model")

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
    .add_local_dir(MODEL_DIR.local, MODEL_DIR.remote)
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


def create_app(model: tasks.Model) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.api_key(env="API_KEYS", header="X-API-Key")
    web = http.app(
        APP_NAME,
        DESCRIPTION,
        cors=http.Cors(
            origins=["http://localhost:3000", "https://app.example.com"],
            methods=["GET", "POST"],
            headers=["Content-Type", "X-API-Key", "X-Request-ID"],
            credentials=False,
            max_age=600,
        ),
        docs=require_auth,
    )
    limit = limits.RateLimit("600/minute", key="api_key")

    @web.post("/embed", dependencies=http.guards(require_auth, limit, model.ready))
    async def embed(body: tasks.EmbedRequest) -> tasks.EmbedResponse:
        return await model.embed(body, max_items=64, max_chars=20000)

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(
    MODEL_ID,
    "embeddings",
    revision=MODEL_REVISION,
    path=MODEL_DIR.path,
    batching=tasks.Batching(32, 5),
)


@app.cls(
    gpu=GPU,
    cpu=2.0,
    memory=4096,
    timeout=120,
    startup_timeout=600,
    secrets=[modal.Secret.from_name("minilm-keys", required_keys=["API_KEYS"])],
    min_containers=0,
    max_containers=2,
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
