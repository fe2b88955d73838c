"""What a real Modal container gets: concurrency that fits the model, a startup timeout of
its own for loading weights, Secrets only where they are used and with the keys the app
reads. Read back with the real `modal` SDK, offline."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import modal
import pytest
import yaml
from conftest import SPECS, build_and_import, gpt2_spec, write_spec
from fastapi.testclient import TestClient

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app
from endpointgen.runtime import remote, tasks


@pytest.fixture
def secrets_asked(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str]]]:
    """(name, required_keys) of every `modal.Secret.from_name` a module makes."""
    asked: list[tuple[str, list[str]]] = []
    real = modal.Secret.from_name

    def spy(name: str, *args: Any, required_keys: list[str] | None = None, **kwargs: Any) -> Any:
        asked.append((name, list(required_keys or [])))
        return real(name, *args, required_keys=required_keys or [], **kwargs)

    monkeypatch.setattr(modal.Secret, "from_name", spy)
    return asked


def test_an_app_without_a_model_takes_many_requests_per_container(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`scaling`): unset, an app without a model takes 100 requests per
    container."""
    module = build_and_import(SPECS / "hello.yaml", tmp_path)
    info = module.web.info()
    assert info.concurrency_info is not None and info.concurrency_info.max_inputs == 100


def test_a_text_generator_scales_out_instead_of_queueing(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`scaling`): a text generator without batching, with
    max_inputs above 1, aims for 1.

    One generation at a time per container: the autoscaler aims for one request per
    container, and takes up to max_inputs while it adds containers."""
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    del spec["batching"]
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    info = module.Server._get_class_service_function().info()
    assert info.concurrency_info is not None
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (8, 1)


def test_a_batching_model_takes_a_batch_of_requests_per_container(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`batching`): a batching model's container takes as many
    requests at once as a batch holds unless `scaling.max_inputs` says otherwise, and a
    batching text generator lets the autoscaler aim for its max_inputs.

    Modal's default is one request per container, which would leave nothing to batch."""
    module = build_and_import(SPECS / "gpt2.yaml", tmp_path / "set")
    info = module.Server._get_class_service_function().info()
    assert info.concurrency_info is not None
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (8, None)
    for name in ("gpt2.yaml", "minilm.yaml"):
        spec = yaml.safe_load((SPECS / name).read_text())
        spec["scaling"].pop("max_inputs")
        spec["batching"]["max_batch_size"] = 12
        out = tmp_path / name.removesuffix(".yaml")
        module = build_and_import(write_spec(out, spec), out / "build")
        info = module.Server._get_class_service_function().info()
        assert info.concurrency_info is not None and info.concurrency_info.max_inputs == 12


def test_scaling_target_inputs_and_startup_timeout_reach_modal(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`resources`, `scaling`): `startup_timeout` and `timeout`,
    `max_inputs` and `target_inputs` reach Modal as set."""
    spec = gpt2_spec(Path("gpt2-weights"))
    spec["model"]["id"] = "gpt2"
    spec["scaling"] = {"max_inputs": 16, "target_inputs": 4}
    spec["resources"] = {"timeout": 60, "startup_timeout": 1200}
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    info = module.Server._get_class_service_function().info()
    assert info.concurrency_info is not None
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (16, 4)
    assert (info.timeout, info.startup_timeout) == (60, 1200)


def test_loading_a_model_has_its_own_startup_timeout(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`resources`): a container that loads a model gets a startup_timeout
    of 600 s unless the spec sets one, whatever the per-request timeout.

    A short per-request timeout does not kill the download and load of the weights."""
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["resources"] = {"timeout": 30}
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    info = module.Server._get_class_service_function().info()
    assert (info.timeout, info.startup_timeout) == (30, 600)


@pytest.mark.parametrize(
    ("scaling", "message"),
    [
        ({"target_inputs": 2}, "target_inputs needs max_inputs, the most a container takes"),
        ({"max_inputs": 2, "target_inputs": 4}, "target_inputs is larger than max_inputs"),
    ],
)
def test_target_inputs_is_checked_against_max_inputs(
    tmp_path: Path, scaling: dict[str, int], message: str
) -> None:
    """docs/spec.md, Top level (`scaling`): target_inputs is at most max_inputs, and needs it."""
    spec = {"name": "app", "scaling": scaling, "routes": [{"path": "/h", "action": "health"}]}
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert str(problem).endswith(f"scaling: {message}")


