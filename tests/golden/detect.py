# Built by endpointgen 0.2.0 from ../../specs/detect.yaml. Edit the spec, then rebuild.
"""The detect app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy detect.py`; serve it here with `endpointgen serve`.
"""

from typing import Annotated, Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, http, tasks
from fastapi import FastAPI, File, UploadFile

APP_NAME = "detect"
DESCRIPTION = "Objects in an uploaded image, with their boxes"
MODEL_ID = "hustvl/yolos-tiny"
MODEL_REVISION = None
GPU = "T4"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(
        runtime.locked(
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
# Hub downloads are kept on a Volume, so new containers skip them.
hf_cache = modal.Volume.from_name("endpointgen-hf-cache", create_if_missing=True)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


def create_app(model: tasks.Model) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.api_key(env="API_KEYS", header="X-API-Key")
    web = http.app(APP_NAME, DESCRIPTION, docs=require_auth)

    @web.post(
        "/detect",
        dependencies=http.guards(require_auth, http.MaxBytes(8388608), model.ready),
        summary="Find objects in an image",
        responses=files.UPLOAD_RESPONSES,
    )
    async def detect(file: Annotated[UploadFile, File(description="the file")]) -> Any:
        upload = await files.read_upload(
            file, ["image/jpeg", "image/png", "image/webp"]
        )
        return {
            **upload.info,
            **await model.detect_objects(upload.content, max_pixels=25000000),
        }

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(MODEL_ID, "object-detection", revision=MODEL_REVISION)


@app.cls(
    gpu=GPU,
    startup_timeout=600,
    secrets=[modal.Secret.from_name("detect-keys", required_keys=["API_KEYS"])],
    volumes={"/hf-cache": hf_cache},
)
@modal.concurrent(max_inputs=16, target_inputs=4)
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
    `modal run detect.py::download` (`endpointgen deploy --warm-cache`).
    """
    model.download()
