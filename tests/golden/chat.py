# Built by endpointgen 0.2.0 from ../../specs/chat.yaml. Edit the spec, then rebuild.
"""The chat app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy chat.py`; serve it here with `endpointgen serve`.
"""

from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, handlers, http, limits, sockets, tasks
from fastapi import FastAPI, Request, WebSocket

APP_NAME = "chat"
DESCRIPTION = "GPT-2 over WebSockets"
MODEL_ID = "gpt2"
MODEL_REVISION = None
GPU = "L4"
CHAT_FILE = files.Shipped(
    __file__, "../../specs/handlers/chat.py", "/root/endpointgen_handlers/h0_chat.py"
)

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
    .add_local_file(CHAT_FILE.local, CHAT_FILE.remote)
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
        APP_NAME,
        DESCRIPTION,
        cors=http.Cors(
            origins=["https://chat.example.com"],
            methods=["GET", "POST"],
            headers=["Authorization", "Content-Type", "X-Request-ID"],
            credentials=False,
            max_age=600,
        ),
        docs=require_auth,
    )
    limit = limits.RateLimit("120/minute", key="api_key")
    generate_socket = sockets.Socket(
        "/generate",
        require_auth,
        limit,
        model.ready,
        max_bytes=65536,
        idle_timeout=120,
        max_lifetime=300,
    )
    converse = handlers.load(CHAT_FILE.path, "converse", "handlers/chat.py")
    talk_socket = sockets.Socket(
        "/talk",
        require_auth,
        limit,
        model.ready,
        max_bytes=1048576,
        idle_timeout=300,
        max_lifetime=300,
    )

    @web.websocket("/generate")
    async def generate(websocket: WebSocket) -> None:
        await generate_socket.generate(
            websocket, model, max_tokens=512, max_chars=20000
        )

    @web.post("/generate/ticket", dependencies=http.guards(require_auth, limit))
    async def generate_ticket(request: Request) -> dict[str, Any]:
        return generate_socket.ticket(request)

    @web.websocket("/talk")
    async def talk(websocket: WebSocket) -> None:
        await talk_socket.relay(websocket, converse, model.engine)

    @web.post("/talk/ticket", dependencies=http.guards(require_auth, limit))
    async def talk_ticket(request: Request) -> dict[str, Any]:
        return talk_socket.ticket(request)

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(MODEL_ID, "text-generation", revision=MODEL_REVISION)


@app.cls(
    gpu=GPU,
    startup_timeout=600,
    secrets=[modal.Secret.from_name("chat-auth", required_keys=["API_KEYS"])],
    volumes={"/hf-cache": hf_cache},
)
@modal.concurrent(max_inputs=32, target_inputs=16)
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
    `modal run chat.py::download` (`endpointgen deploy --warm-cache`).
    """
    model.download()