def test_secrets_go_where_they_are_used_with_the_keys_read_from_them(
    tmp_path: Path, secrets_asked: list[tuple[str, list[str]]]
) -> None:
    """docs/spec.md, Top level (`secrets`): each Secret is asked for with the keys the app reads
    from it (`required_keys`); with `models:`, the model classes get only the spec's extra
    Secrets, and the auth Secret stays in the web tier."""
    spec = yaml.safe_load((SPECS / "multi.yaml").read_text())
    spec["secrets"] = ["hf-token"]
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    web = module.web.info()
    writer = module.WriterModel._get_class_service_function().info()
    assert sorted(web.secrets) == [
        "modal.Secret.from_name('hf-token')",
        "modal.Secret.from_name('multi-keys')",
    ]
    # The model classes get the spec's own secrets (a Hub token), not the API keys.
    assert writer.secrets == ["modal.Secret.from_name('hf-token')"]
    assert ("multi-keys", ["API_KEYS"]) in secrets_asked
    assert ("hf-token", []) in secrets_asked


def test_each_webhook_secret_requires_its_signing_key(
    tmp_path: Path, secrets_asked: list[tuple[str, list[str]]]
) -> None:
    """docs/spec.md, Top level (`secrets`): a webhook's Secret is asked for with its signing key in
    `required_keys`, so a Secret without it fails the deploy."""
    build_and_import(SPECS / "webhooks.yaml", tmp_path)
    assert sorted(secrets_asked) == [
        ("github-webhook", ["GITHUB_WEBHOOK_SECRET"]),
        ("slack-signing", ["SLACK_SIGNING_SECRET"]),
        ("stripe-webhook", ["STRIPE_WEBHOOK_SECRET"]),
    ]


def test_concurrent_requests_share_the_tokenizer_safely(
    tmp_path: Path, minilm: Path, env_keys: list[str]
) -> None:
    """Requests in many threads at once, as `@modal.concurrent` sends them: batches that
    pad and truncate, and OpenAI calls that count tokens. A fast tokenizer changes its own
    state to pad; every use of it is under the engine's lock, so every request answers."""
    spec = yaml.safe_load((SPECS / "minilm.yaml").read_text())
    spec["model"]["id"] = str(minilm)
    spec.pop("batching", None)
    spec["routes"].append({"path": "/v1", "action": "openai"})
    spec["auth"] = {"mode": "bearer", "secret": "minilm-keys"}
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    client = TestClient(load_app(module, say=lambda _: None))
    auth = {"Authorization": f"Bearer {env_keys[0]}"}

    def ask(i: int) -> int:
        texts = [f"sentence {i} " * (1 + (i + j) % 9) for j in range(1 + i % 4)]
        if i % 2:
            return client.post("/v1/embeddings", json={"input": texts}, headers=auth).status_code
        return client.post("/embed", json={"texts": texts}, headers=auth).status_code

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(ask, range(200)))
    assert statuses == [200] * 200


class SlowModelClass:
    """Stands in for a model class that is slow to answer (cold, or busy): each call and
    each stream takes a while, and it counts how many were in flight at once."""

    def __init__(self) -> None:
        self.calls = self.streams = 0
        self.most_calls = self.most_streams = 0
        self.run = SimpleNamespace(remote=SimpleNamespace(aio=self.embedded))
        self.checked_generate = SimpleNamespace(remote=SimpleNamespace(aio=self.generated))
        self.tokens = SimpleNamespace(remote_gen=SimpleNamespace(aio=self.stream))

    def __call__(self) -> SlowModelClass:
        return self

    async def answer(self, result: Any) -> Any:
        self.calls += 1
        self.most_calls = max(self.most_calls, self.calls)
        await asyncio.sleep(0.3)
        self.calls -= 1
        return result

    async def generated(self, asked: tasks.Asked) -> dict[str, Any]:
        totals = {"text": "xy", "prompt_tokens": 1, "tokens_generated": 2}
        return dict(await self.answer({**totals, "finish_reason": "stop"}))

    async def embedded(self, texts: list[str]) -> list[list[float]]:
        return list(await self.answer([[0.0, 1.0] for _ in texts]))

    async def stream(self, request: Any, request_id: str) -> Any:
        self.streams += 1
        self.most_streams = max(self.most_streams, self.streams)
        for piece in ("x", "y"):
            await asyncio.sleep(0.2)
            yield "token", piece
        self.streams -= 1
        yield (
            "done",
            {"text": "xy", "prompt_tokens": 1, "tokens_generated": 2, "finish_reason": "stop"},
        )


