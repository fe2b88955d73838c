"""The Hub cache on the app's Volume (`endpointgen-hf-cache` at HF_HOME), which every
container of every app on the same model shares: a download that stopped part-way (a
container killed, a connection cut) leaves the model's config without its weights, and
the next container must download the rest rather than load offline and fail forever.

Containers start as Modal starts them (tests/modal_container.py): `@modal.enter` loads
the model, and a load that fails raises, so Modal replaces the container. The Hub is a
local HTTP server (`HF_ENDPOINT`) serving a tiny classifier's files, as
tests/runtime/test_hub_token.py does, with the API routes `hub.fetch` reads; it records
every request, so a test knows whether a container asked it anything."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx2
import pytest
from conftest import write_spec
from modal_container import Cloud, Container
from servers import free_port

from endpointgen.compiler import pipeline
from endpointgen.runtime import hub
from endpointgen.runtime.tasks import LoadFailed

REPO = "acme/tiny-classifier"
COMMIT = "c" * 40
WEIGHTS = "model.safetensors"
KEY = {"X-API-Key": "key-one"}


class LocalHub(http.server.ThreadingHTTPServer):
    """The Hub for one repo, served from `files`: downloads (`HEAD`/`GET <repo>/resolve/
    <rev>/<file>`), and the revision and file tree of the API. A file in `cut` is sent
    half-way, then the connection drops, each time it is asked for: a download that
    never finishes, as when a container is killed during it."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.asked: list[str] = []  # "METHOD path", one per request
        self.cut: set[str] = set()
        super().__init__(("127.0.0.1", free_port()), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def downloads(self) -> list[str]:
        """The files whose contents were sent (GET), in order."""
        prefix = f"GET /{REPO}/resolve/"
        return [
            ask[len(prefix) :].partition("/")[2] for ask in self.asked if ask.startswith(prefix)
        ]


class Handler(http.server.BaseHTTPRequestHandler):
    server: LocalHub

    def log_message(self, format: str, *args: object) -> None:
        pass

    def answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        path = unquote(urlsplit(self.path).path)
        self.server.asked.append(f"{self.command} {path}")
        resolve, api = f"/{REPO}/resolve/", f"/api/models/{REPO}"
        if path.startswith(resolve):
            return self.file(path[len(resolve) :].partition("/")[2])
        if path in (api, f"{api}/revision/main", f"{api}/revision/{COMMIT}"):
            siblings = [{"rfilename": name} for name in self.server.files]
            return self.json({"id": REPO, "sha": COMMIT, "siblings": siblings})
        if path in (f"{api}/tree/main", f"{api}/tree/{COMMIT}"):
            return self.json(
                [
                    {"type": "file", "path": name, "size": len(data), "oid": etag(data)[:40]}
                    for name, data in self.server.files.items()
                ]
            )
        return self.answer(404, {"X-Error-Code": "EntryNotFound"})

    do_GET = do_HEAD

    def json(self, value: Any) -> None:
        self.answer(200, {"Content-Type": "application/json"}, json.dumps(value).encode())

    def file(self, name: str) -> None:
        data = self.server.files.get(name)
        if data is None:
            return self.answer(404, {"X-Error-Code": "EntryNotFound"})
        found = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag(data)}"'}
        if self.command == "GET" and name in self.server.cut:
            self.send_response(200)
            for header, value in {**found, "Content-Length": str(len(data))}.items():
                self.send_header(header, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return None
        return self.answer(200, found, data)


def etag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def local_hub(tiny_bert: Path) -> Iterator[LocalHub]:
    server = LocalHub(files_of(tiny_bert))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture
def cache(tmp_path: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HF_HOME, empty, with the Hub at `local_hub` and downloads on, as in a container
    (huggingface_hub reads its settings once, when imported)."""
    import huggingface_hub.constants as constants

    home = tmp_path / "hf"
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", local_hub.url)
    template = local_hub.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    import transformers.utils.hub

    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)  # made anew, for this Hub
    monkeypatch.setenv("API_KEYS", "key-one")
    return home


def repo_folder(cache: Path) -> Path:
    return cache / "hub" / f"models--{REPO.replace('/', '--')}"


def in_cache(cache: Path, files: dict[str, bytes], etags: dict[str, str] | None = None) -> Path:
    """A snapshot as huggingface_hub writes one: each file a blob named by its ETag,
    linked from `snapshots/<commit>/`; `refs/main` names the commit. `etags`: a file's
    ETag when its blob is not its whole content (a download cut short)."""
    repo = repo_folder(cache)
    snapshot = repo / "snapshots" / COMMIT
    for name, data in files.items():
        blob = repo / "blobs" / (etags or {}).get(name, etag(data))
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def app(tmp_path: Path, task: str = "text-classification") -> Path:
    """A built module serving the Hub repo `REPO`: a classifier, or a speech recognizer."""
    route: dict[str, Any] = {"path": "/classify", "method": "POST", "action": "classify"}
    if task == "automatic-speech-recognition":
        route = {"path": "/transcribe", "method": "POST", "action": "upload"}
        route["processor"] = "speech-recognition"
    spec = {
        "name": "cached",
        "model": {"id": REPO, "task": task},
        "auth": {"mode": "api_key"},
        "routes": [route, {"path": "/health", "action": "health"}],
    }
    built = pipeline.build(write_spec(tmp_path / "spec", spec), tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    return built.path


def classifies(container: Container) -> None:
    """The container's model is loaded and answers."""
    assert container.module is not None and container.module.model.status == "ready"

    async def go() -> None:
        answer = await container.request("POST", "/classify", json={"text": "hi"}, headers=KEY)
        assert answer.status == 200, answer.body
        assert answer.json()["label"] in {"negative", "neutral", "positive"}
        await container.shutdown()

    asyncio.run(go())


def healthy(container: Container) -> None:
    """The container's model is loaded: `/health` says so."""
    assert container.module is not None and container.module.model.status == "ready"

    async def go() -> None:
        answer = await container.request("GET", "/health")
        assert answer.status == 200 and answer.json()["status"] == "ok", answer.body
        await container.shutdown()

    asyncio.run(go())


@pytest.mark.parametrize("weights", ["missing", "cut short"])
def test_a_download_that_left_the_config_without_its_weights_heals(
    tmp_path: Path, cache: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch, weights: str
) -> None:
    """The Volume holds the model's config and tokenizer but not its weights (or its
    weights cut short), as an interrupted download leaves them: the next container
    downloads the weights and serves, and the one after it loads offline, asking the
    Hub nothing. (Loading offline because the config was there failed every container,
    forever.)"""
    files = dict(local_hub.files)
    whole = files.pop(WEIGHTS)
    if weights == "cut short":
        files[WEIGHTS] = whole[: len(whole) // 2]
    snapshot = in_cache(cache, files, {WEIGHTS: etag(whole)})
    cloud = Cloud(app(tmp_path), monkeypatch)

    first = cloud.start("Server")
    classifies(first)
    assert local_hub.downloads() == [WEIGHTS]
    assert (snapshot / WEIGHTS).read_bytes() == whole

    local_hub.asked.clear()
    classifies(cloud.start("Server"))
    assert local_hub.asked == []


def test_an_interrupted_download_is_not_marked_complete_and_the_next_start_downloads_again(
    tmp_path: Path, cache: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first container's download of the weights is cut half-way: it fails to load
    (Modal replaces it), and the cache is not marked complete. The next container asks
    the Hub for the weights again and serves; the one after loads offline."""
    cloud = Cloud(app(tmp_path), monkeypatch)
    local_hub.cut = {WEIGHTS}
    with pytest.raises(LoadFailed):
        cloud.start("Server")
    assert WEIGHTS in local_hub.downloads()
    assert (repo_folder(cache) / "snapshots" / COMMIT / "config.json").is_file()
    assert hub.cached(REPO, None) is None
    assert not list(repo_folder(cache).glob(f"{hub.MARKERS}/*.json"))

    local_hub.cut.clear()
    local_hub.asked.clear()
    classifies(cloud.start("Server"))
    assert local_hub.downloads() == [WEIGHTS]

    local_hub.asked.clear()
    classifies(cloud.start("Server"))
    assert local_hub.asked == []
    assert (repo_folder(cache) / hub.MARKERS / f"{COMMIT}.json").is_file()


def test_a_download_cut_after_the_weights_is_not_loaded_offline(
    tmp_path: Path,
    cache: Path,
    local_hub: LocalHub,
    tiny_asr: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A speech recognizer reads its weights before its tokenizer and its processor's
    config: a download cut on the tokenizer's vocabulary leaves whole weights, yet the
    next container does not load offline (without its vocabulary the tokenizer fails,
    every time), but asks the Hub for the files that are missing."""
    local_hub.files = files_of(tiny_asr)
    cloud = Cloud(app(tmp_path, "automatic-speech-recognition"), monkeypatch)
    local_hub.cut = {"vocab.json"}
    with pytest.raises(LoadFailed):
        cloud.start("Server")
    snapshot = repo_folder(cache) / "snapshots" / COMMIT
    assert (snapshot / WEIGHTS).read_bytes() == local_hub.files[WEIGHTS]
    assert not (snapshot / "vocab.json").exists()

    local_hub.cut.clear()
    local_hub.asked.clear()
    healthy(cloud.start("Server"))
    assert local_hub.downloads() == ["vocab.json", "processor_config.json"]

    local_hub.asked.clear()
    healthy(cloud.start("Server"))
    assert local_hub.asked == []


def test_a_cache_from_before_markers_that_lacks_a_file_besides_the_weights_heals(
    tmp_path: Path,
    cache: Path,
    local_hub: LocalHub,
    tiny_asr: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache written before markers, by a download cut after the weights: its weights
    are whole, so it loads offline, until the processor's config is found missing; then
    the container asks the Hub for that file, and serves."""
    local_hub.files = files_of(tiny_asr)
    last = "processor_config.json"
    in_cache(cache, {name: data for name, data in local_hub.files.items() if name != last})
    cloud = Cloud(app(tmp_path, "automatic-speech-recognition"), monkeypatch)

    healthy(cloud.start("Server"))
    assert local_hub.downloads() == [last]

    local_hub.asked.clear()
    healthy(cloud.start("Server"))
    assert local_hub.asked == []


def test_a_cache_written_before_markers_loads_offline_and_is_marked(
    tmp_path: Path, cache: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A complete snapshot with no marker (every cache written before markers): its
    weights are checked, it loads offline, and it is marked."""
    in_cache(cache, local_hub.files)
    classifies(Cloud(app(tmp_path), monkeypatch).start("Server"))
    assert local_hub.asked == []
    assert (repo_folder(cache) / hub.MARKERS / f"{COMMIT}.json").is_file()


def test_weights_cut_short_after_the_snapshot_was_marked_are_downloaded_again(
    tmp_path: Path, cache: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A marker that no longer matches its snapshot (the weights replaced by a shorter
    file since) is not trusted: the weights come again from the Hub."""
    snapshot = in_cache(cache, local_hub.files)
    assert hub.cached(REPO, None) == snapshot  # marked
    blob = (snapshot / WEIGHTS).resolve()
    blob.write_bytes(blob.read_bytes()[:1000])
    classifies(Cloud(app(tmp_path), monkeypatch).start("Server"))
    assert local_hub.downloads() == [WEIGHTS]
    assert (snapshot / WEIGHTS).read_bytes() == local_hub.files[WEIGHTS]


@pytest.mark.parametrize("before", ["empty", "cut short"])
def test_fetch_fills_the_cache_so_the_first_container_asks_the_hub_nothing(
    tmp_path: Path, cache: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch, before: str
) -> None:
    """`hub.fetch` (what `endpointgen deploy --warm-cache` runs) downloads the model's
    snapshot into the cache, or what a cut-short one lacks, and marks it: the first
    container then loads offline. Weights in formats the load does not read stay on the
    Hub, and a second fetch downloads nothing."""
    whole = local_hub.files[WEIGHTS]
    local_hub.files.update(
        {
            "flax_model.msgpack": b"flax" * 100,
            "pytorch_model.bin": b"torch" * 100,
            "onnx/model.onnx": b"onnx" * 100,
            "README.md": b"# a tiny classifier",
        }
    )
    if before == "cut short":
        in_cache(cache, {"config.json": local_hub.files["config.json"], WEIGHTS: whole[:999]})

    snapshot = hub.fetch(REPO, None, "config.json")
    assert snapshot == repo_folder(cache) / "snapshots" / COMMIT
    fetched = set(local_hub.downloads())
    assert WEIGHTS in fetched and {"tokenizer.json", "README.md"} <= fetched
    assert not fetched & {"flax_model.msgpack", "pytorch_model.bin", "onnx/model.onnx"}
    assert (snapshot / WEIGHTS).read_bytes() == whole

    local_hub.asked.clear()
    assert hub.fetch(REPO, None) == snapshot
    classifies(Cloud(app(tmp_path), monkeypatch).start("Server"))
    assert local_hub.asked == []


def test_the_modules_download_function_fills_the_cache_for_the_first_cold_start(
    tmp_path: Path, cache: Path, local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, The generated module (`download`): the function `endpointgen deploy
    --warm-cache` runs (`modal run MODULE::download`), run in a container of its own,
    fills the Hub cache; the model's first container then asks the Hub nothing."""
    cloud = Cloud(app(tmp_path), monkeypatch)
    downloader = cloud.start("download")
    assert downloader.function is not None
    downloader.function()
    assert WEIGHTS in set(local_hub.downloads())
    local_hub.asked.clear()
    classifies(cloud.start("Server"))
    assert local_hub.asked == []


def test_a_fetch_cut_short_raises_and_marks_nothing(cache: Path, local_hub: LocalHub) -> None:
    """A warm-up whose download is cut fails, as huggingface_hub's connection fails, and
    leaves the cache unmarked: the next fetch (or container) downloads the rest."""
    local_hub.cut = {WEIGHTS}
    with pytest.raises(httpx2.TransportError):
        hub.fetch(REPO, None)
    assert hub.cached(REPO, None) is None
    assert not list(repo_folder(cache).glob(f"{hub.MARKERS}/*.json"))
    local_hub.cut.clear()
    assert (hub.fetch(REPO, None) / WEIGHTS).read_bytes() == local_hub.files[WEIGHTS]


def test_a_pipeline_is_complete_only_with_each_of_its_models_weights(
    cache: Path, tiny_diffusion: Path
) -> None:
    """A diffusers pipeline (`model_index.json` at its top): complete when every model it
    lists (UNet, VAE, text encoder) has its weights whole; its tokenizer and scheduler
    hold none."""
    files = files_of(tiny_diffusion)
    unet = "unet/diffusion_pytorch_model.safetensors"
    partial = {name: data for name, data in files.items() if name != unet}
    in_cache(cache, partial)
    assert hub.cached(REPO, None, "model_index.json") is None
    shutil.rmtree(repo_folder(cache))
    in_cache(cache, {**partial, unet: files[unet][:-10]})
    assert hub.cached(REPO, None, "model_index.json") is None
    shutil.rmtree(repo_folder(cache))
    in_cache(cache, files)
    assert hub.cached(REPO, None, "model_index.json") is not None


def test_sharded_weights_are_complete_only_with_every_shard(cache: Path, tiny_bert: Path) -> None:
    """An index and its shards (a large model's weights): every shard it names, whole."""
    files = files_of(tiny_bert)
    weights = files.pop(WEIGHTS)
    shards = {
        "model-00001-of-00002.safetensors": weights,
        "model-00002-of-00002.safetensors": weights,
    }
    index = {"weight_map": {"a.weight": next(iter(shards)), "b.weight": list(shards)[1]}}
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    in_cache(cache, {**files, next(iter(shards)): weights})
    assert hub.cached(REPO, None) is None
    shutil.rmtree(repo_folder(cache))
    in_cache(cache, {**files, **shards})
    assert hub.cached(REPO, None) is not None


def test_fetch_takes_the_weights_a_load_reads() -> None:
    """Of a repo's weights, each folder's first format a load picks (safetensors, then
    torch's), under the names transformers and diffusers read; every other file."""
    names = [
        "config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5",
        "flax_model.msgpack", "onnx/model.onnx", "tokenizer.json", "training_args.bin",
        "original/consolidated.00.pth",
    ]  # fmt: skip
    assert hub.wanted(names, "config.json") == [
        "config.json",
        "tokenizer.json",
        "model.safetensors",
    ]
    sharded = [
        "config.json",
        "pytorch_model-00001-of-00002.bin",
        "pytorch_model-00002-of-00002.bin",
    ]
    assert hub.wanted(sharded, "config.json") == sharded
    pipeline_files = [
        "model_index.json", "v1-5-pruned.safetensors", "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
        "unet/diffusion_pytorch_model.bin", "vae/config.json", "vae/diffusion_pytorch_model.bin",
        "scheduler/scheduler_config.json",
    ]  # fmt: skip
    assert sorted(hub.wanted(pipeline_files, "model_index.json")) == [
        "model_index.json",
        "scheduler/scheduler_config.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.bin",
    ]
