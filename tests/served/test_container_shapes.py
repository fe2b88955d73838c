"""What a built module's containers do on Modal, driven as Modal's container runs them
(tests/modal_container.py): how many requests each takes at once, where jobs run, what a
job costs, region, snapshots and shutdown."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import modal
import pytest
import yaml
from conftest import SPECS, gpt2_spec, import_file, write_spec
from modal_container import Cloud, Container

from endpointgen.compiler import pipeline
from endpointgen.runtime import http

KEY = {"X-API-Key": "key-one"}
SLOW_HANDLER = """
import time


def slow(data: dict, model: object) -> dict:
    time.sleep(float(data["seconds"]))
    return {"slept": data["seconds"]}
"""


def build(spec: Path, out: Path) -> Path:
    built = pipeline.build(spec, out, None)
    out.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    return built.path


def serving(module: Any) -> list[tuple[str, Any]]:
    """Every Modal function or class of a module that answers HTTP, with its info."""
    found = []
    for name, value in vars(module).items():
        if isinstance(value, modal.Cls):
            info = value._get_class_service_function().info()
            if "web" in (info.method_names or []):
                found.append((name, info))
        elif isinstance(value, modal.Function) and value.info().web_info is not None:
            found.append((name, value.info()))
    return found


@pytest.mark.parametrize("spec", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_container_that_serves_http_takes_several_requests(
    spec: Path, tmp_path: Path
) -> None:
    """docs/spec.md, Top level (`scaling`): with one input per container (Modal's default),
    a 401, a 429, a /health probe or a job's poll takes a GPU container's only slot."""
    module = import_file(build(spec, tmp_path))
    web = serving(module)
    assert web, "something serves HTTP"
    for name, info in web:
        assert info.concurrency_info is not None, f"{spec.name}: {name} takes one request"
        assert (info.concurrency_info.max_inputs or 0) > 1, f"{spec.name}: {name}"


def jobs_spec(folder: Path, model: Path, **overrides: Any) -> Path:
    """A model app with a slow handler job and the model's own job route."""
    (folder / "slow.py").parent.mkdir(parents=True, exist_ok=True)
    (folder / "slow.py").write_text(SLOW_HANDLER)
    spec = gpt2_spec(model)
    spec.pop("batching", None)
    spec["scaling"] = {}
    spec["auth"] = {"mode": "api_key"}
    spec.pop("rate_limit", None)
    spec.pop("cors", None)
    spec["routes"] = [
        {
            "path": "/slow",
            "method": "POST",
            "action": "handler",
            "handler": "slow.py:slow",
            "request": {"seconds": "float"},
            "job": True,
        },
        {"path": "/generate", "method": "POST", "action": "generate", "job": True},
        {"path": "/health", "action": "health"},
    ]
    spec.update(overrides)
    return write_spec(folder, spec)


def front_door(cloud: Cloud, module: Any) -> Any:
    """The container a client's request reaches: the CPU web tier, or the model's class
    (the warm one a job is spawned on too)."""
    web = getattr(module, "web", None)
    return cloud.container("web" if isinstance(web, modal.Function) else "Server")


def test_job_polls_and_probes_never_wait_for_a_running_job(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/shapes.md, Jobs: a model app with job routes gets a CPU front door (`shape:
    split` by default). While a job runs, its poll and /health answer at once, and no
    request but the job's own model calls reaches the model's class."""
    monkeypatch.setenv("API_KEYS", "key-one")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = build(jobs_spec(tmp_path, tiny_gpt2), tmp_path / "out")
    cloud = Cloud(path, monkeypatch)
    web = front_door(cloud, cloud.process())

    async def go() -> None:
        accepted = await web.request("POST", "/slow", json={"seconds": 3}, headers=KEY)
        assert accepted.status == 202, accepted.body
        status = accepted.json()["urls"]["status"]
        await asyncio.sleep(0.3)  # the job has started
        started = time.monotonic()
        health = await web.request("GET", "/health")
        poll = await web.request("GET", status, headers=KEY)
        waited = time.monotonic() - started
        assert waited < 1.0, f"/health and a poll waited {waited:.1f} s behind a running job"
        assert (health.status, poll.status) == (200, 200)
        assert poll.json()["status"] == "running"
        while poll.json()["status"] == "running":
            await asyncio.sleep(0.2)
            poll = await web.request("GET", status, headers=KEY)
        assert poll.json()["result"] == {"slept": 3}
        await web.shutdown()

    asyncio.run(go())
    assert "web" in cloud.containers, "the app has a CPU web tier"
    assert cloud.calls_to("Inference") == [], "a handler job never touched the GPU class"


def test_a_job_worker_builds_the_app_once(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/shapes.md, Jobs: the container that runs jobs builds its FastAPI app (and
    imports handler files) once, not once per job."""
    monkeypatch.setenv("API_KEYS", "key-one")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = build(jobs_spec(tmp_path, tiny_gpt2), tmp_path / "out")
    cloud = Cloud(path, monkeypatch)
    web = front_door(cloud, cloud.process())
    built: list[str] = []
    real = http.app
    monkeypatch.setattr(http, "app", lambda *a, **k: built.append(a[0]) or real(*a, **k))

    async def go() -> None:
        for _ in range(4):
            accepted = await web.request("POST", "/slow", json={"seconds": 0}, headers=KEY)
            status = accepted.json()["urls"]["status"]
            poll = await web.request("GET", status, headers=KEY)
            while poll.json()["status"] != "succeeded":
                await asyncio.sleep(0.05)
                poll = await web.request("GET", status, headers=KEY)
        await web.shutdown()

    asyncio.run(go())
    # One app for the front door, one for the container that runs the jobs.
    assert len(built) == 2, f"{len(built)} apps built for 4 jobs"


def test_a_region_reaches_every_function_and_class(tmp_path: Path, tiny_gpt2: Path) -> None:
    """docs/spec.md, Top level (`region`): Modal runs each of the app's containers there,
    read back with `Function.info()`."""
    path = build(jobs_spec(tmp_path, tiny_gpt2, region=["us-east", "eu"]), tmp_path / "out")
    module = import_file(path)
    infos = [module.web.info(), module.Inference._get_class_service_function().info()]
    infos.append(module.JobRunner._get_class_service_function().info())
    assert [info.regions for info in infos] == [["us-east", "eu"]] * 3


def test_a_vllm_module_follows_modals_vllm_example(tmp_path: Path) -> None:
    """docs/spec.md, Model (`engine: vllm`): a CUDA image, a Volume for vLLM's compile
    cache, eager mode (no CUDA graph capture) when the model scales to zero."""
    spec = yaml.safe_load((SPECS / "vllm.yaml").read_text())
    module = import_file(build(write_spec(tmp_path, spec), tmp_path / "out"))
    info = module.Server._get_class_service_function().info()
    assert set(info.volumes) >= {"/root/.cache/vllm", "/hf-cache"}
    source = Path(module.__file__).read_text()
    assert 'modal.Image.from_registry("nvidia/cuda:' in source
    assert "enforce_eager=True" in source
    spec["scaling"]["min_containers"] = 1
    warm = build(write_spec(tmp_path / "warm", spec), tmp_path / "warm" / "out")
    assert "enforce_eager=False" in warm.read_text()


def test_a_memory_snapshot_holds_the_weights_and_a_restore_serves_them(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Top level (`snapshot`): with `memory`, before the snapshot the weights load
    into CPU memory in the dtype they will run in, and nothing starts (no batching
    thread); after each restore they move to the best device and the model serves."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("API_KEYS", "key-one")
    spec = gpt2_spec(tiny_gpt2, snapshot="memory", auth={"mode": "api_key"})
    spec["model"]["dtype"] = "float16"
    spec.pop("rate_limit")
    seen: list[dict[str, Any]] = []
    real = modal.App.cls
    monkeypatch.setattr(
        modal.App, "cls", lambda self, *a, **k: seen.append(k) or real(self, *a, **k)
    )
    path = build(write_spec(tmp_path, spec), tmp_path / "out")
    cloud = Cloud(path, monkeypatch)
    module = cloud.process()
    assert seen[-1]["enable_memory_snapshot"] is True
    container = Container(module._modal_Server)
    container.module = module
    container.snapshot()
    model = module.model
    assert model.status == "loading" and model.engine is None
    weights = model.unstarted.model
    assert (str(weights.device), weights.dtype) == ("cpu", torch_dtype("float16"))
    assert model.unstarted.batcher is None, "no batching thread before the snapshot"
    container.restore()
    assert model.status == "ready"
    assert model.engine.batcher is not None, "batching starts after the restore"

    async def go() -> None:
        answer = await container.request(
            "POST", "/generate", json={"prompt": "hi", "max_tokens": 3}, headers=KEY
        )
        assert answer.status == 200, answer.body
        assert answer.json()["tokens_generated"] == 3
        await container.shutdown()

    asyncio.run(go())


def torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def test_the_model_is_released_when_the_container_exits(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, The generated module (`@modal.exit()`): when Modal stops a container,
    the batching thread ends and the model is let go; nothing answers from it after."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("API_KEYS", "key-one")
    spec = gpt2_spec(tiny_gpt2, auth={"mode": "api_key"})
    spec.pop("rate_limit")
    cloud = Cloud(build(write_spec(tmp_path, spec), tmp_path / "out"), monkeypatch)
    server = cloud.container("Server")
    model = server.module.model
    thread = model.engine.batcher.thread

    async def go() -> None:
        answer = await server.request(
            "POST", "/generate", json={"prompt": "hi", "max_tokens": 3}, headers=KEY
        )
        assert answer.status == 200
        await server.shutdown()  # lifespan shutdown, then `@modal.exit()`
        assert not thread.is_alive(), "the batching thread ended"
        assert model.engine is None
        late = await server.request("GET", "/health")
        assert late.status == 503

    asyncio.run(go())
    assert "stop" in server.entered


SNAPSHOT_REFUSALS = [
    (
        {
            "model": {
                "id": "Qwen/Qwen2.5-1.5B-Instruct",
                "task": "text-generation",
                "engine": "vllm",
            },
            "gpu": "L40S",
            "snapshot": "memory",
        },
        "vLLM sets up CUDA graphs and its KV cache on the GPU as it loads",
    ),
    (
        {"model": {"id": "gpt2", "task": "text-generation"}, "snapshot": "gpu"},
        "a GPU snapshot needs a `gpu`; use `memory` on a CPU",
    ),
    (
        {"model": {"id": "gpt2", "task": "text-generation"}, "gpu": "H100:2", "snapshot": "memory"},
        "on H100:2 the weights are spread over the GPUs as they load",
    ),
    (
        {"snapshot": "memory", "routes": [{"path": "/health", "action": "health"}]},
        "a snapshot saves a loaded model's container, and this app loads no model",
    ),
]


@pytest.mark.parametrize(("spec", "reason"), SNAPSHOT_REFUSALS)
def test_what_cannot_be_snapshotted_is_refused_with_the_reason(
    tmp_path: Path, spec: dict[str, Any], reason: str
) -> None:
    """docs/spec.md, Top level (`snapshot`): refused at `validate`, at the key's line."""
    from typer.testing import CliRunner

    from endpointgen.cli import app

    data = {
        "name": "snap",
        "routes": [{"path": "/generate", "method": "POST", "action": "generate"}],
        **spec,
    }
    path = write_spec(tmp_path, data)
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if "snapshot" in text)
    assert f"spec.yaml:{line}:11: snapshot: {reason}" in result.output, result.output