def test_the_web_tier_waits_on_model_classes_without_blocking_or_a_thread_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While 16 calls to a slow model class are pending, /health answers at once; and
    32 streams are all in flight together, more than the default thread pool holds."""
    monkeypatch.setenv("API_KEYS", "k")
    module = build_and_import(SPECS / "multi.yaml", tmp_path)
    writer, embedder = SlowModelClass(), SlowModelClass()
    app = module.create_app(
        remote.serve(module.writer, writer), remote.serve(module.embedder, embedder)
    )
    auth = {"Authorization": "Bearer k"}
    chat = {"messages": [{"role": "user", "content": "hi"}], "stream": True}

    async def run() -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
            body = {"prompt": "hi", "max_tokens": 2}
            pending = [client.post("/generate", json=body, headers=auth) for _ in range(16)]
            calls = [asyncio.ensure_future(call) for call in pending]
            await asyncio.sleep(0.1)
            started = time.perf_counter()
            health = await client.get("/health")
            waited = time.perf_counter() - started
            assert health.status_code == 200
            assert {r.status_code for r in await asyncio.gather(*calls)} == {200}
            answers = await asyncio.gather(
                *(client.post("/v1/chat/completions", json=chat, headers=auth) for _ in range(32))
            )
            assert {a.status_code for a in answers} == {200}
            assert all(a.text.endswith("data: [DONE]\n\n") for a in answers)
            return waited

    waited = asyncio.run(run())
    assert waited < 0.05, f"/health waited {waited * 1000:.0f} ms behind model calls"
    assert writer.most_calls >= 16
    assert writer.most_streams == 32  # every stream at once; threads would cap them


@pytest.mark.parametrize(("gpu", "spread"), [("H100:2", True), ("H100", False), (None, False)])
def test_several_gpus_hold_one_model_across_them(
    tmp_path: Path, gpu: str | None, spread: bool
) -> None:
    """`h100:2` bills for two GPUs: the image carries accelerate, and the engine loads the
    model with `device_map="auto"` when the container has more than one."""
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["gpu"] = gpu
    built = pipeline.build(write_spec(tmp_path, spec), tmp_path / "out")
    assert ('"accelerate==1.15.0"' in built.source) == spread


def test_a_model_in_the_hub_cache_loads_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the app's Volume holds the whole model, new containers ask the Hub nothing; a
    config without its weights (a download cut short) is not the model."""
    from endpointgen.runtime.engine import hub_cached

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    assert not hub_cached("org/model", None)
    repo = tmp_path / "models--org--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    assert not hub_cached("org/model", None), "a config without its weights: a cut download"
    weights = (2).to_bytes(8, "little") + b"{}"  # a whole safetensors file, with no tensors
    (repo / "snapshots" / "abc123" / "model.safetensors").write_bytes(weights)
    assert hub_cached("org/model", None) and hub_cached("org/model", "main")
    assert not hub_cached("org/other", None)
    assert not hub_cached(str(tmp_path), None), "a local folder is not the Hub"


@pytest.mark.slow
def test_a_revision_picks_that_version_of_a_hub_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Model (`revision`): a branch, tag or commit on the Hub picks that
    version of the model; without one, the latest (`main`). Two versions of one repo sit
    in the Hub cache, as on the app's Volume, each with its own weights."""
    import huggingface_hub.constants
    import torch
    from models import make_tiny_gpt2

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "refs").mkdir(parents=True)
    commits = {"main": "a" * 40, "v2": "b" * 40}
    for seed, (ref, commit) in enumerate(commits.items()):
        make_tiny_gpt2(repo / "snapshots" / commit, seed=seed)
        (repo / "refs" / ref).write_text(commit)

    def loaded(revision: str | None) -> Any:
        spec: dict[str, Any] = {
            "name": "versions",
            "model": {"id": "org/tiny", "task": "text-generation"},
            "auth": {"mode": "bearer"},
            "routes": [{"path": "/generate", "method": "POST", "action": "generate"}],
        }
        if revision is not None:
            spec["model"]["revision"] = revision
        folder = tmp_path / f"spec-{revision}"
        model = build_and_import(write_spec(folder, spec), folder / "out").model.load()
        assert model.status == "ready", model.error
        return model.engine.model.transformer.wte.weight

    main, v2 = loaded(None), loaded("v2")
    assert not torch.equal(main, v2)
    assert torch.equal(loaded("main"), main)
    assert torch.equal(loaded(commits["v2"]), v2)


