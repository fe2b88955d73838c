"""Prometheus metrics at /metrics (`metrics: {enabled, public}`), read back with
`prometheus_client`'s own parser: the counts equal the requests sent."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import build_and_import, gpt2_spec, write_spec
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from servers import Server

from endpointgen.compiler import pipeline
from endpointgen.runtime import http, metrics, tasks

AUTH = {"Authorization": "Bearer key-one"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, tiny_gpt2: Path) -> Iterator[Server]:
    spec = gpt2_spec(tiny_gpt2, metrics={"enabled": True})
    spec["rate_limit"] = {"limit": "1000/minute", "key": "api_key"}
    spec["routes"][0]["rate_limit"] = {"limit": "3/minute", "key": "api_key"}
    assert spec["routes"][0]["path"] == "/generate"
    server = Server(write_spec(tmp_path_factory.mktemp("metrics"), spec))
    server.wait_ready()
    yield server
    server.stop()


def test_metrics_count_what_was_served(served: Server) -> None:
    """docs/spec.md, Metrics (`endpointgen_requests_total`,
    `endpointgen_request_duration_seconds`, `endpointgen_model_duration_seconds`,
    `endpointgen_tokens_generated_total`, `endpointgen_model_load_seconds`,
    `endpointgen_rate_limited_total`, `endpointgen_auth_failures_total`, `process_*`):
    requests by route, method and status; latency per route; model calls, tokens, load
    time; 429s and 401s; the process's CPU time, memory and open files. No credential or
    address in a label."""
    url = served.url
    before = scrape(httpx.get(url + "/metrics", headers=AUTH).text)
    body = {"prompt": "Hello", "max_tokens": 4, "seed": 1}
    answers = [httpx.post(url + "/generate", json=body, headers=AUTH) for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    tokens = sum(a.json()["tokens_generated"] for a in answers[:3])
    bad = {"Authorization": "Bearer not-a-key"}
    assert {httpx.post(url + "/generate", json=body, headers=bad).status_code for _ in "ab"} == {
        401
    }
    for _ in range(4):
        assert httpx.get(url + "/health").status_code == 200
    assert httpx.get(url + "/no/such/route").status_code == 404

    refused = httpx.get(url + "/metrics")  # behind the app's auth
    assert refused.status_code == 401
    page = httpx.get(url + "/metrics", headers=AUTH)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = scrape(page.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    generate = {"route": "/generate", "method": "POST"}
    assert grew("endpointgen_requests_total", **generate, status="200") == 3
    assert grew("endpointgen_requests_total", **generate, status="429") == 2
    assert grew("endpointgen_requests_total", **generate, status="401") == 2
    assert grew("endpointgen_requests_total", route="/health", method="GET", status="200") == 4
    assert grew("endpointgen_requests_total", route="unmatched", method="GET", status="404") == 1
    assert grew("endpointgen_request_duration_seconds_count", route="/generate") == 7
    assert grew("endpointgen_request_duration_seconds_bucket", route="/generate", le="+Inf") == 7
    model = served_model(after)
    assert grew("endpointgen_model_duration_seconds_count", model=model, call="generate") == 3
    assert grew("endpointgen_tokens_generated_total", model=model) == tokens
    assert value(after, "endpointgen_model_load_seconds", model=model) > 0
    assert grew("endpointgen_rate_limited_total", limit="/generate") == 2
    assert grew("endpointgen_auth_failures_total", mode="bearer") == 3  # 2 + the bare scrape
    assert value(after, "endpointgen_queue_depth", model=model) == 0
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_cpu_seconds_total") > 0
    assert value(after, "process_open_fds") > 0
    for secret in ("key-one", "not-a-key", "127.0.0.1", "/no/such/route"):
        assert secret not in page.text


def served_model(samples: Samples) -> str:
    (name,) = {
        dict(labels)["model"]
        for (metric, labels) in samples
        if metric == "endpointgen_model_load_seconds"
    }
    return name


def test_metrics_public_and_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/spec.md, Top level (`metrics`): off by default (`GET /metrics` is a 404); with
    `{enabled: true, public: true}` anyone may read it, and it is not in `/openapi.json`."""
    monkeypatch.setenv("API_KEYS", "key-one")
    spec: dict[str, Any] = {
        "name": "hello",
        "auth": {"mode": "bearer"},
        "routes": [{"path": "/health", "action": "health"}],
    }
    off = TestClient(build_and_import(write_spec(tmp_path, spec), tmp_path / "off").create_app())
    assert off.get("/metrics").status_code == 404
    spec["metrics"] = {"enabled": True, "public": True}
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "public")
    public = TestClient(module.create_app())
    assert public.get("/health").status_code == 200
    page = public.get("/metrics")
    assert page.status_code == 200
    assert (
        value(
            scrape(page.text),
            "endpointgen_requests_total",
            route="/health",
            method="GET",
            status="200",
        )
        >= 1
    )
    doc = public.get("/openapi.json", headers={"Authorization": "Bearer key-one"}).json()
    assert "/metrics" not in doc["paths"]


