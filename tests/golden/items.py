# Built by endpointgen 0.2.0 from ../../specs/items.yaml. Edit the spec, then rebuild.
"""The items app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy items.py`; serve it here with `endpointgen serve`.
"""

from typing import Annotated

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, handlers, http
from fastapi import FastAPI, Path, Response
from pydantic import BaseModel, Field

APP_NAME = "items"
DESCRIPTION = "Create and read items, with declared bodies and typed path parameters"

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(runtime.locked("fastapi[standard]==0.165.0", "pydantic==2.14.4"))
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


class PostItemsRequest(BaseModel):
    model_config = http.STRICT
    name: str = Field(min_length=1, max_length=200)
    price: float = Field(ge=0.0)
    tags: list[str] = Field(default=[], max_length=10)


def create_app() -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.api_key(env="API_KEYS", header="X-API-Key")
    web = http.app(APP_NAME, DESCRIPTION, docs=require_auth)

    @web.post("/items", dependencies=http.guards(require_auth), status_code=201)
    async def post_items(body: PostItemsRequest) -> Response:
        return handlers.respond(
            {"id": 123, "status": "created", "name": "{name}", "price": "{price}"},
            body.model_dump(by_alias=True),
            status=201,
        )

    @web.get("/items/{item_id}", dependencies=http.guards(require_auth))
    async def get_items(item_id: Annotated[int, Path(ge=1)]) -> Response:
        return handlers.respond(
            {"id": "{item_id}", "data": "..."}, {"item_id": item_id}
        )

    @web.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return web


@app.function(
    secrets=[modal.Secret.from_name("items-keys", required_keys=["API_KEYS"])]
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app()
