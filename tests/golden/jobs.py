# Built by endpointgen 0.2.0 from ../../specs/jobs.yaml. Edit the spec, then rebuild.
"""The jobs app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy jobs.py`; serve it here with `endpointgen serve`.
"""

from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, handlers, http, jobs, tasks
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

APP_NAME = "jobs"
DESCRIPTION = "Long generations and document reports, run as jobs"
MODEL_ID = "gpt2"
MODEL_REVISION = None
GPU = "L4"
REPORT_FILE = files.Shipped(
    __file__,
    "../../specs/handlers/report.py",
    "/root/endpointgen_handlers/h0_report.py",
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
    .add_local_file(REPORT_FILE.local, REPORT_FILE.remote)
    .add_local_python_source("endpointgen")
)
# Hub downloads are kept on a Volume, so new containers skip them.
hf_cache = modal.Volume.from_name("endpointgen-hf-cache", create_if_missing=True)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


class PostReportRequest(BaseModel):
    model_config = http.STRICT
    text: str = Field(min_length=1, max_length=10000000)


def create_app(model: tasks.Model) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.api_key(env="API_KEYS", header="X-API-Key")
    web = http.app(APP_NAME, DESCRIPTION, docs=require_auth)
    guards = http.guards(require_auth, model.ready)
    app_jobs = jobs.Jobs(
        APP_NAME,
        worker=lambda: Server().job,
        callbacks=jobs.Callbacks(("hooks.example.com",)),
    )
    report_handler = handlers.load(REPORT_FILE.path, "report", "handlers/report.py")

    async def generate(body: tasks.GenerateRequest) -> tasks.GenerateResponse:
        return await model.generate(body, max_tokens=4096, max_chars=20000)

    app_jobs.route(
        web,
        "/generate",
        generate,
        ttl=86400,
        dependencies=guards,
        owner_dependencies=http.guards(require_auth),
    )

    async def report(body: PostReportRequest) -> Response:
        return handlers.answer(
            await handlers.call(
                report_handler, body.model_dump(by_alias=True), model.engine
            ),
        )

    app_jobs.route(
        web,
        "/report",
        report,
        ttl=3600,
        dependencies=guards,
        owner_dependencies=http.guards(require_auth),
    )

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(MODEL_ID, "text-generation", revision=MODEL_REVISION)


@app.cls(
    gpu=GPU,
    startup_timeout=600,
    secrets=[
        modal.Secret.from_name("jobs-callbacks", required_keys=["JOB_CALLBACK_SECRET"]),
        modal.Secret.from_name("jobs-keys", required_keys=["API_KEYS"]),
    ],
    volumes={"/hf-cache": hf_cache},
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