def test_hub_downloads_use_the_fast_transfer(tmp_path: Path) -> None:
    module = build_and_import(SPECS / "gpt2.yaml", tmp_path)
    assert (
        '.env({"HF_HOME": "/hf-cache", "HF_XET_HIGH_PERFORMANCE": "1"})'
        in Path(module.__file__).read_text()
    )


class Dripping:
    """A text generator that drips a token every 20 ms, up to max_tokens, unless told to
    stop; it records how each generation ended."""

    def __init__(self) -> None:
        self.ended: list[dict[str, Any]] = []

    def generate(self, request: Any, on_text: Any = None, cancelled: Any = None) -> Any:
        made = 0
        reason = "length"
        for _ in range(request.max_tokens):
            if cancelled is not None and cancelled.is_set():
                reason = "cancelled"
                break
            time.sleep(0.02)
            made += 1
            if on_text is not None:
                on_text("x")
        result = {"text": "x" * made, "prompt_tokens": 1, "tokens_generated": made}
        self.ended.append({**result, "finish_reason": reason})
        return self.ended[-1]

    def context_problem(self, request: Any) -> None:
        return None


class Store:
    """A modal.Dict stand-in: the web tier and the model container share it."""

    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> None:
        self.items[key] = value

    def contains(self, key: str) -> bool:
        return key in self.items

    def pop(self, key: str, default: Any = None) -> Any:
        return self.items.pop(key, default)


class StreamingModelClass:
    """A model class whose `.tokens.remote_gen.aio` runs the container's generator in its
    own thread and, like Modal's, tells it nothing when the caller stops reading."""

    def __init__(self, container: Any, cancels: Any) -> None:
        self.container, self.cancels = container, cancels
        self.tokens = SimpleNamespace(remote_gen=SimpleNamespace(aio=self.stream))

    def __call__(self) -> StreamingModelClass:
        return self

    async def stream(self, request: Any, request_id: str) -> Any:
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[Any] = asyncio.Queue()

        def produce() -> None:  # the container runs on, whoever reads
            stop = self.cancels.watch(request_id)
            for piece in self.container.tokens(request, stop):
                with contextlib.suppress(RuntimeError):  # the caller's loop may be gone
                    loop.call_soon_threadsafe(pieces.put_nowait, piece)

        threading.Thread(target=produce, daemon=True).start()
        while True:
            piece = await pieces.get()
            yield piece
            if piece[0] == "done":
                return


def test_a_client_that_goes_away_stops_the_generation_in_the_model_container() -> None:
    engine, store = Dripping(), Store()
    cancels = remote.Cancels("app", store)
    container = tasks.Model("gpt", "text-generation")
    container.serve(engine)  # the model class's own container
    web = remote.serve(
        tasks.Model("gpt", "text-generation"), StreamingModelClass(container, cancels), cancels
    )

    async def leave_early() -> None:
        request = tasks.GenerateRequest(prompt="hi", max_tokens=200)
        stream = web.generation(request, "request-1")
        for _ in range(3):
            assert (await anext(stream))[0] == "token"
        await stream.aclose()  # the client went away

    asyncio.run(leave_early())
    waited = time.monotonic()
    while not engine.ended and time.monotonic() - waited < 5:
        time.sleep(0.05)
    (ended,) = engine.ended
    assert ended["finish_reason"] == "cancelled"
    assert ended["tokens_generated"] < 100, "stopped within about a second, not at 200"
    assert store.items == {}, "the mark is gone once the container has seen it"


@pytest.mark.parametrize(("gpu", "cpu_build"), [(None, True), ("T4", False)])
def test_a_model_on_no_gpu_installs_the_cpu_build_of_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gpu: str | None, cpu_build: bool
) -> None:
    """A CPU-only model app's image takes torch from its CPU index (a few hundred MB),
    not the multi-GB CUDA stack; with a GPU, the default build."""
    asked: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    real = modal.Image.uv_pip_install

    def spy(self: Any, *packages: str, **options: Any) -> Any:
        asked.append((packages, options))
        return real(self, *packages, **options)

    monkeypatch.setattr(modal.Image, "uv_pip_install", spy)
    spec = yaml.safe_load((SPECS / "minilm.yaml").read_text())
    spec["gpu"] = gpu
    build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    first_packages, first_options = asked[0]
    if cpu_build:
        assert first_packages == ("torch==2.13.0",)
        assert first_options == {"index_url": "https://download.pytorch.org/whl/cpu"}
    else:
        (pinned,) = first_packages  # runtime.locked(...): the pins, then the lock's
        assert "index_url" not in first_options and "torch==2.13.0" in pinned


