"""Text to image: specs/images.yaml served by a real `endpointgen serve` (uvicorn) on a
tiny random-weight Stable Diffusion pipeline made here; each image checked against what
diffusers' own pipeline makes from the same seed."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import SPECS, write_spec
from PIL import Image, ImageChops
from servers import Server

from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError

BEARER = {"Authorization": "Bearer key-one"}
SMALL = {"prompt": "a red cat", "width": 96, "height": 64, "steps": 2, "seed": 7}


@pytest.fixture(scope="module")
def painter(tiny_diffusion: Path) -> Path:
    return tiny_diffusion


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, painter: Path) -> Iterator[Server]:
    spec = yaml.safe_load((SPECS / "images.yaml").read_text())
    spec["model"]["id"] = str(painter)
    running = Server(write_spec(tmp_path_factory.mktemp("images"), spec))
    running.wait_ready()
    yield running
    running.stop()


def draw(server: Server, path: str = "/images", **body: Any) -> httpx.Response:
    return httpx.post(server.url + path, json={**SMALL, **body}, headers=BEARER, timeout=120)


def reference(painter: Path, **body: Any) -> Image.Image:
    import torch
    from diffusers import AutoPipelineForText2Image

    given = {**SMALL, **body}
    pipe = AutoPipelineForText2Image.from_pretrained(str(painter))
    image: Image.Image = pipe(
        given["prompt"],
        width=given["width"],
        height=given["height"],
        num_inference_steps=given["steps"],
        guidance_scale=given.get("guidance", 7.5),
        generator=torch.Generator().manual_seed(given["seed"]),
    ).images[0]
    return image


def test_an_image_is_the_pipelines_for_its_seed(server: Server, painter: Path) -> None:
    """docs/spec.md, Routes (`generate`): on a text-to-image model, a prompt, size, steps,
    guidance and seed give a PNG of that size, the image diffusers makes from the same
    seed; the seed comes back in `X-Seed` (which CORS lets browser code read), and
    without one a seed is drawn."""
    answer = draw(server)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/png"
    assert answer.headers["x-seed"] == "7"
    origin = {"Origin": "https://studio.example.com"}
    seen = httpx.post(server.url + "/images", json=SMALL, headers={**BEARER, **origin})
    assert "x-seed" in seen.headers["access-control-expose-headers"].lower()
    image = Image.open(io.BytesIO(answer.content))
    assert image.format == "PNG" and image.size == (96, 64)
    assert ImageChops.difference(image.convert("RGB"), reference(painter)).getbbox() is None
    again = draw(server, seed=None)
    seed = int(again.headers["x-seed"])
    assert draw(server, seed=seed).content == again.content


def test_formats_and_base64_json(server: Server) -> None:
    """docs/spec.md, Routes (`generate`): `format` picks PNG, JPEG or WebP; `base64: true`
    answers JSON `{image, media_type, seed}` instead of the bytes."""
    for kind, media, name in (("jpeg", "image/jpeg", "JPEG"), ("webp", "image/webp", "WEBP")):
        answer = draw(server, format=kind)
        assert answer.headers["content-type"] == media
        assert Image.open(io.BytesIO(answer.content)).format == name
    body = draw(server, base64=True).json()
    assert body["media_type"] == "image/png" and body["seed"] == 7
    assert base64.b64decode(body["image"]) == draw(server).content


def test_bad_requests_are_422_and_a_job_makes_the_same_image(server: Server) -> None:
    """docs/spec.md, Routes (`generate`) and Jobs: a size that is not a multiple of 8 or a
    prompt over `max_chars` is a 422; as a job (`job:`) the result is the image as
    `{media_type, base64, seed}`, and with `Prefer: wait` the route's own answer: the
    bytes, with `X-Seed`."""
    assert draw(server, width=65).status_code == 422
    long = draw(server, prompt="x" * 1001)
    assert long.status_code == 422 and long.json()["detail"][0]["loc"] == ["body", "prompt"]
    submitted = draw(server, "/images/jobs")
    assert submitted.status_code == 202
    url = server.url + submitted.headers["location"]
    deadline = time.monotonic() + 60
    while (status := httpx.get(url, headers=BEARER).json())["status"] != "succeeded":
        assert status["status"] in ("pending", "running") and time.monotonic() < deadline
        time.sleep(0.1)
    result = status["result"]
    assert result["media_type"] == "image/png" and result["seed"] == 7
    assert base64.b64decode(result["base64"]) == draw(server).content
    waited = httpx.post(
        server.url + "/images/jobs",
        json=SMALL,
        headers={**BEARER, "Prefer": "wait=60"},
        timeout=120,
    )
    assert waited.status_code == 200 and waited.headers["content-type"] == "image/png"
    assert waited.headers["x-seed"] == "7" and waited.content == draw(server).content


def test_the_routes_ceilings_on_size_and_steps(server: Server) -> None:
    """docs/spec.md, Limits (`max_image_pixels`, `max_steps`): a text-to-image route refuses
    a width x height over `max_image_pixels` (default 1024x1024) and more steps than `max_steps`
    (default 50) with a 422 naming the field, before any model work; a route may raise
    them (the job route of specs/images.yaml allows 100 steps). A job route refuses at
    submit, not with a failed job."""
    started = time.monotonic()
    big = draw(server, width=2048, height=1024)
    assert big.status_code == 422
    assert big.json()["detail"][0]["loc"] == ["body", "width"]
    assert "at most 1048576 pixels (e.g. 1024x1024)" in big.json()["detail"][0]["msg"]
    many = draw(server, steps=51)
    assert many.status_code == 422
    assert many.json()["detail"][0] | {"msg": "must be at most 50"} == many.json()["detail"][0]
    assert time.monotonic() - started < 5  # refused, not drawn: 2048x1024 takes far longer
    assert draw(server, width=1024, height=1024, steps=1).status_code == 200
    assert draw(server, "/images/jobs", steps=60).status_code == 202
    refused = draw(server, "/images/jobs", steps=101)
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "steps"]


def test_what_an_image_route_cannot_do_is_refused(tmp_path: Path) -> None:
    """docs/spec.md, Routes (`generate`) and Limits (`max_image_pixels`, `max_steps`): on a
    text-to-image model, `stream`, `max_tokens` and `batching` are refused, as is a
    `max_image_pixels` under one 64x64 image or over one 2048x2048; on a text model the image
    ceilings are refused."""
    spec = yaml.safe_load((SPECS / "images.yaml").read_text())
    spec["routes"][0] |= {"stream": True, "max_tokens": 10, "max_image_pixels": 4000}
    spec["routes"][1] |= {"max_image_pixels": 2048 * 2048 + 1}
    spec["batching"] = {"max_batch_size": 4}
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path, spec), tmp_path / "out")
    text = str(caught.value)
    assert "POST /images makes an image, which is not streamed" in text
    assert "`max_tokens` is not read by POST /images, which makes images" in text
    assert "a text-to-image model makes one image at a time" in text
    assert "routes[0].max_image_pixels: must be at least 4096: the smallest image is 64x64" in text
    assert "routes[1].max_image_pixels: must be at most 4194304: the largest image is" in text
    words = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    words["routes"][0] |= {"max_image_pixels": 4096, "max_steps": 10}
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path, words), tmp_path / "out")
    text = str(caught.value)
    for key in ("max_image_pixels", "max_steps"):
        assert f"`{key}` applies to a text-to-image model's generate routes; POST" in text


def test_with_a_web_tier_only_the_models_image_carries_diffusers(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`shape`): with `shape: split` the CPU web tier installs no
    model packages; diffusers goes only where the pipeline runs."""
    from modal_images import packages_of

    spec = yaml.safe_load((SPECS / "images.yaml").read_text()) | {"shape": "split"}
    source = pipeline.build(write_spec(tmp_path, spec), tmp_path / "out").source
    assert "diffusers==0.42.1" in packages_of(source, "image")
    web = packages_of(source, "web_image")
    assert not [p for p in web if p.split("==")[0] in ("diffusers", "torch", "transformers")]


def test_cancelling_an_image_job_stops_its_denoising(server: Server) -> None:
    """docs/spec.md, Jobs (`DELETE`): cancelling a job that is making an image stops the
    denoising at its next step, so the model is free for the next request: a 1024x1024
    job of 100 steps (minutes here) is cancelled, and a small image right after it comes
    back in seconds."""
    big = {"width": 1024, "height": 1024, "steps": 100}
    submitted = draw(server, "/images/jobs", **big)
    assert submitted.status_code == 202
    url = server.url + submitted.headers["location"]
    deadline = time.monotonic() + 30
    while httpx.get(url, headers=BEARER).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(1)  # a few steps in
    cancelled = httpx.delete(url, headers=BEARER)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    started = time.monotonic()
    assert draw(server).status_code == 200
    assert time.monotonic() - started < 20
