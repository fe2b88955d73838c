# Built by endpointgen 0.2.0 from ../../specs/jobs.yaml. Edit the spec, then rebuild.
"""The jobs app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy jobs.py`; serve it here with `endpointgen serve`.
"""

from collections.abc import Iterator
from typing import Any

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, handlers, http, jobs, remote, tasks
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

APP_NAME = "jobs"
DESCRIPTION = "Long generations and document reports, run as jobs"
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
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
# The web tier needs no model packages: it calls the models' own containers.
web_image = (
    modal.Image.debian_slim(python_version="3.11")
    .uv_pip_install(runtime.locked("fastapi[standard]==0.165.0", "pydantic==2.14.4"))
    .env({"HF_HOME": "/hf-cache", "HF_XET_HIGH_PERFORMANCE": "1"})
    .add_local_file(REPORT_FILE.local, REPORT_FILE.remote)
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
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
        worker=lambda: JobRunner().job,
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


model = tasks.Model("gpt2", "text-generation")

# A stream whose client went away is stopped in the model's own container.
cancels = remote.Cancels(APP_NAME)


@app.cls(gpu="L4", timeout=3600, startup_timeout=600, volumes={"/hf-cache": hf_cache})
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
    def checked_generate(self, asked: tasks.Asked) -> dict[str, Any] | tasks.Rejected:
        return model.checked_generate(asked)

    @modal.method()
    def tokens(
        self, request: tasks.Asked, request_id: str
    ) -> Iterator[tuple[str, Any]]:
        yield from model.tokens(request, cancels.watch(request_id))

    @modal.method()
    def generate(self, request: tasks.GenerateRequest) -> dict[str, Any]:
        return model.loaded.generate(request)

    @modal.method()
    def chat_prompt(self, turns: list[dict[str, str]]) -> str:
        return model.loaded.chat_prompt(turns)

    @modal.method()
    def context_left(self, prompt: str) -> int | None:
        return model.loaded.context_left(prompt)

    @modal.method()
    def context_problem(self, request: tasks.GenerateRequest) -> str | None:
        return model.loaded.context_problem(request)


@app.function(
    image=web_image,
    secrets=[
        modal.Secret.from_name("jobs-callbacks", required_keys=["JOB_CALLBACK_SECRET"]),
        modal.Secret.from_name("jobs-keys", required_keys=["API_KEYS"]),
    ],
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app(remote.serve(model, Inference, cancels))


@app.cls(
    image=web_image,
    secrets=[
        modal.Secret.from_name("jobs-callbacks", required_keys=["JOB_CALLBACK_SECRET"]),
        modal.Secret.from_name("jobs-keys", required_keys=["API_KEYS"]),
    ],
    timeout=3600,
)
@modal.concurrent(max_inputs=100)
class JobRunner:
    """Runs each job of the job routes, for up to `jobs.timeout` seconds."""

    @modal.enter()
    def start(self) -> None:
        self.api = create_app(remote.serve(model, Inference, cancels))

    @modal.method()
    async def job(
        self, path: str, values: dict[str, Any], job_id: str, callback: str | None
    ) -> dict[str, Any]:
        return await jobs.run(self.api, path, values, job_id, callback)


@app.function(volumes={"/hf-cache": hf_cache}, timeout=3600)
def download() -> None:
    """Fill the Hub cache Volume ahead of the first cold start:
    `modal run jobs.py::download` (`endpointgen deploy --warm-cache`).
    """
    model.download()
