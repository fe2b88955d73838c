# Built by endpointgen 0.2.0 from ../../specs/responses.yaml. Edit the spec, then rebuild.
"""The responses app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy responses.py`; serve it here with `endpointgen serve`.
"""

from typing import Annotated

import modal
from endpointgen import runtime
from endpointgen.runtime import files, handlers, http
from fastapi import FastAPI, Query, Response

APP_NAME = "responses"
DESCRIPTION = "JSON, text, streamed, binary and file responses"
FILES_DIR = files.Shipped(__file__, "../../specs/files", "/root/endpointgen_files/d0")
LINES_FILE = files.Shipped(
    __file__, "../../specs/handlers/lines.py", "/root/endpointgen_handlers/h0_lines.py"
)
BADGE_FILE = files.Shipped(
    __file__, "../../specs/handlers/badge.py", "/root/endpointgen_handlers/h1_badge.py"
)

image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(runtime.locked("fastapi[standard]==0.165.0", "pydantic==2.14.4"))
    .add_local_dir(FILES_DIR.local, FILES_DIR.remote)
    .add_local_file(LINES_FILE.local, LINES_FILE.remote)
    .add_local_file(BADGE_FILE.local, BADGE_FILE.remote)
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


def create_app() -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    web = http.app(APP_NAME, DESCRIPTION)
    lines = handlers.load(LINES_FILE.path, "lines", "handlers/lines.py")
    badge = handlers.load(BADGE_FILE.path, "badge", "handlers/badge.py")
    download_folder = files.Folder(FILES_DIR.path, media_type="text/plain")

    @web.get("/json")
    async def json() -> Response:
        return handlers.respond({"status": "ok", "data": [1, 2, 3]})

    @web.get("/text", response_class=http.Text)
    async def text() -> Response:
        return handlers.respond("Plain text response", kind="text")

    @web.get("/stream", response_class=http.TextStream)
    async def stream(count: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
        return handlers.answer(await handlers.call(lines, {"count": count}), "stream")

    @web.get("/events", response_class=http.EventStream)
    async def events(count: Annotated[int, Query(ge=1, le=100)] = 5) -> Response:
        return handlers.answer(await handlers.call(lines, {"count": count}), "sse")

    @web.get("/badge.svg", response_class=http.binary("image/svg+xml"))
    async def badge_svg(
        label: Annotated[str, Query(min_length=1, max_length=40)] = "endpointgen",
    ) -> Response:
        return handlers.answer(
            await handlers.call(badge, {"label": label}, media_type="image/svg+xml"),
            "binary",
            media_type="image/svg+xml",
        )

    @web.get(
        "/download/{name:path}",
        response_class=http.FileResponse,
        responses=download_folder.responses,
    )
    async def download(name: str) -> http.FileResponse:
        return await download_folder.send(name)

    return web


@app.function()
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app()