def test_shape_split_puts_a_cpu_web_tier_in_front_of_one_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_gpt2: Path
) -> None:
    """docs/spec.md, Top level (`shape`): `split` puts a CPU web tier taking 100 requests per
    container in front of the model class, which gets the GPU and the scaling; refused requests
    (401) and `/health` never call the model class.

    One line in the spec: refused requests and probes land on CPU, not on the GPU."""
    monkeypatch.setenv("API_KEYS", "k")
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["shape"] = "split"
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    web = module.web.info()
    model = module.Inference._get_class_service_function().info()
    assert web.gpus == [] and model.gpus == [("L40S", 1)]
    assert web.concurrency_info is not None and web.concurrency_info.max_inputs == 100
    assert model.concurrency_info is not None
    assert (model.concurrency_info.max_inputs, model.concurrency_info.target_inputs) == (8, None)
    assert model.secrets == [] and web.secrets == ["modal.Secret.from_name('gpt2-auth')"]
    assert not hasattr(module, "Server")
    # The web tier's answers, with the model class standing in: a refusal costs no call.
    model_class = SlowModelClass()
    app = module.create_app(remote.serve(module.model, model_class))
    client = TestClient(app)
    assert client.post("/generate", json={"prompt": "hi"}).status_code == 401
    assert client.get("/health").status_code == 200
    assert model_class.most_calls == 0
    ok = client.post("/generate", json={"prompt": "hi"}, headers={"Authorization": "Bearer k"})
    assert ok.status_code == 200 and model_class.most_calls == 1


class UnloadableModelClass(SlowModelClass):
    """Stands in for a class whose `@modal.enter` raises: once Modal gives up on the
    crash-looping container, every call fails with the exception load raised."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = True

    async def answer(self, result: Any) -> Any:
        if self.loads:
            self.calls += 1
            raise tasks.LoadFailed("OSError: gpt2 does not appear to have model.safetensors")
        return await super().answer(result)


def test_a_web_tier_does_not_report_ready_for_a_class_that_cannot_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue "Modal fidelity", item 3: the split shape's `/health` and routes answer 503
    with the short reason once a call learns the class cannot load; they stop calling it
    for `RETRY_AFTER` seconds, and serve again once a container can load."""
    monkeypatch.setenv("API_KEYS", "k")
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["shape"] = "split"
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    model_class = UnloadableModelClass()
    app = module.create_app(remote.serve(module.model, model_class))
    client = TestClient(app)
    auth = {"Authorization": "Bearer k"}
    reason = "OSError: gpt2 does not appear to have model.safetensors"
    assert client.get("/health").status_code == 200  # nothing is known yet

    first = client.post("/generate", json={"prompt": "hi"}, headers=auth)
    assert first.status_code == 503
    assert first.json()["error"] == f"model is not ready (failed): {reason}"
    health = client.get("/health")
    assert health.status_code == 503
    assert health.json() == {"status": "failed", "error": reason, "model": "gpt2"}
    for _ in range(5):
        assert client.post("/generate", json={"prompt": "hi"}, headers=auth).status_code == 503
    assert model_class.calls == 1, "a class known not to load is not called again at once"

    # Later, a redeploy (or a container that can load) answers: calls go through again.
    model_class.loads = False
    monkeypatch.setattr(remote.RemoteEngine, "RETRY_AFTER", 0.0)
    monkeypatch.setattr(module.model, "retry_at", time.monotonic())
    assert client.get("/health").status_code == 200
    assert client.post("/generate", json={"prompt": "hi"}, headers=auth).status_code == 200


def test_shape_split_needs_a_model(tmp_path: Path) -> None:
    spec = {"name": "app", "shape": "split", "routes": [{"path": "/h", "action": "health"}]}
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert str(problem).endswith(
        "shape: `shape: split` puts a web tier in front of `model`, and this spec has none"
    )
