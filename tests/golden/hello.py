# Built by endpointgen 0.2.0 from ../../specs/hello.yaml. Edit the spec, then rebuild.
"""The hello app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy hello.py`; serve it here with `endpointgen serve`.
"""

from typing import Annotated

import modal
from endpointgen import runtime
from endpointgen.runtime import handlers, http
from fastapi import FastAPI, Query, Response

APP_NAME = "hello"
DESCRIPTION = "Constant and templated answers, with typed query and path parameters"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(runtime.locked("fastapi[standard]==0.165.0", "pydantic==2.14.4"))
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


def create_app() -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    web = http.app(APP_NAME, DESCRIPTION)

    @web.get("/hello")
    async def hello() -> Response:
        return handlers.respond("Hello, World!")

    @web.get("/greet", response_class=http.Text)
    async def greet(
        name: Annotated[
            str, Query(min_length=1, max_length=100, description="who to greet")
        ],
    ) -> Response:
        return handlers.respond("Hello, {name}!", {"name": name}, kind="text")

    @web.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return web


@app.function()
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app()
