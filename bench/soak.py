"""Soak: 10,000 mixed good and bad requests against one served app with auth, CORS and a
rate limit (docs/security.md), while a prober times `/health`.

The app (`endpointgen serve`) has bearer auth, CORS for one origin, a rate limit by key,
a JSON echo route, a route with `any` and `object` body fields, a CSV upload, an image
upload (the tiny random ViT from `make models`), an audio upload (a tiny random wav2vec2),
a generic webhook, two handler job routes with callbacks, and a `generate` route and
OpenAI's `/v1` on a tiny random GPT-2 (both models made at start by this file in a worker
process). The mix, drawn in a fixed order: good calls, missing, wrong and doubled keys,
malformed and NaN bodies, bodies over the limit (by length and chunked), preflights from
allowed and other origins, wide and undecodable CSVs, image bombs and garbage, wrong
media types, forged webhooks, unknown paths, odd request ids; and hardening round 3's
attacks: `NaN`, `Infinity`, `1e400` and lone surrogates in `any` and `object` fields (on
a job route too), `Prefer: wait=²` and `wait=` with 5000 digits on a job submit,
unparseable `callback_url`s, a job read under another route's `/jobs/<id>`, 100,000
`stop` strings, request heads of 100 KB and of 150 headers, audio headers declaring
273 GiB or 2 hours at 48 kHz, a WAV at 1 Hz, a 1,000,000 x 1 PNG, a TIFF sent as
`image/png`, and chat messages with an unknown role.

`SOAK_REQUESTS` and `SOAK_WARMUP` in the environment make a shorter run. A smoke run
(`bench/run.py --smoke`) sends every kind of request once, after a warm-up of 16.

Three figures, each with its target:
- `soak-5xx`: answers of 500 or more (target 0: nothing a client sends is a server error);
- `soak-rss`: the server's RSS after the soak over its RSS after a warm-up of
  `WARMUP` requests of the same mix (target <= 1.10);
- `soak-health-p99`: `/health` latency, 99th percentile, probed every 20 ms while the
  attacks run (target < 50 ms), against its median on the idle server (reported).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import struct
import sys
import tempfile
import threading
import time
import wave
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from harness import (
    API_KEY,
    ROOT,
    Result,
    bench_env,
    endpointgen_cmd,
    free_port,
    rss_kib,
    run_worker,
    serving,
    sized,
    smoke,
    write_spec,
)

REQUESTS = int(os.environ.get("SOAK_REQUESTS", sized("10000", "0")))
WARMUP = int(os.environ.get("SOAK_WARMUP", sized("1000", "16")))
CONCURRENCY = 16
PROBE_EVERY = 0.02  # seconds between /health probes
ORIGIN = "https://app.example.com"
TINY_VIT = ROOT / "specs" / "models" / "tiny-vit"  # written by `make models`
KEY = {"Authorization": f"Bearer {API_KEY}"}


HANDLER = """\
def echo(params):
    return {"data": params["data"]}
