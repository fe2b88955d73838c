"""The runtime on its own: apps written by hand on `endpointgen.runtime`, no spec, no
compiler. What built modules rely on, tested where it lives."""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from endpointgen.runtime import auth, files, handlers, http, limits, openai, tasks
from endpointgen.runtime.batching import Batcher


class Echo:
    """An engine without torch: embeds each text as [len], labels it by its first letter."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> list[Any]:
        self.calls.append(list(texts))
        return [[float(len(t))] for t in texts]

    def count_tokens(self, texts: list[str]) -> int:
        return sum(len(t.split()) for t in texts)


def embedder(**kwargs: Any) -> tuple[FastAPI, tasks.Model, Echo]:
    model = tasks.Model("echo", "embeddings", **kwargs)
    engine = Echo()
    web = http.app("echo", formats={"/v1": openai.ERRORS})

    @web.post("/embed", dependencies=[Depends(model.ready), Depends(http.MaxBytes(200))])
    async def embed(body: tasks.EmbedRequest) -> tasks.EmbedResponse:
        return await model.embed(body, max_items=3, max_chars=10)

    @web.post("/v1/embeddings", dependencies=[Depends(model.ready)])
    async def embeddings(body: openai.EmbeddingRequest) -> dict[str, Any]:
        return await openai.embeddings(model, body, max_items=3, max_chars=10)

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    return web, model, engine


def test_a_model_answers_503_until_it_is_served_then_within_its_limits() -> None:
    """docs/spec.md, Routes (`max_items`): over the limit is a 422 before any model work."""
    web, model, engine = embedder()
    client = TestClient(web)
    assert client.get("/health").status_code == 503
    refused = client.post("/embed", json={"texts": ["a"]})
    assert refused.status_code == 503 and refused.json()["error"] == "model is not ready (loading)"
    model.serve(engine)
    assert client.get("/health").json() == {"status": "ok", "model": "echo", "task": "embeddings"}
    assert client.post("/embed", json={"texts": ["ab", "c"]}).json() == {
        "embeddings": [[2.0], [1.0]],
        "dim": 1,
    }
    too_many = client.post("/embed", json={"texts": ["a"] * 4})
    assert too_many.status_code == 422
    assert too_many.json()["detail"][0]["msg"] == "at most 3 texts per request"
    assert engine.calls == [["ab", "c"]], "no model work for a refused request"


def test_max_bytes_refuses_a_body_before_it_is_read_and_only_on_its_route() -> None:
    web, model, engine = embedder()
    model.serve(engine)
    client = TestClient(web)
    big = {"texts": ["x" * 300]}
    answer = client.post("/embed", json=big)
    assert answer.status_code == 413 and answer.json()["error"] == "request body too large"
    # No MaxBytes on this route: the body is read, then refused by the route's own limit.
    long = client.post("/v1/embeddings", json={"input": "x" * 300})
    assert long.status_code == 400
    assert long.json()["error"]["message"] == "texts may be at most 10 characters"
    assert long.json()["error"]["param"] == "input"
    assert engine.calls == []


def test_errors_under_an_openai_prefix_take_openai_shape() -> None:
    web, model, engine = embedder()
    model.serve(engine)
    client = TestClient(web)
    answer = client.post("/v1/embeddings", json={"input": ["a", "b", "c", "d"]})
    assert answer.status_code == 400  # OpenAI's clients expect 400, not 422
    assert answer.json()["error"]["type"] == "invalid_request_error"
    listed = client.post("/v1/embeddings", json={"input": "two words"}).json()
    assert listed["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_guards_document_what_they_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("API_KEYS", "k")
    web = http.app("guarded")
    model = tasks.Model("m", "embeddings")
    guards = [
        Depends(auth.bearer()),
        Depends(limits.RateLimit("1/minute", key="api_key")),
        Depends(model.ready),
    ]

    @web.post("/embed", dependencies=guards)
    async def embed(body: tasks.EmbedRequest) -> tasks.EmbedResponse:
        return await model.embed(body)

    answers = web.openapi()["paths"]["/embed"]["post"]["responses"]
    assert {"200", "401", "413", "422", "429", "500", "503"} <= set(answers)
    assert "400" not in answers  # a body that cannot be decoded is a 422 too
    assert "Retry-After" in answers["429"]["headers"]
    assert "RateLimit-Remaining" in answers["200"]["headers"]
    model.serve(Echo())
    client = TestClient(web)
    bearer = {"Authorization": "Bearer k"}
    assert client.post("/embed", json={"texts": ["a"]}).status_code == 401
    assert client.post("/embed", json={"texts": ["a"]}, headers=bearer).status_code == 200
    limited = client.post("/embed", json={"texts": ["a"]}, headers=bearer)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1


def test_mapped_errors_answer_through_their_base_class() -> None:
    web = http.app("mapped", errors={"LookupError": (404, "no such thing")})

    @web.get("/boom")
    async def boom() -> None:
        raise KeyError("secret detail")

    answer = TestClient(web, raise_server_exceptions=False).get("/boom")
    assert answer.status_code == 404 and answer.json()["error"] == "no such thing"
    assert "secret detail" not in answer.text


def test_batching_gathers_concurrent_requests_into_one_call() -> None:
    engine = Echo()
    batcher = Batcher(engine, max_batch_size=8, wait_ms=50)

    async def many() -> list[list[Any]]:
        return await asyncio.gather(*(batcher([f"t{i}"]) for i in range(5)))

    assert asyncio.run(many()) == [[[2.0]]] * 5
    assert engine.calls == [["t0", "t1", "t2", "t3", "t4"]]


def test_fill_keeps_a_lone_placeholder_s_type() -> None:
    template = {"id": "{id}", "text": "item {id} of {name}", "keep": "{missing}"}
    assert handlers.fill(template, {"id": 7, "name": "x"}) == {
        "id": 7,
        "text": "item 7 of x",
        "keep": "{missing}",
    }


def test_a_folder_never_serves_outside_itself(tmp_path: Path) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "a.txt").write_text("a")
    (tmp_path / "secret.txt").write_text("no")
    folder = files.Folder(tmp_path / "public")
    assert Path(asyncio.run(folder.send("a.txt")).path).read_text() == "a"
    for wanted in ("../secret.txt", "/etc/passwd", "a.txt\x00", "missing.txt"):
        with pytest.raises(Exception, match="no such file"):
            asyncio.run(folder.send(wanted))


def test_a_folder_on_a_volume_reloads_it_on_a_miss_at_most_so_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a container, a file added to the Volume after the container started is found:
    a miss reloads the Volume (at most once every RELOAD_EVERY seconds) and looks again."""
    import modal

    reloads: list[str] = []

    class Volume:
        def __init__(self, name: str) -> None:
            self.name = name

            async def reload() -> None:
                reloads.append(self.name)
                (tmp_path / "new.txt").write_text("new")  # what another writer committed

            self.reload = SimpleNamespace(aio=reload)

    monkeypatch.setattr(modal, "is_local", lambda: False)
    monkeypatch.setattr(modal.Volume, "from_name", lambda name: Volume(name))
    folder = files.Folder(tmp_path, volume="reports")
    assert Path(asyncio.run(folder.send("new.txt")).path).read_text() == "new"
    assert reloads == ["reports"]
    with pytest.raises(Exception, match="no such file"):
        asyncio.run(folder.send("still-missing.txt"))
    assert reloads == ["reports"], "a second miss right after does not reload again"


