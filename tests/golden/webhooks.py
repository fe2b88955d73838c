# Built by endpointgen 0.2.0 from ../../specs/webhooks.yaml. Edit the spec, then rebuild.
"""The webhooks app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy webhooks.py`; serve it here with `endpointgen serve`.
"""

import modal
from endpointgen import runtime
from endpointgen.runtime import http, limits, webhooks
from fastapi import FastAPI, Request

APP_NAME = "webhooks"
DESCRIPTION = "Signed webhooks from GitHub, Stripe and Slack"

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
    limit = limits.RateLimit("600/minute", key="ip", storage="modal-dict", app=APP_NAME)
    webhook_github_hook = webhooks.Webhook("github", env="GITHUB_WEBHOOK_SECRET")
    webhook_stripe_hook = webhooks.Webhook("stripe", env="STRIPE_WEBHOOK_SECRET")
    webhook_slack_hook = webhooks.Webhook("slack", env="SLACK_SIGNING_SECRET")

    @web.post(
        "/webhook/github", dependencies=http.guards(limit), responses=webhooks.RESPONSES
    )
    async def webhook_github(request: Request) -> http.JSONResponse:
        return await webhook_github_hook.receive(request)

    @web.post(
        "/webhook/stripe", dependencies=http.guards(limit), responses=webhooks.RESPONSES
    )
    async def webhook_stripe(request: Request) -> http.JSONResponse:
        return await webhook_stripe_hook.receive(request)

    @web.post(
        "/webhook/slack", dependencies=http.guards(limit), responses=webhooks.RESPONSES
    )
    async def webhook_slack(request: Request) -> http.JSONResponse:
        return await webhook_slack_hook.receive(request)

    @web.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return web


@app.function(
    secrets=[
        modal.Secret.from_name(
            "github-webhook", required_keys=["GITHUB_WEBHOOK_SECRET"]
        ),
        modal.Secret.from_name("slack-signing", required_keys=["SLACK_SIGNING_SECRET"]),
        modal.Secret.from_name(
            "stripe-webhook", required_keys=["STRIPE_WEBHOOK_SECRET"]
        ),
    ],
)
@modal.concurrent(max_inputs=100)
@modal.asgi_app()
def web() -> FastAPI:
    return create_app()
