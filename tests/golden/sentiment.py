# Built by endpointgen 0.2.0 from ../../specs/sentiment.yaml. Edit the spec, then rebuild.
"""The sentiment app: HTTP endpoints on Modal, built by endpointgen from a spec.

Deploy with `modal deploy sentiment.py`; serve it here with `endpointgen serve`.
"""

import modal
from endpointgen import runtime
from endpointgen.runtime import auth, files, handlers, http, tasks
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field

APP_NAME = "sentiment"
DESCRIPTION = "Sentiment with a custom handler around a text classifier"
MODEL_ID = "./models/tiny-bert"
MODEL_REVISION = None
GPU = "T4"
MODEL_DIR = files.Shipped(__file__, "../../specs/models/tiny-bert", "/model")
SENTIMENT_FILE = files.Shipped(
    __file__,
    "../../specs/handlers/sentiment.py",
    "/root/endpointgen_handlers/h0_sentiment.py",
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
    .add_local_dir(MODEL_DIR.local, MODEL_DIR.remote)
    .add_local_file(SENTIMENT_FILE.local, SENTIMENT_FILE.remote)
    .add_local_python_source("endpointgen", ignore=runtime.not_shipped)
)
app = modal.App(APP_NAME, image=image)
# The runtime the image carries must be the one that built this module.
runtime.require("0.2.0")


class PostSentimentRequest(BaseModel):
    model_config = http.STRICT
    text: str = Field(min_length=1, max_length=5000)


def create_app(model: tasks.Model) -> FastAPI:
    """The FastAPI app; Modal serves it, and so can any ASGI server."""
    require_auth = auth.api_key(env="API_KEYS", header="X-API-Key")
    web = http.app(
        APP_NAME,
        DESCRIPTION,
        cors=http.Cors(
            origins=["https://app.example.com"],
            methods=["GET", "POST"],
            headers=["Content-Type", "X-API-Key", "X-Request-ID"],
            credentials=False,
            max_age=600,
        ),
        errors={"ValueError": (422, "the text could not be scored")},
        docs=require_auth,
    )
    predict = handlers.load(SENTIMENT_FILE.path, "predict", "handlers/sentiment.py")

    @web.post("/sentiment", dependencies=http.guards(require_auth, model.ready))
    async def sentiment(body: PostSentimentRequest) -> Response:
        return handlers.answer(
            await handlers.call(predict, body.model_dump(by_alias=True), model.engine)
        )

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web


model = tasks.Model(
    MODEL_ID, "text-classification", revision=MODEL_REVISION, path=MODEL_DIR.path
)


@app.cls(
    gpu=GPU,
    startup_timeout=600,
    secrets=[modal.Secret.from_name("sentiment-keys", required_keys=["API_KEYS"])],
)
@modal.concurrent(max_inputs=16)
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
