"""Model classes with typed methods (issue 29, item 4), across the containers of a split
app (tests/modal_container.py): the CPU web tier `web`, `WriterModel` (the tiny GPT-2)
and `EmbedderModel` (all-MiniLM-L6-v2), each its own import of the module.

Each class has one `@modal.method()` per call the web tier makes of its engine, typed as
the engine types it; the web tier calls each by its own name (`.remote.aio` from the
routes, `.remote` from a handler's code), and answers as one process does."""

from __future__ import annotations

import asyncio
import inspect
import typing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import build_and_import, import_file, write_spec
from fastapi.testclient import TestClient
from modal._partial_function import _find_callables_for_obj, _PartialFunctionFlags
from modal_container import Answer, Cloud, user_class

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app
from endpointgen.runtime import tasks
from endpointgen.runtime.engines import ENGINES

pytestmark = pytest.mark.slow

KEY = "key-one"
AUTH = {"Authorization": f"Bearer {KEY}"}
HANDLERS = """\
from endpointgen.runtime.tasks import GenerateRequest


def on_writer(data, model):
    prompt = model.chat_prompt([{"role": "user", "content": data["text"]}])
    asked = GenerateRequest(prompt=data["text"], max_tokens=3, seed=1)
    return {
        "prompt": prompt,
        "left": model.context_left(prompt),
        "problem": model.context_problem(asked),
        "text": model.generate(asked)["text"],
    }


def on_embedder(data, model):
    (vector,) = model([data["text"]])
    return {"dim": len(vector), "tokens": model.count_tokens([data["text"]])}
"""


def two_models(gpt2: Path, minilm: Path) -> dict[str, Any]:
    text = {"text": {"type": "str", "max_length": 200}}
    return {
        "name": "typed",
        "models": {
            "writer": {"id": str(gpt2), "task": "text-generation"},
            "embedder": {
                "id": str(minilm),
                "task": "embeddings",
                # A batch closes at 8 texts, or half a second after its first.
                "batching": {"max_batch_size": 8, "wait_ms": 500},
            },
        },
        "auth": {"mode": "bearer"},
        "routes": [
            {"path": "/generate", "method": "POST", "action": "generate", "model": "writer"},
            {"path": "/embed", "method": "POST", "action": "embed", "model": "embedder"},
            {"path": "/v1", "action": "openai", "model": "embedder"},
            {
                **{"path": "/writer", "method": "POST", "action": "handler"},
                **{"handler": "h.py:on_writer", "model": "writer", "request": text},
            },
            {
                **{"path": "/embedder", "method": "POST", "action": "handler"},
                **{"handler": "h.py:on_embedder", "model": "embedder", "request": text},
            },
            {"path": "/health", "action": "health"},
        ],
    }


