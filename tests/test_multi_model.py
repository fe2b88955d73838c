"""Several models in one app: a CPU web tier in front of one Modal class per model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import openai
import pytest
from conftest import build_and_import, write_spec
from fastapi.testclient import TestClient
from test_serve import Server

from endpointgen.compiler import pipeline

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
    writer = module.MODEL_CLASSES["writer"]._get_class_service_function().info()
    embedder = module.MODEL_CLASSES["embedder"]._get_class_service_function().info()
    assert writer.gpus == [("L4", 1)]
    assert embedder.gpus == [("T4", 1), ("A10", 1)]
    assert embedder.timeout == 120
    assert writer.concurrency_info is not None and writer.concurrency_info.max_inputs == 4
    assert writer.method_names == ["call", "stream"]
    web = module.web.info()
    assert web.gpus == []  # the web tier runs on CPU
    assert web.concurrency_info is not None and web.concurrency_info.max_inputs == 64
    assert web.web_info is not None


def test_the_web_image_carries_no_model_stack(module: ModuleType) -> None:
    source = Path(module.__file__).read_text()
    web_line = source[source.index("web_image = ") :].split(")\n")[0]
    assert "torch" not in web_line and "fastapi" in web_line


class FakeModalClass:
    """Stands in for a deployed model class (Modal's servers are unreachable here):
    `.call.remote` and `.stream.remote_gen` run the module's own container-side code."""

    def __init__(self, module: ModuleType, state: Any) -> None:
        self.module, self.state = module, state

    def __call__(self) -> FakeModalClass:
        return self

    @property
    def call(self) -> Any:
        outer = self

        class Call:
            @staticmethod
            def remote(method: str, *args: Any) -> Any:
                return outer.module.call_engine(outer.state, method, args)

        return Call

    @property
    def stream(self) -> Any:
        outer = self

        class Stream:
            @staticmethod
            def remote_gen(request: Any) -> Iterator[Any]:
                return outer.module.stream_engine(outer.state, request)

        return Stream


def test_the_web_tier_through_remote_calls_answers_like_local_models(
    module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEYS", "key-one")
    local = {name: module.ModelState(config).load() for name, config in module.MODELS.items()}
    remote = {
        name: module.RemoteState(module.MODELS[name], FakeModalClass(module, state))
        for name, state in local.items()
    }
    via_remote = TestClient(module.create_app(remote))
    direct = TestClient(module.create_app(local))
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
            "routes[2].action: POST /embed: `embed` needs an embeddings model, "
            "but model.task is text-generation",
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
