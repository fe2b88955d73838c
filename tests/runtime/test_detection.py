"""Object detection: specs/detect.yaml served by a real `endpointgen serve` (uvicorn) on a
tiny random-weight YOLOS made here, each answer checked against transformers' own
object-detection pipeline on the same image."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import SPECS, write_spec
from PIL import Image
from servers import Server

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": "key-one"}


@pytest.fixture(scope="module")
def detector(tiny_detector: Path) -> Path:
    return tiny_detector


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, detector: Path) -> Iterator[Server]:
    spec = yaml.safe_load((SPECS / "detect.yaml").read_text())
    spec["model"]["id"] = str(detector)
    running = Server(write_spec(tmp_path_factory.mktemp("detect"), spec))
    running.wait_ready()
    yield running
    running.stop()


def picture(width: int, height: int, kind: str = "PNG") -> bytes:
    """A striped picture, so that different images give different boxes."""
    image = Image.new("RGB", (width, height), "white")
    for x in range(0, width, 7):
        for y in range(height):
            image.putpixel((x, y), (x * 3 % 256, y * 5 % 256, 90))
    out = io.BytesIO()
    image.save(out, kind)
    return out.getvalue()


def upload(server: Server, content: bytes, media: str = "image/png") -> httpx.Response:
    files = {"file": ("picture", content, media)}
    return httpx.post(server.url + "/detect", files=files, headers=KEY, timeout=60)


def test_detections_are_the_pipelines(server: Server, detector: Path) -> None:
    """docs/spec.md, Routes without a model (`upload`, `object-detection`): an image gives
    `{objects: [{label, score, box: {xmin, ymin, xmax, ymax}}]}`, best first, in the
    image's own pixels: what transformers' object-detection pipeline finds in it."""
    from transformers import pipeline

    oracle = pipeline("object-detection", model=str(detector))
    for width, height, kind, media in (
        (120, 80, "PNG", "image/png"),
        (64, 200, "JPEG", "image/jpeg"),
    ):
        content = picture(width, height, kind)
        answer = upload(server, content, media)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert body["filename"] == "picture" and body["content_type"] == media
        expected = oracle(Image.open(io.BytesIO(content)).convert("RGB"))
        assert len(body["objects"]) == len(expected) > 0
        for got, want in zip(body["objects"], expected, strict=True):
            assert got["label"] == want["label"]
            assert got["score"] == pytest.approx(want["score"], abs=1e-5)
            assert got["box"] == want["box"]
            box = got["box"]
            assert 0 <= box["xmin"] <= box["xmax"] <= width
            assert 0 <= box["ymin"] <= box["ymax"] <= height
        scores = [o["score"] for o in body["objects"]]
        assert scores == sorted(scores, reverse=True)


def test_what_is_not_an_image_is_refused(server: Server) -> None:
    """docs/spec.md, Routes without a model (`object-detection`): bytes that are no image
    get 422, an image declaring more than `max_upload_pixels` 413, another media type 415."""
    assert upload(server, b"not an image").status_code == 422
    huge = io.BytesIO()
    Image.new("1", (6000, 5000)).save(huge, "PNG")
    assert upload(server, huge.getvalue()).status_code == 413
    assert upload(server, picture(10, 10), "image/gif").status_code == 415
    assert (
        httpx.post(server.url + "/detect", files={"file": ("p", picture(9, 9))}).status_code == 401
    )


def test_openapi_documents_the_upload(server: Server) -> None:
    """docs/spec.md, Routes without a model (`object-detection`): /openapi.json documents
    the upload as multipart with its errors."""
    doc = httpx.get(server.url + "/openapi.json", headers=KEY).json()
    post = doc["paths"]["/detect"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert {"413", "415", "422"} <= set(post["responses"])
