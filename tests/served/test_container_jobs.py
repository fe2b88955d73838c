"""Jobs in a Modal container (tests/modal_container.py): a job spawned on the app's job
worker whose call Modal reports failed (the worker timed out, its model cannot load, Modal
lost it, it was cancelled) is polled as `failed` (or `cancelled`) with a public status and
message, kept in the job's record, and never a 500."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import modal.exception
import pytest
import yaml
from conftest import SPECS, write_spec
from modal_container import Cloud, Container

from endpointgen.compiler import pipeline
from endpointgen.runtime import tasks

pytestmark = pytest.mark.slow

KEY = "key-one"
HEADERS = {"X-API-Key": KEY}
PROMPT = {"prompt": "Hello", "max_tokens": 2}
SECRET = "traceback-like internals of the worker"


@pytest.fixture
def job_app(tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """specs/jobs.yaml in one container class, `Server`, whose `job` method is the job
    worker, pointed at a tiny model; the built module's file."""
    folder = tmp_path / "specs"
    shutil.copytree(SPECS, folder, ignore=shutil.ignore_patterns("models", "__pycache__"))
    spec = yaml.safe_load((SPECS / "jobs.yaml").read_text())
    spec["model"]["id"] = str(tiny_gpt2)
    spec["shape"] = "single"  # the harness spawns on a class's method, not on a function
    built = pipeline.build(write_spec(folder, spec), tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    monkeypatch.setenv("API_KEYS", KEY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return built.path


async def submit(cloud: Cloud, web: Container, **headers: str) -> tuple[str, Any]:
    """A job of POST /generate: its status URL and the FunctionCall spawned for it."""
    before = set(cloud.calls)
    answer = await web.request("POST", "/generate", json=PROMPT, headers={**HEADERS, **headers})
    assert answer.status == 202, answer.body
    (spawned,) = set(cloud.calls) - before
    return str(answer.header("location")), cloud.calls[spawned]


async def poll(web: Container, url: str) -> dict[str, Any]:
    answer = await web.request("GET", url, headers=HEADERS)
    assert answer.status == 200, answer.body
    body: dict[str, Any] = answer.json()
    return body


FAILURES = [
    pytest.param(
        modal.exception.FunctionTimeoutError(f"Function timed out: {SECRET}"),
        {"status": 504, "message": "the job ran past jobs.timeout"},
        id="timeout",
    ),
    pytest.param(
        tasks.LoadFailed("cannot read the weights"),
        {"status": 503, "message": "model is not ready (failed): cannot read the weights"},
        id="model-cannot-load",
    ),
    pytest.param(
        modal.exception.RemoteError(SECRET),
        {"status": 500, "message": "the job's worker stopped before it answered"},
        id="remote-error",
    ),
    pytest.param(
        modal.exception.InternalFailure(SECRET),
        {"status": 503, "message": "the job was lost in Modal; submit it again"},
        id="internal-failure",
    ),
    pytest.param(
        modal.exception.ExecutionError(SECRET),
        {"status": 500, "message": "the job's worker stopped before it answered"},
        id="other-modal-error",
    ),
    pytest.param(
        KeyError(SECRET),
        {"status": 500, "message": "internal server error"},
        id="worker-crash",
    ),
]


@pytest.mark.parametrize(("failure", "error"), FAILURES)
def test_a_job_whose_running_call_fails_is_failed_with_a_public_error(
    job_app: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException, error: dict[str, Any]
) -> None:
    """docs/spec.md, Jobs (`job`, `jobs.timeout`): a job Modal reports failed while it ran
    (it ran past `jobs.timeout`, its model cannot load, Modal's own failure) is polled
    as `failed`, with the status and a short message the route would answer, and no
    internals; later polls answer the same from the job's record, without asking Modal."""
    cloud = Cloud(job_app, monkeypatch)
    web = cloud.start("Server")

    async def go() -> None:
        url, call = await submit(cloud, web)
        call.fail(failure)
        first = await poll(web, url)
        assert first["status"] == "failed"
        assert first["error"] == error
        assert first["finished_at"] is not None
        assert SECRET not in json.dumps(first)
        call.fail(modal.exception.FunctionTimeoutError("asked again"))
        assert await poll(web, url) == first  # kept in the record: Modal is not asked again
        await web.shutdown()

    asyncio.run(go())


@pytest.mark.parametrize(("failure", "error"), FAILURES)
def test_prefer_wait_answers_a_failed_job_with_its_error(
    job_app: Path, monkeypatch: pytest.MonkeyPatch, failure: BaseException, error: dict[str, Any]
) -> None:
    """docs/spec.md, Jobs (`Prefer: wait=N`): a job whose call fails within N seconds is
    answered with its error's status and message, as the route would have, not a 500;
    then polled the same as `failed`."""
    cloud = Cloud(job_app, monkeypatch)
    cloud.failing[("Server", "job")] = failure
    web = cloud.start("Server")

    async def go() -> None:
        answer = await web.request(
            "POST", "/generate", json=PROMPT, headers={**HEADERS, "Prefer": "wait=5"}
        )
        assert answer.status == error["status"], answer.body
        assert answer.json()["error"] == error["message"]
        assert answer.json()["request_id"] == answer.header("x-request-id")
        url = f"/generate/jobs/{answer.header('x-job-id')}"
        assert (await poll(web, url))["error"] == error
        await web.shutdown()

    asyncio.run(go())


def test_a_job_whose_call_modal_cancelled_is_cancelled(
    job_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs (`job`): a job whose call was cancelled on Modal (not through
    DELETE: from Modal's dashboard, or as the app stopped) is polled as `cancelled`, and
    DELETE then says it has ended."""
    cloud = Cloud(job_app, monkeypatch)
    web = cloud.start("Server")

    async def go() -> None:
        url, call = await submit(cloud, web)
        call.fail(modal.exception.InputCancellation("Input was cancelled by user"))
        cancelled = await poll(web, url)
        assert cancelled["status"] == "cancelled" and "error" not in cancelled
        assert await poll(web, url) == cancelled
        again = await web.request("DELETE", url, headers=HEADERS)
        assert again.status == 409 and again.json()["error"] == "job already cancelled"
        await web.shutdown()

    asyncio.run(go())


def test_a_poll_that_cannot_reach_modal_is_a_503_and_the_job_goes_on(
    job_app: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs (`GET <path>/jobs/<id>`): when Modal cannot be reached to ask
    about a job, that poll is a 503 with Retry-After, and the job is not failed for it: a
    later poll finds it succeeded."""
    cloud = Cloud(job_app, monkeypatch)
    web = cloud.start("Server")

    async def go() -> None:
        url, call = await submit(cloud, web)
        call.fail(modal.exception.ConnectionError(SECRET))
        unreachable = await web.request("GET", url, headers=HEADERS)
        assert unreachable.status == 503
        assert unreachable.json()["error"] == "the job's status cannot be read now; try again"
        assert unreachable.header("retry-after") is not None
        assert SECRET not in unreachable.body.decode()
        call.outcome = None  # Modal answers again
        await asyncio.wait_for(asyncio.shield(call.task), 60)
        done = await poll(web, url)
        assert done["status"] == "succeeded" and done["result"]["tokens_generated"] <= 2
        await web.shutdown()

    asyncio.run(go())
