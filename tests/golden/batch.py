# Built by endpointgen 0.2.0 from ../../specs/batch.yaml. Edit the spec, then rebuild.
"""The batch app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy batch.py`; serve it here with `endpointgen serve`.
"""

from typing import Literal

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, handlers, http, limits
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

APP_NAME = "batch"
DESCRIPTION = "Process a batch of texts with a custom handler"
BATCH_FILE = files.Shipped(
    __file__, "../../specs/handlers/batch.py", "/root/endpointgen_handlers/h0_batch.py"
)

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(runtime.locked("fastapi[standard]==0.165.0", "pydantic==2.14.4"))
    .add_local_file(BATCH_FILE.local, BATCH_FILE.remote)
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


class PostBatchRequest(BaseModel):
    model_config = http.STRICT
    model: Literal["default", "shout"] = Field(default="default")
    texts: list[str] = Field(min_length=1, max_length=100)


def create_app() -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.bearer(env="API_KEYS")
    web = http.app(
        APP_NAME,
        DESCRIPTION,
        errors={"ValueError": (400, "the input could not be processed")},
        docs=require_auth,
    )
    limit = limits.RateLimit("120/minute", key="api_key")
    process = handlers.load(BATCH_FILE.path, "process", "handlers/batch.py")

    @web.post("/batch", dependencies=http.guards(require_auth, limit))
    async def batch(body: PostBatchRequest) -> Response:
        return handlers.answer(
            await handlers.call(process, body.model_dump(by_alias=True))
        )

    return web


@app.function(
    secrets=[modal.Secret.from_name("batch-tokens", required_keys=["API_KEYS"])]
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app()
