"""Several models in one app: a CPU web tier in front of one Modal class per model."""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
from conftest import build_and_import, import_file, write_spec
from fastapi.testclient import TestClient
from modal_images import packages_of
from servers import Server

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app

AUTH = {"Authorization": "Bearer key-one"}


def two_models(gpt2: Path, minilm: Path) -> dict[str, Any]:
    return {
        "name": "two-models",
        "models": {
            "writer": {
                "id": str(gpt2),
                "task": "text-generation",
                "gpu": "L4",
                "scaling": {"max_containers": 2, "max_inputs": 4},
            },
            "embedder": {
                "id": str(minilm),
                "task": "embeddings",
                "gpu": ["T4", "A10"],
                "resources": {"timeout": 120},
                "batching": {"max_batch_size": 16, "wait_ms": 5},
            },
        },
        "scaling": {"max_inputs": 64},
        "auth": {"mode": "bearer"},
        "routes": [
            {"path": "/generate", "method": "POST", "action": "generate", "model": "writer"},
            {
                "path": "/generate/stream",
                "method": "POST",
                "action": "generate",
                "model": "writer",
                "stream": True,
            },
            {"path": "/embed", "method": "POST", "action": "embed", "model": "embedder"},
            {"path": "/v1", "action": "openai", "model": "writer"},
            {"path": "/health", "action": "health"},
        ],
    }


@pytest.fixture(scope="module")
def module(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path, minilm: Path) -> ModuleType:
    folder = tmp_path_factory.mktemp("two")
    return build_and_import(write_spec(folder, two_models(tiny_gpt2, minilm)), folder / "build")


def test_each_model_is_its_own_modal_class_with_its_own_gpu(module: ModuleType) -> None:
    """docs/spec.md, Top level (`models`): each named model is a Modal class of its own, with its
    own GPU, timeout and concurrency, behind a CPU web tier that takes the app's own scaling."""
    writer = module.WriterModel._get_class_service_function().info()
    embedder = module.EmbedderModel._get_class_service_function().info()
    assert writer.gpus == [("L4", 1)]
    assert embedder.gpus == [("T4", 1), ("A10", 1)]
    assert embedder.timeout == 120
    assert writer.concurrency_info is not None and writer.concurrency_info.max_inputs == 4
    assert writer.method_names == ["call", "tokens"]
    web = module.web.info()
    assert web.gpus == []  # the web tier runs on CPU
    assert web.concurrency_info is not None and web.concurrency_info.max_inputs == 64
    assert web.web_info is not None


def test_the_web_image_carries_no_model_stack(module: ModuleType) -> None:
    source = Path(module.__file__).read_text()
    web_image = packages_of(source, "web_image")
    assert not any("torch" in p or "transformers" in p for p in web_image), web_image
    assert any(p.startswith("fastapi") for p in web_image), web_image
    assert any(p.startswith("torch") for p in packages_of(source, "image"))


def over_the_wire(value: Any) -> Any:
    """What the other side of a Modal call gets: a pickled copy."""
    return pickle.loads(pickle.dumps(value))


class Remote:
    """A Modal method's `.remote`, with its `.aio` twin that the web tier awaits."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def __call__(self, *args: Any) -> Any:
        return self.run(*args)

    async def aio(self, *args: Any) -> Any:
        return await asyncio.to_thread(self.run, *args)


class RemoteGen:
    """A Modal generator method's `.remote_gen`, with its async `.aio` twin."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def __call__(self, *args: Any) -> Iterator[Any]:
        return iter(self.run(*args))

    async def aio(self, *args: Any) -> AsyncIterator[Any]:
        pieces = iter(await asyncio.to_thread(lambda: list(self.run(*args))))
        for piece in pieces:
            yield piece


