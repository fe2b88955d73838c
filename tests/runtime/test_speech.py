"""Speech recognition: specs/transcribe.yaml served by a real `endpointgen serve`
(uvicorn) on a tiny random-weight wav2vec2 made here; each answer checked against
transformers' own automatic-speech-recognition pipeline on the same samples."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
import yaml
from conftest import SPECS, write_spec
from servers import Server

pytestmark = pytest.mark.slow

KEY = {"X-API-Key": "key-one"}
FORMATS = [  # (soundfile format, subtype, media type)
    ("WAV", None, "audio/wav"),
    ("FLAC", None, "audio/flac"),
    ("OGG", "VORBIS", "audio/ogg"),
    ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_asr: Path) -> Iterator[Server]:
    spec = yaml.safe_load((SPECS / "transcribe.yaml").read_text())
    spec["model"]["id"] = str(tiny_asr)
    running = Server(write_spec(tmp_path_factory.mktemp("transcribe"), spec))
    running.wait_ready()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def oracle(tiny_asr: Path) -> Any:
    from transformers import pipeline

    return pipeline("automatic-speech-recognition", model=str(tiny_asr))


def sound(seconds: float, rate: int, channels: int = 1) -> Any:
    """A chirp, different at every moment, so that the text differs along it."""
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def encoded(samples: Any, rate: int, kind: str, subtype: str | None) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=kind, subtype=subtype)
    return out.getvalue()


def transcribe(
    server: Server, content: bytes, media: str, timestamps: bool = False
) -> httpx.Response:
    return httpx.post(
        server.url + "/transcribe",
        params={"timestamps": "true"} if timestamps else None,
        files={"file": ("speech", content, media)},
        headers=KEY,
        timeout=120,
    )


def expected(oracle: Any, content: bytes, **options: Any) -> Any:
    """What the pipeline makes of the same file: decoded and resampled as the route does."""
    from endpointgen.runtime.engines.speech import read_audio

    return oracle({"raw": read_audio(content, 16000, 3600), "sampling_rate": 16000}, **options)


@pytest.mark.parametrize(("kind", "subtype", "media"), FORMATS, ids=[f[0] for f in FORMATS])
def test_each_audio_format_gives_the_pipelines_text(
    server: Server, oracle: Any, kind: str, subtype: str | None, media: str
) -> None:
    """docs/spec.md, Routes without a model (`upload`, `speech-recognition`): a WAV, FLAC,
    OGG or MP3 upload, at any rate and in stereo too, gives `{text, seconds}`: the text
    the automatic-speech-recognition pipeline gives for it at the model's rate."""
    content = encoded(sound(2.0, 24000, channels=2), 24000, kind, subtype)
    answer = transcribe(server, content, media)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["content_type"] == media
    assert body["text"] == expected(oracle, content)["text"].strip() != ""
    assert body["seconds"] == pytest.approx(2.0, abs=0.1)
    assert "chunks" not in body


def test_timestamps_and_long_audio_in_chunks(server: Server, oracle: Any) -> None:
    """docs/spec.md, Routes without a model (`speech-recognition`): `?timestamps=true`
    adds `chunks` with each word's start and end; audio past 30 s is transcribed in
    chunks, as the pipeline's `chunk_length_s` does."""
    content = encoded(sound(3.0, 16000), 16000, "WAV", None)
    timed = transcribe(server, content, "audio/wav", timestamps=True).json()
    want = expected(oracle, content, return_timestamps="word")
    assert [c["text"] for c in timed["chunks"]] == [c["text"] for c in want["chunks"]]
    assert [(c["start"], c["end"]) for c in timed["chunks"]] == [
        (round(float(c["timestamp"][0]), 3), round(float(c["timestamp"][1]), 3))
        for c in want["chunks"]
    ]
    long = encoded(sound(70.0, 16000), 16000, "FLAC", None)
    answer = transcribe(server, long, "audio/flac")
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == expected(oracle, long, chunk_length_s=30)["text"].strip()
    assert answer.json()["seconds"] == pytest.approx(70.0)


def test_what_is_not_audio_is_refused(server: Server) -> None:
    """docs/spec.md, Routes without a model (`speech-recognition`): bytes no decoder reads
    get 422, another media type 415, no key 401; the server stays up."""
    bad = transcribe(server, b"RIFF....WAVEfmt not really", "audio/wav")
    assert bad.status_code == 422
    assert bad.json()["error"] == "the file is not readable audio (WAV, FLAC, OGG or MP3)"
    assert transcribe(server, b"GIF89a", "image/gif").status_code == 415
    files = {"file": ("s", encoded(sound(0.5, 16000), 16000, "WAV", None), "audio/wav")}
    assert httpx.post(server.url + "/transcribe", files=files).status_code == 401
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


def test_an_untyped_upload_is_known_by_its_content(server: Server, oracle: Any) -> None:
    """docs/spec.md, Routes without a model (`upload`): a file sent as
    `application/octet-stream` (plain `curl -F file=@a.wav`) is identified from its first
    bytes, and taken when that type is allowed; what it cannot be identified as is 415."""
    for kind, subtype, media in FORMATS:
        content = encoded(sound(1.0, 16000), 16000, kind, subtype)
        answer = transcribe(server, content, "application/octet-stream")
        assert answer.status_code == 200, (kind, answer.text)
        assert answer.json()["content_type"] in (media, "audio/wav", "audio/x-wav")
        assert answer.json()["text"] == expected(oracle, content)["text"].strip()
    gif = transcribe(server, b"GIF89a" + bytes(64), "application/octet-stream")
    assert gif.status_code == 415
    assert "application/octet-stream is not one of" in gif.json()["error"]
    if shutil.which("curl") is None:
        return  # the rest needs curl itself
    curl = subprocess.run(
        ["curl", "-s", "-H", "X-API-Key: key-one", "-F", "file=@-", server.url + "/transcribe"],
        input=encoded(sound(1.0, 16000), 16000, "WAV", None),
        capture_output=True,
        check=True,
    )
    assert json.loads(curl.stdout)["content_type"] in ("audio/wav", "audio/x-wav")
