# Built by endpointgen 0.2.0 from ../../specs/images.yaml. Edit the spec, then rebuild.
"""The images app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy images.py`; serve it here with `endpointgen serve`.
"""

from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, http, jobs, tasks
from fastapi import FastAPI, Response

APP_NAME = "images"
DESCRIPTION = "Images from prompts with Stable Diffusion"
MODEL_ID = "stabilityai/stable-diffusion-2-1-base"
MODEL_REVISION = None
GPU = "L4"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(
        runtime.locked(
            "diffusers==0.42.1",
            "fastapi[standard]==0.165.0",
            "pillow==13.0.0",
            "pydantic==2.14.4",
            "torch==2.13.0",
            "transformers==5.24.0",
        ),
    )
    .env({"HF_HOME": "/hf-cache", "HF_XET_HIGH_PERFORMANCE": "1"})
    .add_local_python_source("endpointgen")
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
            origins=["https://studio.example.com"],
            methods=["GET", "POST"],
            headers=["Authorization", "Content-Type", "X-Request-ID"],
            credentials=False,
            max_age=600,
        ),
        docs=require_auth,
    )
    guards = http.guards(require_auth, model.ready)
    app_jobs = jobs.Jobs(APP_NAME, worker=lambda: Server().job)

    @web.post(
        "/images",
        dependencies=guards,
        summary="Make an image from a prompt",
        responses=tasks.IMAGE_ANSWERS,
    )
    async def images(body: tasks.ImageRequest) -> Response:
        return await model.draw(body, max_pixels=1048576, max_steps=50, max_chars=1000)

    async def images_jobs(body: tasks.ImageRequest) -> Response:
        return await model.draw(
            body, max_pixels=1048576, max_steps=100, max_chars=20000
        )

    app_jobs.route(
        web,
        "/images/jobs",
        images_jobs,
        ttl=3600,
        dependencies=guards,
        owner_dependencies=http.guards(require_auth),
    )

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(MODEL_ID, "text-to-image", revision=MODEL_REVISION)


@app.cls(
    gpu=GPU,
    startup_timeout=600,
    secrets=[modal.Secret.from_name("images-auth", required_keys=["API_KEYS"])],
    volumes={"/hf-cache": hf_cache},
    max_containers=2,
    scaledown_window=120,
    timeout=3600,
)
class Server:
    @modal.enter()
    def load(self) -> None:
        model.load()

    @modal.asgi_app()
    def web(self) -> FastAPI:
        return create_app(model)

    @modal.method()
    async def job(
        self, path: str, values: dict[str, Any], job_id: str, callback: str | None
    ) -> dict[str, Any]:
        return await jobs.run(create_app(model), path, values, job_id, callback)