class FakeModalClass:
    """Stands in for a deployed model class (Modal's servers are unreachable here):
    `.call.remote` and `.tokens.remote_gen` (and their `.aio` twins) run the model
    container's own code, on a `tasks.Model` loaded as `@modal.enter` loads it."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.instances = 0

    def __call__(self) -> FakeModalClass:
        self.instances += 1
        return self

    @property
    def call(self) -> Any:
        def run(method: str, *args: Any) -> Any:
            return over_the_wire(self.model.call(method, *over_the_wire(args)))

        return SimpleNamespace(remote=Remote(run))

    @property
    def tokens(self) -> Any:
        def run(request: Any, request_id: str) -> Iterator[Any]:
            for piece in self.model.tokens(over_the_wire(request)):
                yield over_the_wire(piece)

        return SimpleNamespace(remote_gen=RemoteGen(run))


def test_the_web_tier_through_remote_calls_answers_like_local_models(
    module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Top level (`models`): routes name their model with `model:`; the web tier calls
    each model class and answers as the models would in one process."""
    monkeypatch.setenv("API_KEYS", "key-one")
    # The model containers: this module, its models loaded in-process.
    direct = TestClient(load_app(module, say=lambda _: None))
    assert module.writer.status == "ready" and module.embedder.status == "ready"
    # The web tier: its own copy of the module (its own container), whose `web` calls
    # the model classes.
    web_tier = import_file(Path(module.__file__))
    classes = {"WriterModel": module.writer, "EmbedderModel": module.embedder}
    fakes = {name: FakeModalClass(model) for name, model in classes.items()}
    for name, fake in fakes.items():
        monkeypatch.setattr(web_tier, name, fake)
    via_remote = TestClient(web_tier.web.local())
    assert all(fake.instances == 1 for fake in fakes.values())
    assert web_tier.writer.engine is not None and web_tier.writer.engine is not module.writer.engine
    body = {"prompt": "Hello", "max_tokens": 5, "seed": 4}
    assert (
        via_remote.post("/generate", json=body, headers=AUTH).json()
        == direct.post("/generate", json=body, headers=AUTH).json()
    )
    streamed = via_remote.post("/generate/stream", json=body, headers=AUTH).text
    assert "event: token" in streamed and "event: done" in streamed
    embed = via_remote.post("/embed", json={"texts": ["a", "b"]}, headers=AUTH).json()
    assert embed["dim"] == 384 and len(embed["embeddings"]) == 2
    too_long = {"prompt": "word " * 300, "max_tokens": 5}
    assert via_remote.post("/generate", json=too_long, headers=AUTH).status_code == 422


@pytest.mark.slow
def test_serve_runs_every_model_in_one_process(
    tmp_path: Path, tiny_gpt2: Path, minilm: Path
) -> None:
    server = Server(write_spec(tmp_path, two_models(tiny_gpt2, minilm)))
    try:
        server.wait_ready()
        assert server.output.count("model ready") == 2
        generated = httpx.post(
            server.url + "/generate", json={"prompt": "Hi", "max_tokens": 3}, headers=AUTH
        )
        assert generated.status_code == 200
        assert generated.json()["tokens_generated"] <= 3
        embedded = httpx.post(server.url + "/embed", json={"texts": ["x"]}, headers=AUTH)
        assert embedded.json()["dim"] == 384
        chat = openai.OpenAI(base_url=server.url + "/v1", api_key="key-one", max_retries=0)
        answer = chat.chat.completions.create(
            model="tiny-gpt2", messages=[{"role": "user", "content": "hi"}], max_tokens=3
        )
        assert answer.choices[0].finish_reason in ("length", "stop")
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda s: s.update(model={"id": "gpt2", "task": "text-generation"}),
            "models: use `model` for one model or `models` for several, not both",
        ),
        (
            lambda s: s.update(gpu="H100"),
            "gpu: with `models`, each model names its own GPU; the web tier runs on CPU",
        ),
        (
            lambda s: s["routes"][0].pop("model"),
            "routes[0]: POST /generate runs a model: name it with `model:` (one of `models`)",
        ),
        (
            lambda s: s["routes"][2].update(model="writer"),
            "routes[2].action: POST /embed: `embed` needs an embeddings or "
            "image-text-embeddings model, but model.task is text-generation",
        ),
        (
            lambda s: s["routes"][0].update(model="author"),
            "routes[0].model: no model 'author' (models: embedder, writer)",
        ),
    ],
)
def test_mistakes_with_several_models(
    tmp_path: Path, tiny_gpt2: Path, minilm: Path, change: Any, message: str
) -> None:
    spec = two_models(tiny_gpt2, minilm)
    change(spec)
    path = write_spec(tmp_path, spec)
    lines = [str(p).split(": ", 1)[1] for p in pipeline.validate(path)]
    assert message in lines, lines


def test_a_route_naming_a_model_needs_models(tmp_path: Path) -> None:
    spec = {
        "name": "one",
        "routes": [{"path": "/health", "action": "health", "model": "writer"}],
    }
    [problem] = pipeline.validate(write_spec(tmp_path, spec))
    assert problem.message == "`model` names one of `models`, and this spec has none"
    assert os.path.basename(problem.file) == "spec.yaml"
