"""Hardening, round 3: audio and image uploads whose headers ask for far more than their
bytes (docs/security.md). Each attack is sent to a real `endpointgen serve` (uvicorn) on
a tiny model, and must be refused at once with a JSON error, the server's peak memory
barely moved."""

from __future__ import annotations

import io
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
import yaml
from conftest import SPECS, write_spec
from PIL import Image
from servers import Server

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": "key-one"}


def serve(folder: Path, spec: dict[str, Any]) -> Server:
    running = Server(write_spec(folder, spec))
    running.wait_ready()
    return running


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory, tiny_asr: Path) -> Iterator[Server]:
    spec = yaml.safe_load((SPECS / "transcribe.yaml").read_text())
    spec["model"]["id"] = str(tiny_asr)
    running = serve(tmp_path_factory.mktemp("transcribe"), spec)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def detect(tmp_path_factory: pytest.TempPathFactory, tiny_detector: Path) -> Iterator[Server]:
    spec = yaml.safe_load((SPECS / "detect.yaml").read_text())
    spec["model"]["id"] = str(tiny_detector)
    running = serve(tmp_path_factory.mktemp("detect"), spec)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from models import make_tiny_clip

    folder = tmp_path_factory.mktemp("clip")
    spec = {
        "name": "clip",
        "model": {"id": str(make_tiny_clip(folder / "model")), "task": "image-text-embeddings"},
        "auth": {"mode": "api_key"},
        "routes": [
            {
                "path": "/image",
                "method": "POST",
                "action": "upload",
                "processor": "image-embeddings",
                "content_types": ["image/png", "image/jpeg"],
            },
            {"path": "/health", "action": "health"},
        ],
    }
    running = serve(folder, spec)
    yield running
    running.stop()


def peak_mb(server: Server) -> float:
    """The server process's peak resident memory so far, in MB."""
    for line in Path(f"/proc/{server.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def post(server: Server, path: str, content: bytes, media: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = httpx.post(
        server.url + path, files={"file": ("f", content, media)}, headers=KEY, timeout=120
    )
    return answer, time.monotonic() - started


def refused(server: Server, path: str, content: bytes, media: str, status: int) -> str:
    """Send it; it is refused with `status` within 2 s, a JSON error with no traceback,
    and the server's peak memory grows by less than 100 MB. The error's text."""
    before = peak_mb(server)
    answer, took = post(server, path, content, media)
    assert answer.status_code == status, answer.text
    assert took < 2, took
    assert peak_mb(server) - before < 100, (before, peak_mb(server))
    error = answer.json()["error"]
    assert "Traceback" not in answer.text and isinstance(error, str)
    return error


def streaminfo_flac(rate: int, channels: int, frames: int) -> bytes:
    """A FLAC file of nothing but its STREAMINFO block, which declares `frames` frames of
    16-bit samples at `rate` Hz in `channels` channels."""
    fields = (rate << 44) | ((channels - 1) << 41) | (15 << 36) | frames
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + fields.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80, 0, 0, len(info)]) + info


def encoded(samples: Any, rate: int, kind: str) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=kind)
    return out.getvalue()


def test_an_audio_header_declaring_273_gib_is_refused_before_decoding(speech: Server) -> None:
    """Hardening, round 3 (7): a 42-byte FLAC declaring 655 kHz x 8 channels x 9e9 frames
    (273 GiB of float32 samples; a 500 "Unable to allocate" before) is a 422 naming the
    rate, a WAV of 9 channels too; the same frames at 16 kHz mono (156 hours) a 413."""
    error = refused(
        speech, "/transcribe", streaminfo_flac(655_350, 8, 9 * 10**9), "audio/flac", 422
    )
    assert "655350 Hz" in error
    nine = encoded(np.zeros((100, 9), np.int16), 16_000, "WAV")
    error = refused(speech, "/transcribe", nine, "audio/wav", 422)
    assert "9 channels" in error
    bomb = streaminfo_flac(16_000, 1, 9 * 10**9)
    assert "longer than" in refused(speech, "/transcribe", bomb, "audio/flac", 413)


