# Built by endpointgen 0.2.0 from ../../specs/uploads.yaml. Edit the spec, then rebuild.
"""The uploads app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy uploads.py`; serve it here with `endpointgen serve`.
"""

from typing import Annotated, Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, http, tasks
from fastapi import FastAPI, File, UploadFile

APP_NAME = "uploads"
DESCRIPTION = "Summarise CSV files and classify images"
MODEL_ID = "./models/tiny-vit"
MODEL_REVISION = None
MODEL_DIR = files.Shipped(__file__, "../../specs/models/tiny-vit", "/model")

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install("torch==2.13.0", index_url="https://download.pytorch.org/whl/cpu")
    .uv_pip_install(
        runtime.locked(
            "fastapi[standard]==0.165.0",
            "pillow==13.0.0",
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
    web = http.app(APP_NAME, DESCRIPTION, docs=require_auth)

    @web.post(
        "/upload/csv",
        dependencies=http.guards(require_auth),
        responses=files.UPLOAD_RESPONSES,
    )
    async def upload_csv(
        file: Annotated[UploadFile, File(description="the file")],
    ) -> Any:
        upload = await files.read_upload(file, ["text/csv"])
        return {**upload.info, **await files.csv_summary(upload.content, 10000)}

    @web.post(
        "/upload/image",
        dependencies=http.guards(require_auth, http.MaxBytes(5242880), model.ready),
        responses=files.UPLOAD_RESPONSES,
    )
    async def upload_image(
        file: Annotated[UploadFile, File(description="the file")],
    ) -> Any:
        upload = await files.read_upload(file, ["image/jpeg", "image/png"])
        return {
            **upload.info,
            **await model.classify_image(upload.content, max_pixels=24000000),
        }

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(
    MODEL_ID, "image-classification", revision=MODEL_REVISION, path=MODEL_DIR.path
)


@app.cls(
    startup_timeout=600,
    secrets=[modal.Secret.from_name("uploads-keys", required_keys=["API_KEYS"])],
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
