"""Several models in one app: a CPU web tier in front of one Modal class per model."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import openai
import pytest
from conftest import build_and_import, import_file, write_spec
from fastapi.testclient import TestClient
from modal_container import Answer, Cloud
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
    assert writer.method_names == [
        *("checked_generate", "tokens", "generate"),
        *("chat_prompt", "context_left", "context_problem"),
    ]
    assert embedder.method_names == ["run", "count_tokens"]
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


def test_the_web_tier_through_remote_calls_answers_like_local_models(
    module: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Top level (`models`): routes name their model with `model:`; the web tier calls
    each model class and answers as the models would in one process.

    Through tests/modal_container.py: each class and `web` a container of its own, each
    call a `.remote.aio` of the class's typed method, found as Modal's container finds it
    and pickled both ways as Modal does."""
    monkeypatch.setenv("API_KEYS", "key-one")
    direct = TestClient(load_app(import_file(Path(module.__file__)), say=lambda _: None))
    cloud = Cloud(Path(module.__file__), monkeypatch)
    web = cloud.start("web")
    body = {"prompt": "Hello", "max_tokens": 5, "seed": 4}
    too_long = {"prompt": "word " * 300, "max_tokens": 5}

    async def go() -> list[Answer]:
        answers = [
            await web.request("POST", "/generate", json=body, headers=AUTH),
            await web.request("POST", "/generate/stream", json=body, headers=AUTH),
            await web.request("POST", "/embed", json={"texts": ["a", "b"]}, headers=AUTH),
            await web.request("POST", "/generate", json=too_long, headers=AUTH),
        ]
        await web.shutdown()
        return answers

    generated, streamed, embedded, refused = asyncio.run(go())
    assert generated.json() == direct.post("/generate", json=body, headers=AUTH).json()
    assert b"event: token" in streamed.body and b"event: done" in streamed.body
    assert embedded.json()["dim"] == 384 and len(embedded.json()["embeddings"]) == 2
    assert refused.status == 422
    assert (
        refused.json()["error"]
        == direct.post("/generate", json=too_long, headers=AUTH).json()["error"]
    )
    assert cloud.log == [
        ("WriterModel", "checked_generate"),
        ("WriterModel", "tokens"),
        ("EmbedderModel", "run"),
        ("WriterModel", "checked_generate"),
    ]


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
