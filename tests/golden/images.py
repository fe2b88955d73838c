# Built by endpointgen 0.2.0 from ../../specs/images.yaml. Edit the spec, then rebuild.
"""The images app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy images.py`; serve it here with `endpointgen serve`.
"""

from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, http, jobs, remote, tasks
from fastapi import FastAPI, Response

APP_NAME = "images"
DESCRIPTION = "Images from prompts with Stable Diffusion"

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
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
# The web tier needs no model packages: it calls the models' own containers.
web_image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(
        runtime.locked(
            "fastapi[standard]==0.165.0", "pillow==13.0.0", "pydantic==2.14.4"
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
    app_jobs = jobs.Jobs(APP_NAME, worker=lambda: JobRunner().job)

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


model = tasks.Model("stabilityai/stable-diffusion-2-1-base", "text-to-image")


@app.cls(
    gpu="L4",
    timeout=3600,
    startup_timeout=600,
    volumes={"/hf-cache": hf_cache},
    max_containers=2,
    scaledown_window=120,
)
@modal.concurrent(max_inputs=8, target_inputs=1)
class Inference:
    """The model, on its GPU; the CPU web tier (`web`) calls it."""

    @modal.enter()
    def load(self) -> None:
        model.load()

    @modal.exit()
    def stop(self) -> None:
        model.close()

    @modal.method()
    def run(self, request: tasks.ImageRequest) -> bytes:
        return model.loaded(request)


@app.function(
    image=web_image,
    secrets=[modal.Secret.from_name("images-auth", required_keys=["API_KEYS"])],
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app(remote.serve(model, Inference))


@app.cls(
    image=web_image,
    secrets=[modal.Secret.from_name("images-auth", required_keys=["API_KEYS"])],
    timeout=3600,
)
@modal.concurrent(max_inputs=100)
class JobRunner:
    """Runs each job of the job routes, for up to `jobs.timeout` seconds."""

    @modal.enter()
    def start(self) -> None:
        self.api = create_app(remote.serve(model, Inference))

    @modal.method()
    async def job(
        self, path: str, values: dict[str, Any], job_id: str, callback: str | None
    ) -> dict[str, Any]:
        return await jobs.run(self.api, path, values, job_id, callback)


@app.function(volumes={"/hf-cache": hf_cache}, timeout=3600)
def download() -> None:
    """Fill the Hub cache Volume ahead of the first cold start:
    `modal run images.py::download` (`endpointgen deploy --warm-cache`).
    """
    model.download()