"""


def job_route(path: str) -> dict[str, Any]:
    return {
        "path": path,
        "method": "POST",
        "action": "handler",
        "handler": "soak_handlers.py:echo",
        "request": {"data": {"type": "any"}},
        "job": {"ttl": 60},
    }


def spec(writer: Path, ears: Path) -> dict[str, Any]:
    return {
        "name": "bench-soak",
        "models": {
            "vision": {"id": str(TINY_VIT), "task": "image-classification"},
            "writer": {"id": str(writer), "task": "text-generation"},
            "ears": {"id": str(ears), "task": "automatic-speech-recognition"},
        },
        "auth": {"mode": "bearer", "secret": "soak-keys"},
        "cors": {"origins": [ORIGIN]},
        "rate_limit": {"limit": "100000/minute", "key": "ip"},
        "jobs": {"callbacks": {"hosts": ["hooks.example.com"], "env": "SOAK_CALLBACK_SECRET"}},
        "routes": [
            {
                "path": "/any",
                "method": "POST",
                "action": "respond",
                "request": {
                    "data": {"type": "any", "default": None},
                    "meta": {"type": "object", "default": {}},
                },
                "response": {"data": "{data}", "meta": "{meta}"},
            },
            job_route("/jobs-a"),
            job_route("/jobs-b"),
            {
                "path": "/generate",
                "method": "POST",
                "action": "generate",
                "model": "writer",
                "max_bytes": 2_097_152,
            },
            {"path": "/v1", "action": "openai", "model": "writer"},
            {
                "path": "/transcribe",
                "method": "POST",
                "action": "upload",
                "processor": "speech-recognition",
                "model": "ears",
                "content_types": ["audio/wav", "audio/flac"],
                "max_bytes": 1_048_576,
            },
            {
                "path": "/echo",
                "method": "POST",
                "action": "respond",
                "request": {"x": {"type": "float"}, "tags": {"type": "list[str]", "default": []}},
                "response": {"x": "{x}"},
                "max_bytes": 65_536,
            },
            {
                "path": "/csv",
                "method": "POST",
                "action": "upload",
                "processor": "csv",
                "content_types": ["text/csv"],
                "max_bytes": 2_097_152,
            },
            {
                "path": "/image",
                "method": "POST",
                "action": "upload",
                "processor": "image-classification",
                "model": "vision",
                "content_types": ["image/png"],
                "max_bytes": 1_048_576,
            },
            {
                "path": "/hook",
                "method": "POST",
                "action": "webhook",
                "provider": "generic",
                "env": "HOOK_SECRET",
                "secret": "soak-hook",
                "signature": {"header": "X-Signature"},
            },
            {"path": "/health", "action": "health"},
        ],
    }


def png(width: int, height: int, pixels: bool = True) -> bytes:
    """A PNG of `width` x `height`; with `pixels=False`, only a header declaring them."""
    if pixels:
        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (width, height), (120, 30, 200)).save(buffer, "PNG")
        return buffer.getvalue()

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def streaminfo_flac(rate: int, channels: int, frames: int) -> bytes:
    """A FLAC file of nothing but its STREAMINFO block, which declares `frames` frames of
    16-bit samples at `rate` Hz in `channels` channels."""
    fields = (rate << 44) | ((channels - 1) << 41) | (15 << 36) | frames
    info = struct.pack(">HH", 4096, 4096) + bytes(6) + fields.to_bytes(8, "big") + bytes(16)
    return b"fLaC" + bytes([0x80, 0, 0, len(info)]) + info


def wav(rate: int, frames: int) -> bytes:
    """A mono 16-bit WAV of `frames` frames of silence at `rate` Hz."""
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(bytes(2 * frames))
    return out.getvalue()


def tiff(width: int, height: int) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(out, "TIFF")
    return out.getvalue()


Attack = Callable[[httpx.AsyncClient], Any]


def upload(path: str, name: str, content: bytes, kind: str, **headers: str) -> Attack:
    files = {"file": (name, content, kind)}
    return lambda c: c.post(path, files=files, headers={**KEY, **headers})


def attacks() -> dict[str, tuple[int, Attack]]:
    """Each kind of request, with its weight in the mix."""
    small_png, bomb = png(32, 32), png(13_000, 13_000, pixels=False)
    wide = (",".join(f"c{i}" for i in range(1_500)) + "\n").encode()
    good_csv = b"a,b\n" + b"".join(f"{i},{i * 2}\n".encode() for i in range(200))
    json_type = {"Content-Type": "application/json"}

    def chunked(size: int) -> Attack:
        async def body() -> Any:
            for _ in range(size // 65_536):
                yield b"x" * 65_536

        return lambda c: c.post("/echo", content=body(), headers={**KEY, **json_type})

    return {
        "good echo": (20, lambda c: c.post("/echo", json={"x": 1.5, "tags": ["a"]}, headers=KEY)),
        "no key": (6, lambda c: c.post("/echo", json={"x": 1})),
        "wrong key": (
            6,
            lambda c: c.post("/echo", json={"x": 1}, headers={"Authorization": "Bearer no"}),
        ),
        "two keys": (
            3,
            lambda c: c.post(
                "/echo",
                json={"x": 1},
                headers=[("Authorization", f"Bearer {API_KEY}"), ("Authorization", "Bearer no")],
            ),
        ),
        "malformed json": (
            5,
            lambda c: c.post("/echo", content=b'{"x": 1,,', headers={**KEY, **json_type}),
        ),
        "malformed, no key": (
            3,
            lambda c: c.post("/echo", content=b'{"x": [[[', headers=json_type),
        ),
        "nan": (
            4,
            lambda c: c.post("/echo", content=b'{"x": NaN}', headers={**KEY, **json_type}),
        ),
        "wrong types": (4, lambda c: c.post("/echo", json={"x": "one", "y": 2}, headers=KEY)),
        "over max_bytes": (
            2,
            lambda c: c.post("/echo", content=b" " * 70_000, headers={**KEY, **json_type}),
        ),
        "chunked over max_bytes": (2, chunked(262_144)),
        "preflight": (
            4,
            lambda c: c.options(
                "/echo",
                headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
            ),
        ),
        "preflight, other origin": (
            3,
            lambda c: c.options(
                "/echo",
                headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
            ),
        ),
        "good csv": (5, upload("/csv", "ok.csv", good_csv, "text/csv")),
        "wide csv": (3, upload("/csv", "wide.csv", wide, "text/csv")),
        "csv not utf-8": (2, upload("/csv", "bad.csv", b"\xff\xfe\x00a,b\n", "text/csv")),
        "good image": (5, upload("/image", "ok.png", small_png, "image/png")),
        "image bomb": (3, upload("/image", "bomb.png", bomb, "image/png")),
        "image garbage": (2, upload("/image", "junk.png", b"\x89PNG not really", "image/png")),
        "wrong media type": (2, upload("/image", "x.gif", b"GIF89a", "image/gif")),
        "forged webhook": (
            4,
            lambda c: c.post("/hook", content=b'{"a": 1}', headers={"X-Signature": "00" * 32}),
        ),
        "unknown path": (3, lambda c: c.get("/../../etc/passwd", headers=KEY)),
        "odd request id": (
            3,
            lambda c: c.post("/echo", json={"x": 2}, headers={**KEY, "X-Request-ID": "r" * 300}),
        ),
        **round_three(),
    }


def round_three() -> dict[str, tuple[int, Attack]]:
    """Hardening round 3 (docs/security.md): each is a 4xx or a plain 202, never a 5xx."""
    json_type = {**KEY, "Content-Type": "application/json"}
    submit = {**KEY, "Content-Type": "application/json"}

    def raw(path: str, body: bytes, prefer: bytes = b"") -> Attack:
        sent = [(k.encode(), v.encode()) for k, v in json_type.items()]
        if prefer:
            sent.append((b"Prefer", prefer))
        return lambda c: c.post(path, content=body, headers=sent)

    def callback(url: str) -> Attack:
        return lambda c: c.post(
            "/jobs-a", params={"callback_url": url}, json={"data": 1}, headers=KEY
        )

    async def other_route(c: httpx.AsyncClient) -> httpx.Response:
        made = await c.post("/jobs-a", json={"data": {"n": 1}}, headers=KEY)
        if made.status_code != 202:
            return made
        return await c.get(f"/jobs-b/jobs/{made.json()['id']}", headers=KEY)

    stops = json.dumps({"prompt": "hi", "max_tokens": 1, "stop": ["a"] * 100_000}).encode()
    big_head = {**KEY, "X-Pad": "p" * 100_000}

    def chat(role: str) -> Attack:
        body = {"model": "soak", "messages": [{"role": role, "content": "hi"}], "max_tokens": 4}
        return lambda c: c.post("/v1/chat/completions", json=body, headers=KEY)

    many_headers = [*KEY.items(), *((f"X-H{i}", "1") for i in range(150))]
    return {
        "good any": (3, lambda c: c.post("/any", json={"data": [1, "a"], "meta": {}}, headers=KEY)),
        "any: NaN": (2, raw("/any", b'{"data": {"v": NaN}}')),
        "any: Infinity": (1, raw("/any", b'{"data": [Infinity]}')),
        "any: 1e400": (1, raw("/any", b'{"data": 1e400}')),
        "any: lone surrogate": (1, raw("/any", b'{"data": "\\ud800"}')),
        "object: -Infinity": (1, raw("/any", b'{"meta": {"a": -Infinity}}')),
        "job: good": (2, lambda c: c.post("/jobs-a", json={"data": [1, 2]}, headers=KEY)),
        "job: NaN": (1, raw("/jobs-a", b'{"data": NaN}')),
        "job: lone surrogate": (1, raw("/jobs-b", b'{"data": {"k": "\\udc00"}}')),
        "job: prefer wait=\u00b2": (
            1,
            raw("/jobs-a", b'{"data": 1}', "wait=\u00b2".encode()),
        ),
        "job: prefer 5000 digits": (
            1,
            raw("/jobs-a", b'{"data": 1}', ("wait=" + "9" * 5000).encode()),
        ),
        "callback [::1": (1, callback("http://[::1/")),
        "callback fullwidth #": (1, callback("http://hooks.example.com\uff03@evil.example/")),
        "callback port 99999": (1, callback("http://hooks.example.com:99999/")),
        "job under other route": (1, other_route),
        "100k stop strings": (1, lambda c: c.post("/generate", content=stops, headers=submit)),
        "good generate": (
            2,
            lambda c: c.post("/generate", json={"prompt": "hi", "max_tokens": 4}, headers=KEY),
        ),
        "100 KB head": (1, lambda c: c.get("/health", headers=big_head)),
        "150 headers": (1, lambda c: c.get("/health", headers=many_headers)),
        "good audio": (2, upload("/transcribe", "ok.wav", wav(16_000, 16_000), "audio/wav")),
        "audio: 273 GiB header": (
            1,
            upload("/transcribe", "a.flac", streaminfo_flac(655_350, 8, 9 * 10**9), "audio/flac"),
        ),
        "audio: 2 h at 48 kHz": (
            1,
            upload("/transcribe", "b.flac", streaminfo_flac(48_000, 1, 345_600_000), "audio/flac"),
        ),
        "audio: 1 Hz wav": (1, upload("/transcribe", "c.wav", wav(1, 7_000), "audio/wav")),
        "image: 1000000x1": (1, upload("/image", "wide.png", png(1_000_000, 1), "image/png")),
        "image: tiff as png": (1, upload("/image", "t.png", tiff(40, 30), "image/png")),
        "good chat": (2, chat("user")),
        "chat: unknown role": (1, chat("wizard")),
    }


class Prober(threading.Thread):
    """GET /health every `PROBE_EVERY` seconds on its own connection, timing each."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.done = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while True:  # one probe at least, however short the run (a smoke run's)
                started = time.perf_counter()
                status = client.get("/health").status_code
                self.latencies.append(time.perf_counter() - started)
                self.statuses[status] += 1
                if self.done.wait(PROBE_EVERY):
                    return


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def send(url: str, kinds: list[str], table: dict[str, tuple[int, Attack]]) -> Counter[str]:
    """Each request of `kinds`, `CONCURRENCY` at a time; counts of (kind, status)."""
    seen: Counter[str] = Counter()
    queue = iter(kinds)
    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def worker() -> None:
            for kind in queue:
                try:
                    answer = await table[kind][1](client)
                    seen[f"{kind}: {answer.status_code}"] += 1
                except httpx.HTTPError as exc:  # the server cut a connection: note it
                    seen[f"{kind}: {type(exc).__name__}"] += 1

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return seen