@pytest.fixture
def app(tmp_path: Path, tiny_gpt2: Path, minilm: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The built module's file."""
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "h.py").write_text(HANDLERS)
    spec = write_spec(tmp_path / "spec", two_models(tiny_gpt2, minilm))
    built = pipeline.build(spec, tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    monkeypatch.setenv("API_KEYS", KEY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return built.path


def methods(module: ModuleType, name: str) -> dict[str, Any]:
    """The `@modal.method()`s of class `name`, bound, as Modal's container finds them."""
    instance = user_class(getattr(module, name))()
    found = _find_callables_for_obj(instance, _PartialFunctionFlags.CALLABLE_INTERFACE)
    return dict(found)


def one_process(app: Path) -> TestClient:
    return TestClient(load_app(import_file(app), say=lambda _: None))


def test_each_class_has_a_typed_method_per_call_and_no_dispatch_by_name(app: Path) -> None:
    """The classes a Modal user reads: `run` typed as the engine's own call, the text
    generator's calls typed as the text engine's, and no `call(method, *args)`."""
    module = import_file(app)
    writer, embedder = methods(module, "WriterModel"), methods(module, "EmbedderModel")
    assert list(writer) == [
        *("checked_generate", "tokens", "generate", "chat_prompt"),
        *("context_left", "context_problem"),
    ]
    assert list(embedder) == ["run", "count_tokens"]
    run = typing.get_type_hints(embedder["run"])
    assert run == {"texts": list[str], "return": list[list[float]]}
    assert typing.get_type_hints(embedder["count_tokens"]) == {"texts": list[str], "return": int}
    assert typing.get_type_hints(writer["checked_generate"]) == {
        "asked": tasks.Asked,
        "return": dict[str, Any] | tasks.Rejected,
    }
    assert typing.get_type_hints(writer["context_left"]) == {"prompt": str, "return": int | None}


def test_the_routes_answer_through_the_typed_methods_as_one_process_does(
    app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generation is one `checked_generate`; concurrent embeds are one `run` (batched in
    the web tier); OpenAI's embeddings are a `run` and a `count_tokens`."""
    cloud = Cloud(app, monkeypatch)
    web = cloud.start("web")
    generate = {"prompt": "Hello", "max_tokens": 4, "seed": 3}
    texts = [f"text number {i}" for i in range(8)]
    openai = {"input": ["a short one", "and another"], "model": "all-MiniLM-L6-v2"}

    async def go() -> tuple[Answer, list[Answer], Answer, list[list[str]]]:
        generated = await web.request("POST", "/generate", json=generate, headers=AUTH)
        since = len(cloud.log)
        embedded = await asyncio.gather(
            *(web.request("POST", "/embed", json={"texts": [t]}, headers=AUTH) for t in texts)
        )
        logs = [[m for _, m in cloud.log[:since]], [m for _, m in cloud.log[since:]]]
        since = len(cloud.log)
        answered = await web.request("POST", "/v1/embeddings", json=openai, headers=AUTH)
        logs.append([m for _, m in cloud.log[since:]])
        await web.shutdown()
        return generated, list(embedded), answered, logs

    generated, embedded, answered, logs = asyncio.run(go())
    assert logs == [["checked_generate"], ["run"], ["run", "count_tokens"]]
    here = one_process(app)
    assert generated.json() == here.post("/generate", json=generate, headers=AUTH).json()
    for text, answer in zip(texts, embedded, strict=True):
        alone = here.post("/embed", json={"texts": [text]}, headers=AUTH).json()
        assert answer.json()["embeddings"][0] == pytest.approx(alone["embeddings"][0], abs=1e-5)
    expected = here.post("/v1/embeddings", json=openai, headers=AUTH).json()
    assert answered.json()["usage"] == expected["usage"]
    assert expected["usage"]["prompt_tokens"] > 0


def test_a_handlers_model_is_the_class_called_by_each_method(
    app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler's code gets the model class as its model: the engine's methods, each a
    blocking call of the class's method of the same purpose, answering as the engine
    does in one process."""
    cloud = Cloud(app, monkeypatch)
    web = cloud.start("web")

    async def go() -> tuple[Answer, Answer]:
        writer = await web.request("POST", "/writer", json={"text": "Hi"}, headers=AUTH)
        embedder = await web.request("POST", "/embedder", json={"text": "Hi"}, headers=AUTH)
        await web.shutdown()
        return writer, embedder

    writer, embedder = asyncio.run(go())
    here = one_process(app)
    assert writer.json() == here.post("/writer", json={"text": "Hi"}, headers=AUTH).json()
    assert writer.json()["prompt"] == "user: Hi\nassistant:"
    assert embedder.json() == {"dim": 384, "tokens": 3}
    assert [m for _, m in cloud.log] == [
        *("chat_prompt", "context_left", "context_problem", "generate"),
        *("run", "count_tokens"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("WriterModel.checked_generate", "/generate", {"prompt": "Hi", "max_tokens": 2}),
        ("EmbedderModel.run", "/embed", {"texts": ["Hi"]}),
        ("EmbedderModel.count_tokens", "/v1/embeddings", {"input": "Hi", "model": "m"}),
        ("WriterModel.chat_prompt", "/writer", {"text": "Hi"}),  # a handler's blocking call
    ],
)
def test_a_class_that_cannot_load_is_a_503_with_the_reason(
    app: Path, monkeypatch: pytest.MonkeyPatch, method: str, path: str, body: Any
) -> None:
    """Whichever typed method learns that the class cannot load (Modal fails the call
    with the `LoadFailed` its `@modal.enter` raised), the route is a 503 with the reason,
    and so is the model's side of the app for `RemoteEngine.RETRY_AFTER` seconds."""
    cloud = Cloud(app, monkeypatch)
    cls, name = method.split(".")
    cloud.failing[(cls, name)] = tasks.LoadFailed("OSError: no weights")
    web = cloud.start("web")

    async def go() -> tuple[Answer, Answer]:
        answer = await web.request("POST", path, json=body, headers=AUTH)
        again = await web.request("POST", path, json=body, headers=AUTH)
        await web.shutdown()
        return answer, again

    answer, again = asyncio.run(go())
    assert answer.status == again.status == 503
    reason = "model is not ready (failed): OSError: no weights"
    assert reason in answer.body.decode()
    assert cloud.calls_to(cls).count(name) == 1, "not called again while it cannot load"


TASK_ROUTES: dict[str, dict[str, Any]] = {
    "embeddings": {"action": "embed"},
    "image-text-embeddings": {"action": "embed"},
    "text-classification": {"action": "classify"},
    "zero-shot-classification": {"action": "classify"},
    "token-classification": {"action": "classify"},
    "rerank": {"action": "rerank"},
    "image-classification": {"action": "upload", "processor": "image-classification"},
    "object-detection": {"action": "upload", "processor": "object-detection"},
    "automatic-speech-recognition": {"action": "upload", "processor": "speech-recognition"},
    "text-to-image": {"action": "generate"},
}


def test_run_is_typed_as_each_tasks_engine_types_its_call(tmp_path: Path) -> None:
    """The template's types for `run` are the engine's own (`ENGINES[task].__call__`),
    for every task that has one; a drawn image's request is `tasks.ImageRequest`."""
    assert set(TASK_ROUTES) == {task for task in ENGINES if "generation" not in task}
    models = {f"m{i}": {"id": "org/model", "task": task} for i, task in enumerate(TASK_ROUTES)}
    routes = [
        {"path": f"/r{i}", "method": "POST", "model": f"m{i}", "public": True, **route}
        for i, route in enumerate(TASK_ROUTES.values())
    ]
    spec = {"name": "tasks", "models": models, "routes": routes}
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "build")
    for i, task in enumerate(TASK_ROUTES):
        run = methods(module, f"M{i}Model")["run"]
        engine = inspect.signature(ENGINES[task].__call__)
        wanted = typing.get_type_hints(ENGINES[task].__call__)
        wanted.pop("stop", None)  # a drawing's stop event stays in its own container
        if task == "text-to-image":
            wanted["request"] = tasks.ImageRequest
        assert typing.get_type_hints(run) == wanted, task
        named = [p for p in engine.parameters if p not in ("self", "stop")]
        assert list(inspect.signature(run).parameters) == named, task