def test_audio_decoding_past_a_gib_of_samples_is_refused(speech: Server) -> None:
    """Hardening, round 3 (7): within the 4-hour cap, 48 kHz for 2 hours is 345,600,000
    samples (1.3 GB once decoded, +450 MB a request for a 113 KB FLAC of silence at a
    lower rate); past `engines.MAX_SAMPLES` (2^28, 1 GiB as float32) it is a 413 from the
    header, before anything is decoded."""
    error = refused(
        speech, "/transcribe", streaminfo_flac(48_000, 1, 345_600_000), "audio/flac", 413
    )
    assert "268435456 samples" in error


def test_audio_at_1_hz_is_not_resampled_into_hours(speech: Server) -> None:
    """Hardening, round 3 (7): a 14 KB WAV of 7,000 samples at 1 Hz (resampled to 16 kHz,
    it took 70 s of CPU and +1.75 GB) is a 422: rates from 8 kHz to 192 kHz are
    accepted. Ordinary audio still transcribes."""
    wav = encoded(np.zeros(7000, np.int16), 1, "WAV")
    assert len(wav) < 15_000
    assert "1 Hz" in refused(speech, "/transcribe", wav, "audio/wav", 422)
    fine, _ = post(
        speech, "/transcribe", encoded(np.zeros(8000, np.int16), 8000, "WAV"), "audio/wav"
    )
    assert fine.status_code == 200 and fine.json()["seconds"] == 1.0


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("L", (width, height)).save(out, "PNG")
    return out.getvalue()


def test_a_million_by_one_image_is_refused_on_image_embeddings(clip: Server) -> None:
    """Hardening, round 3 (8): a 1 KB PNG of 1,000,000 x 1 pixels, which the processor
    scales to 224 pixels on its short side (37 s and +9.7 GB before), is a 422 from its
    header: the longer side may be at most `engines.MAX_ASPECT` (20) times the shorter.
    20 x 1 still embeds."""
    wide = png(1_000_000, 1)
    assert len(wide) < 2_000
    error = refused(clip, "/image", wide, "image/png", 422)
    assert (
        error
        == "the image is 1000000x1 pixels; its longer side may be at most 20 times its shorter"
    )
    assert "20 times" in refused(clip, "/image", png(1, 21), "image/png", 422)
    fine, _ = post(clip, "/image", png(20, 1), "image/png")
    assert fine.status_code == 200 and fine.json()["dim"] > 0


def test_a_20000_by_1_image_is_refused_on_object_detection(detect: Server) -> None:
    """Hardening, round 3 (8): 20,000 x 1 pixels was a 500 (`height=0` once resized); it
    is a 422 from its header."""
    assert "20 times" in refused(detect, "/detect", png(20_000, 1), "image/png", 422)
    fine, _ = post(detect, "/detect", png(64, 16), "image/png")
    assert fine.status_code == 200 and "objects" in fine.json()


def test_an_image_must_be_the_type_it_is_sent_as(detect: Server) -> None:
    """Hardening, round 3 (8): a TIFF (or a BMP, a GIF) sent as `image/png` or
    `image/jpeg` is a 422, never handed to the decoder; a PNG sent as `image/png`, a JPEG
    as `image/jpeg` and a WebP as `image/webp` are read."""
    pictures = {}
    for kind in ("TIFF", "BMP", "GIF", "PNG", "JPEG", "WEBP"):
        out = io.BytesIO()
        Image.new("RGB", (40, 30), "red").save(out, kind)
        pictures[kind] = out.getvalue()
    for kind in ("TIFF", "BMP", "GIF", "JPEG", "WEBP"):
        error = refused(detect, "/detect", pictures[kind], "image/png", 422)
        assert error == "the file is not a readable image of type image/png"
    assert refused(detect, "/detect", pictures["PNG"], "image/jpeg", 422)
    for kind, media in (("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")):
        answer, _ = post(detect, "/detect", pictures[kind], media)
        assert answer.status_code == 200, (kind, answer.text)