def idle_health(url: str, count: int = sized(100, 10)) -> float:
    with httpx.Client(base_url=url) as client:
        times = []
        for _ in range(count):
            started = time.perf_counter()
            client.get("/health")
            times.append(time.perf_counter() - started)
    return percentile(times, 0.5)


def run(logs: Path) -> list[Result]:
    table = attacks()
    rng = random.Random(7)
    names = list(table)
    weights = [table[n][0] for n in names]
    kinds = rng.choices(names, weights, k=WARMUP + REQUESTS)
    if smoke():  # then each kind of request once, in no particular order
        kinds += rng.sample(names, len(names))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as folder:
        made = run_worker("soak.py", "--models", folder)
        (Path(folder) / "soak_handlers.py").write_text(HANDLER, encoding="utf-8")
        path = write_spec(Path(folder), spec(Path(made["writer"]), Path(made["ears"])))
        cmd = [*endpointgen_cmd(), "serve", str(path), "--port", str(port)]
        env = bench_env(HOOK_SECRET="soak-hook-secret", SOAK_CALLBACK_SECRET="soak-callbacks")
        with serving(cmd, port, logs / "soak.log", env=env) as server:
            idle = idle_health(url)
            asyncio.run(send(url, kinds[:WARMUP], table))
            warm = rss_kib(server.pid)
            prober = Prober(url)
            prober.start()
            started = time.perf_counter()
            seen = asyncio.run(send(url, kinds[WARMUP:], table))
            elapsed = time.perf_counter() - started
            prober.done.set()
            prober.join()
            after = rss_kib(server.pid)
    errors = {k: v for k, v in seen.items() if k.rsplit(": ", 1)[1][0] == "5"}
    cut = {k: v for k, v in seen.items() if not k.rsplit(": ", 1)[1].isdigit()}
    p99 = percentile(prober.latencies, 0.99) * 1000
    details = {
        "requests": len(kinds) - WARMUP,
        "seconds": round(elapsed, 1),
        "rps": round((len(kinds) - WARMUP) / elapsed, 1),
        "answers": dict(sorted(seen.items())),
        "connection_errors": cut,
    }
    return [
        Result("soak-5xx", sum(errors.values()), None, "answers", "== 0", not errors, details),
        Result(
            "soak-rss",
            after / 1024,
            warm / 1024,
            "MiB",
            "ratio <= 1.1",
            after <= warm * 1.10,
            {"warmup_requests": WARMUP},
        ),
        Result(
            "soak-health-p99",
            p99,
            idle * 1000,
            "ms",
            "< 50 ms",
            p99 < 50,
            {
                "probes": len(prober.latencies),
                "p50_ms": round(percentile(prober.latencies, 0.5) * 1000, 2),
                "max_ms": round(max(prober.latencies) * 1000, 2),
                "statuses": dict(prober.statuses),
                "baseline": "median /health on the idle server",
            },
        ),
    ]


def make_models(folder: Path) -> dict[str, str]:
    """The tiny random GPT-2 and wav2vec2 of tests/models.py, loaded by file so the
    harness itself never imports torch (this runs in a worker process)."""
    import importlib.util

    found = importlib.util.spec_from_file_location("soak_models", ROOT / "tests/models.py")
    assert found is not None and found.loader is not None
    models = importlib.util.module_from_spec(found)
    found.loader.exec_module(models)
    return {
        "writer": str(models.make_tiny_gpt2(folder / "tiny-gpt2")),
        "ears": str(models.make_tiny_ctc_asr(folder / "tiny-asr")),
    }


if __name__ == "__main__" and sys.argv[1:2] == ["--models"]:
    print(json.dumps(make_models(Path(sys.argv[2]))))
elif __name__ == "__main__":
    for result in run(Path(tempfile.mkdtemp(prefix="soak-logs-"))):
        print(json.dumps(vars(result), default=str))