def test_a_route_at_metrics_is_refused_when_metrics_are_on(tmp_path: Path) -> None:
    spec = {
        "name": "app",
        "metrics": {"enabled": True},
        "routes": [{"path": "/metrics", "action": "health"}],
    }
    (problem,) = pipeline.validate(write_spec(tmp_path, spec))
    assert "GET /metrics is where `metrics: {enabled: true}` serves" in str(problem)


def slow_embedder(folder: Path, name: str, batching: tasks.Batching | None, seconds: float) -> Any:
    """An app with /embed on a loaded embedder that takes `seconds` a call, and /metrics."""
    loader = folder / "load.py"
    loader.write_text(
        "import time\n"
        "def load(where):\n"
        "    def embed(texts):\n"
        f"        time.sleep({seconds})\n"
        "        return [[float(len(t))] for t in texts]\n"
        "    return embed\n"
    )
    model = tasks.Model(
        name, "embeddings", loader=tasks.Loader(loader, "load", "load.py"), batching=batching
    ).load()
    web = http.app(name.replace("/", "-"), metrics=True)

    @web.post("/embed")
    async def embed(body: tasks.EmbedRequest) -> tasks.EmbedResponse:
        return await model.embed(body)

    @web.get("/metrics")
    async def prometheus() -> http.Response:
        return metrics.exposition()

    return web


def test_batch_sizes_and_queue_depth(tmp_path: Path) -> None:
    """docs/spec.md, Metrics (`endpointgen_batch_size`, `endpointgen_model_duration_seconds`):
    inputs per batched call, by model; each batched call timed with `call` `batch`.

    Eight concurrent requests against a batching model: the batch-size histogram holds
    every input once, and the queue is empty once they are answered."""
    web = slow_embedder(tmp_path, "org/batched", tasks.Batching(4, 20), seconds=0.05)

    async def run() -> Samples:
        transport = httpx.ASGITransport(app=web)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            before = scrape((await client.get("/metrics")).text)
            sent = [client.post("/embed", json={"texts": [f"t{i}"]}) for i in range(8)]
            assert {r.status_code for r in await asyncio.gather(*sent)} == {200}
            after = scrape((await client.get("/metrics")).text)
        return {k: after[k] - before.get(k, 0.0) for k in after}

    grew = asyncio.run(run())
    assert value(grew, "endpointgen_batch_size_sum", model="org/batched") == 8
    assert 2 <= value(grew, "endpointgen_batch_size_count", model="org/batched") <= 8
    assert value(
        grew, "endpointgen_model_duration_seconds_count", model="org/batched", call="batch"
    ) == value(grew, "endpointgen_batch_size_count", model="org/batched")
    assert value(grew, "endpointgen_queue_depth", model="org/batched") == 0


@pytest.mark.slow
def test_queue_depth_counts_the_model_calls_waiting_or_running(tmp_path: Path) -> None:
    """docs/spec.md, Metrics (`endpointgen_queue_depth`): a gauge per model of the calls
    waiting or running, a batcher's queue included: up while requests wait on a slow
    model, back to 0 once they are answered."""

    def depth(page: httpx.Response, model: str) -> float:
        return value(scrape(page.text), "endpointgen_queue_depth", model=model)

    def depths(name: str, batching: tasks.Batching | None) -> tuple[float, float]:
        web = slow_embedder(tmp_path, name, batching, seconds=0.5)

        async def run() -> tuple[float, float]:
            transport = httpx.ASGITransport(app=web)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                sent = [
                    asyncio.ensure_future(client.post("/embed", json={"texts": [f"t{i}"]}))
                    for i in range(6)
                ]
                await asyncio.sleep(0.2)  # every request is in, none is answered
                during = depth(await client.get("/metrics"), name)
                assert {r.status_code for r in await asyncio.gather(*sent)} == {200}
                after = depth(await client.get("/metrics"), name)
            return during, after

        return asyncio.run(run())

    assert depths("org/one-at-a-time", None) == (6, 0)  # six calls, running or waiting
    # Two in the batch that runs, four queued behind it: six waiting or running.
    assert depths("org/batched-by-two", tasks.Batching(2, 20)) == (6, 0)