def test_rates_read_as_the_spec_writes_them() -> None:
    assert limits.parse("60/minute") == (60, 60)
    assert limits.parse("5 / seconds") == (5, 1)
    assert limits.parse("1000/day") == (1000, 86_400)


def failing_model(tmp_path: Path) -> tasks.Model:
    loader = tmp_path / "load.py"
    missing = tmp_path / "weights" / "model.safetensors"
    message = f"cannot read {missing}; see https://huggingface.co/org/m"
    loader.write_text(f"def load(where):\n    raise OSError({message!r})\n")
    return tasks.Model("org/m", "embeddings", loader=tasks.Loader(loader, "load", "load.py"))


def test_a_failed_load_is_a_short_503_here_and_raised_in_a_modal_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """docs/spec.md, Routes (`health`): after a failed load, 503 with `error` on one line, the
    exception's class and message with paths cut to their last part (URLs kept whole); in a
    Modal container the failure is raised from the load instead."""
    model = failing_model(tmp_path).load()
    assert model.status == "failed"
    web = http.app("failing")

    @web.get("/health")
    async def health() -> http.JSONResponse:
        return model.health()

    answer = TestClient(web).get("/health")
    assert answer.status_code == 503
    assert answer.json() == {
        "status": "failed",
        "error": "OSError: cannot read model.safetensors; see https://huggingface.co/org/m",
        "model": "org/m",
    }
    assert str(tmp_path) in caplog.text and "Traceback" in caplog.text  # the log has it all
    # In a Modal container the failure propagates out of @modal.enter: Modal replaces
    # the container instead of keeping a broken one warm.
    import modal

    monkeypatch.setattr(modal, "is_local", lambda: False)
    with pytest.raises(tasks.LoadFailed) as raised:
        failing_model(tmp_path).load()
    # The web tier in front of a class gets the short reason; the log keeps the cause.
    reason = "OSError: cannot read model.safetensors; see https://huggingface.co/org/m"
    assert raised.value.args == (reason,)
    assert isinstance(raised.value.__cause__, OSError)
    assert pickle.loads(pickle.dumps(raised.value)).args == raised.value.args


def test_log_lines_are_json_objects() -> None:
    """docs/spec.md, Every response: the app's other log lines are JSON objects too."""
    import logging

    formatter = http.JsonLines()
    record = logging.LogRecord(
        "endpointgen", logging.ERROR, __file__, 1, "model %s failed", ("m",), None
    )
    line = json.loads(formatter.format(record))
    assert {k: line[k] for k in ("level", "logger", "message")} == {
        "level": "error",
        "logger": "endpointgen",
        "message": "model m failed",
    }
    fields = logging.LogRecord(
        "endpointgen", logging.INFO, __file__, 1, {"event": "push"}, None, None
    )
    assert json.loads(formatter.format(fields))["event"] == "push"


def test_the_runtime_knows_every_task_the_spec_language_names() -> None:
    """The runtime keeps its own list of tasks (it imports nothing of the spec models);
    it must be the spec's, and each task must have an engine."""
    from typing import get_args

    from endpointgen.runtime import engines, tasks
    from endpointgen.spec import models

    assert get_args(tasks.Task) == get_args(models.Task)
    assert set(engines.ENGINES) == set(get_args(models.Task))
