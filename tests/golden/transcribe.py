# Built by endpointgen 0.2.0 from ../../specs/transcribe.yaml. Edit the spec, then rebuild.
"""The transcribe app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy transcribe.py`; serve it here with `endpointgen serve`.
"""

from typing import Annotated, Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, http, tasks
from fastapi import FastAPI, File, Query, UploadFile

APP_NAME = "transcribe"
DESCRIPTION = "Speech to text with Whisper"
MODEL_ID = "openai/whisper-small"
MODEL_REVISION = None
GPU = "L4"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(
        runtime.locked(
            "fastapi[standard]==0.165.0",
            "pydantic==2.14.4",
            "scipy==1.17.1",
            "soundfile==0.14.0",
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
        "/transcribe",
        dependencies=http.guards(require_auth, http.MaxBytes(104857600), model.ready),
        summary="Transcribe an audio file",
        responses=files.UPLOAD_RESPONSES,
    )
    async def transcribe(
        file: Annotated[UploadFile, File(description="the file")],
        timestamps: Annotated[bool, Query(description="add chunks with times")] = False,
    ) -> Any:
        upload = await files.read_upload(
            file, ["audio/flac", "audio/mpeg", "audio/ogg", "audio/wav", "audio/x-wav"]
        )
        return {**upload.info, **await model.transcribe(upload.content, timestamps)}

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(MODEL_ID, "automatic-speech-recognition", revision=MODEL_REVISION)


@app.cls(
    gpu=GPU,
    timeout=900,
    startup_timeout=600,
    secrets=[modal.Secret.from_name("transcribe-keys", required_keys=["API_KEYS"])],
    volumes={"/hf-cache": hf_cache},
)
@modal.concurrent(max_inputs=8, target_inputs=1)
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
    `modal run transcribe.py::download` (`endpointgen deploy --warm-cache`).
    """
    model.download()
