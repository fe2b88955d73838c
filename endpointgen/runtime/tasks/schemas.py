"""What model routes take and answer: the request and response bodies (pydantic), as
/openapi.json documents them."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator

from endpointgen.runtime import http
from endpointgen.runtime.tasks.checks import MAX_STOP_CHARS, MAX_STOPS, stops_within


class GenerateRequest(BaseModel):
    model_config = http.STRICT

    prompt: str = Field(min_length=1)
    max_tokens: int = Field(default=64, ge=1, description="new tokens at most")
    temperature: float | None = Field(
        default=None,
        ge=0,
        le=2,
        description="< 0.01 is greedy; unset: a text2text model's own generation_config "
        "decides, any other model samples at 1.0",
    )
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    stop: str | list[str] | None = Field(
        default=None,
        description=f"stop before these (at most {MAX_STOPS}, of {MAX_STOP_CHARS} characters)",
    )

    @field_validator("stop")
    @classmethod
    def _stops(cls, stop: str | list[str] | None) -> str | list[str] | None:
        return stops_within(stop, MAX_STOPS)

    def stop_list(self) -> list[str]:
        stop = [self.stop] if isinstance(self.stop, str) else self.stop or []
        return [s for s in stop if s]


class GenerateResponse(BaseModel):
    text: str
    tokens_generated: int
    finish_reason: str = Field(description="stop, length or cancelled")


IMAGE_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
BINARY = {"type": "string", "format": "binary"}


class ImageRequest(BaseModel):
    """What `generate` takes on a text-to-image model."""

    model_config = http.STRICT

    prompt: str = Field(min_length=1)
    negative_prompt: str | None = Field(default=None, description="what the image avoids")
    width: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    height: int = Field(default=512, ge=64, le=2048, multiple_of=8)
    steps: int = Field(default=30, ge=1, le=150, description="denoising steps")
    guidance: float = Field(default=7.5, ge=0, le=30, description="classifier-free guidance")
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1, description="the same image")
    format: Literal["png", "jpeg", "webp"] = "png"
    base64: bool = Field(
        default=False, description="answer JSON {image, media_type, seed} instead of the bytes"
    )


class ImageResponse(BaseModel):
    image: str = Field(description="the encoded image, in base64")
    media_type: str
    seed: int


# What `generate` on a text-to-image model answers, for /openapi.json.
IMAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image, as `format` says; JSON with `base64: true`",
        "content": {
            **{kind: {"schema": BINARY} for kind in IMAGE_TYPES.values()},
            "application/json": {"schema": ImageResponse.model_json_schema()},
        },
    }
}


class ClassifyRequest(BaseModel):
    model_config = http.STRICT

    text: str | None = Field(default=None, min_length=1)
    texts: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.text is None) == (self.texts is None):
            raise ValueError("send either `text` or `texts`")
        return self


class Classification(BaseModel):
    label: str
    score: float


MAX_LABELS = 64  # candidate labels of one zero-shot request


class ZeroShotRequest(ClassifyRequest):
    """Text (or texts) and the labels to score it against; the model is an NLI model."""

    labels: list[str] = Field(min_length=1, max_length=MAX_LABELS)
    multi_label: bool = Field(
        default=False, description="score each label alone (else the scores sum to 1)"
    )
    hypothesis_template: str = Field(default="This example is {}.", min_length=2, max_length=500)

    @model_validator(mode="after")
    def _labels(self) -> Self:
        if any(not label.strip() for label in self.labels):
            raise ValueError("`labels` may not hold an empty label")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError("`labels` holds a label twice")
        if self.hypothesis_template.count("{}") != 1:
            raise ValueError("`hypothesis_template` must hold `{}` once, where a label goes")
        return self


class ZeroShotResult(BaseModel):
    label: str = Field(description="the best label")
    score: float
    labels: list[str] = Field(description="every label, best first")
    scores: list[float]


class Entity(BaseModel):
    entity_group: str = Field(description="the entity's type, e.g. PER or LOC")
    score: float = Field(description="the mean score of its tokens")
    word: str = Field(description="the text it spans")
    start: int = Field(description="its first character")
    end: int = Field(description="the character after its last")


class Entities(BaseModel):
    entities: list[Entity]


class RerankRequest(BaseModel):
    """A query and the texts to rank for it (Text Embeddings Inference's `/rerank`)."""

    model_config = http.STRICT

    query: str = Field(min_length=1)
    texts: list[str] = Field(min_length=1)
    top_n: int | None = Field(default=None, ge=1, description="the best N only")
    return_text: bool = False
    raw_scores: bool = Field(default=False, description="logits instead of 0-1 scores")
    truncate: bool | None = Field(
        default=None,
        description="cut a text too long for the model (null: cut, as TEI's default "
        "--auto-truncate does); false: a 422 instead",
    )
    truncation_direction: Literal["Left", "Right", "left", "right"] = Field(
        default="Right", description="where a cut text loses tokens"
    )


class Ranked(BaseModel):
    index: int = Field(description="the text's place in the request")
    score: float
    text: str | None = Field(default=None, description="with `return_text`")


class EmbedRequest(BaseModel):
    model_config = http.STRICT

    texts: list[str] = Field(min_length=1)


class EmbedResponse(BaseModel):
    embeddings: list[list[float]]
    dim: int
