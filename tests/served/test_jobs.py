"""Job routes (`job:`): submitted with POST (202 and an id), polled and cancelled at
<path>/jobs/<id>, kept for their TTL, owned by the credential that submitted them, and
announced to a signed callback. Run against a real `endpointgen serve` with slow handlers;
the Modal side (spawn target, timeout, Dict) is read back offline with the real SDK."""

from __future__ import annotations

import concurrent.futures
import http.server
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import modal
import pytest
import yaml
from conftest import SPECS, build_and_import, write_spec
from servers import Server, free_port
from starlette.datastructures import Headers

from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError
from endpointgen.runtime import jobs, webhooks

KEY, OTHER = "key-one", "key-two"
SECRET = "callback-signing-key"
HANDLERS = '''
import asyncio, os, pathlib, time


async def slow(data):
    """Counts to `seconds * 20`, leaving each count in a file named by `tag` (and the time
    it started in `<tag>.start`)."""
    marks = pathlib.Path(os.environ["JOB_MARKS"]) / data["tag"]
    marks.with_suffix(".start").write_text(repr(time.time()))
    for i in range(int(data["seconds"] * 20)):
        marks.write_text(str(i))
        await asyncio.sleep(0.05)
    return {"tag": data["tag"], "done": True}


def broken(data):
    if data["how"] == "mapped":
        raise ValueError("bad input")
    raise RuntimeError("secret internals")
'''


def job_spec(private: bool = True) -> dict[str, Any]:
    body = {"tag": {"type": "str", "max_length": 64}, "seconds": {"type": "float"}}
    return {
        "name": "jobs-test",
        "auth": {"mode": "api_key"},
        "errors": {"ValueError": {"status": 422, "message": "the input could not be used"}},
        "jobs": {"concurrency": 8, "callbacks": {"hosts": ["127.0.0.1"], "private": private}},
        "routes": [
            {
                "path": "/slow",
                "method": "POST",
                "action": "handler",
                "handler": "handlers.py:slow",
                "request": body,
                "job": {"ttl": 2},
            },
            {  # the same work, its results kept long enough to poll a hundred of them
                "path": "/many",
                "method": "POST",
                "action": "handler",
                "handler": "handlers.py:slow",
                "request": body,
                "job": {"ttl": 600},
            },
            {
                "path": "/broken",
                "method": "POST",
                "action": "handler",
                "handler": "handlers.py:broken",
                "request": {"how": {"type": "str"}},
                "job": True,
            },
            {"path": "/health", "action": "health"},
        ],
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    folder = tmp_path_factory.mktemp("jobs")
    (folder / "handlers.py").write_text(HANDLERS)
    marks = folder / "marks"
    marks.mkdir()
    env = {"API_KEYS": f"{KEY},{OTHER}", "JOB_MARKS": str(marks), "JOB_CALLBACK_SECRET": SECRET}
    server = Server(write_spec(folder, job_spec()), env=env)
    try:
        server.wait_ready()
        yield server, marks
    finally:
        server.stop()
    # The one crashing job's traceback is in the server's log, and nothing else's.
    assert server.output.count("Traceback") == server.output.count('"message": "job failed"') == 1


def client(server: Server, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"X-API-Key": key}, timeout=30)


def poll_until_done(http_client: httpx.Client, url: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status: dict[str, Any] = http_client.get(url).json()
        if status["status"] in ("succeeded", "failed", "cancelled"):
            return status
        time.sleep(0.05)
    raise AssertionError(f"{url} not done in {timeout}s")


@pytest.mark.slow
def test_a_job_is_submitted_polled_and_answers_the_routes_own_body(
    served: tuple[Server, Path],
) -> None:
    """docs/spec.md, Jobs (`job`, `POST <path>`, `GET <path>/jobs/<id>`): POST answers 202
    with {id, status, urls} and Location; GET says pending or running, then succeeded with
    the route's own answer as `result`, kept `ttl` seconds."""
    server, _ = served
    with client(server) as c:
        submitted = c.post("/slow", json={"tag": "first", "seconds": 0.5})
        assert submitted.status_code == 202
        body = submitted.json()
        url = f"/slow/jobs/{body['id']}"
        assert body["status"] in ("pending", "running")
        assert body["urls"] == {"status": url, "cancel": url}
        assert submitted.headers["location"] == url
        assert c.get(url).json()["status"] in ("pending", "running")
        done = poll_until_done(c, url)
    assert done["status"] == "succeeded"
    assert done["result"] == {"tag": "first", "done": True}
    assert done["expires_at"] == pytest.approx(done["finished_at"] + 2, abs=0.01)


@pytest.mark.slow
def test_prefer_wait_answers_the_result_itself_when_the_job_ends_in_time(
    served: tuple[Server, Path],
) -> None:
    """docs/spec.md, Jobs (`job`): `Prefer: wait=N` answers 200 with the route's own body
    when the job ends within N seconds, and 202 as usual when it does not."""
    server, _ = served
    with client(server) as c:
        quick = c.post(
            "/slow", json={"tag": "quick", "seconds": 0.1}, headers={"Prefer": "wait=10"}
        )
        assert quick.status_code == 200, quick.text
        assert quick.json() == {"tag": "quick", "done": True}
        assert quick.headers["preference-applied"] == "wait=10"
        late = c.post("/slow", json={"tag": "late", "seconds": 3}, headers={"Prefer": "wait=1"})
        assert late.status_code == 202
        assert c.delete(late.headers["location"]).status_code == 200


@pytest.mark.slow
def test_cancelling_a_running_job_stops_its_work(served: tuple[Server, Path]) -> None:
    """docs/spec.md, Jobs (`DELETE <path>/jobs/<id>`): cancels the job, whose work stops;
    cancelling it again is a 409."""
    server, marks = served
    with client(server) as c:
        url = c.post("/slow", json={"tag": "cancelled", "seconds": 20}).headers["location"]
        mark = marks / "cancelled"
        deadline = time.monotonic() + 10
        while not mark.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cancelled = c.delete(url)
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        reached = int(mark.read_text())
        time.sleep(0.5)
        assert int(mark.read_text()) == reached  # no count after the cancel
        assert reached < 100
        assert c.get(url).json()["status"] == "cancelled"
        again = c.delete(url)
        assert again.status_code == 409 and again.json()["error"] == "job already cancelled"


@pytest.mark.slow
def test_only_the_submitting_key_sees_or_cancels_a_job(served: tuple[Server, Path]) -> None:
    """docs/spec.md, Jobs (`job`): another credential gets 404 for a job, as for an id
    that never existed; no key at all gets 401."""
    server, _ = served
    with client(server) as mine, client(server, OTHER) as theirs:
        url = mine.post("/slow", json={"tag": "owned", "seconds": 1}).headers["location"]
        assert theirs.get(url).status_code == 404
        assert theirs.delete(url).status_code == 404
        assert theirs.get("/slow/jobs/job-doesnotexist").json()["error"] == "no such job"
        assert httpx.get(server.url + url).status_code == 401
        assert mine.get(url).status_code == 200
        assert poll_until_done(mine, url)["status"] == "succeeded"


@pytest.mark.slow
def test_an_expired_result_answers_410_then_404(served: tuple[Server, Path]) -> None:
    """docs/spec.md, Jobs (`job`): a finished job is kept `ttl` seconds; after that its id
    answers 410 once, then 404."""
    server, _ = served
    with client(server) as c:
        url = c.post("/slow", json={"tag": "expiring", "seconds": 0.05}).headers["location"]
        assert poll_until_done(c, url)["status"] == "succeeded"
        time.sleep(2.3)
        gone = c.get(url)
        assert gone.status_code == 410 and gone.json()["error"] == "the job's result has expired"
        assert c.get(url).status_code == 404


@pytest.mark.slow
def test_a_failing_job_reports_the_mapped_error_and_no_internals(
    served: tuple[Server, Path],
) -> None:
    """docs/spec.md, Jobs (`job`): a job whose work fails is `failed` with the status and
    message the route would have answered: the spec's `errors:` mapping, else a 500 that
    says nothing of the exception."""
    server, _ = served
    with client(server) as c:
        mapped = c.post("/broken", json={"how": "mapped"}).headers["location"]
        internal = c.post("/broken", json={"how": "crash"}).headers["location"]
        assert poll_until_done(c, mapped)["error"] == {
            "status": 422,
            "message": "the input could not be used",
        }
        crashed = poll_until_done(c, internal)
        assert crashed["status"] == "failed"
        assert crashed["error"] == {"status": 500, "message": "internal server error"}
        assert "secret internals" not in json.dumps(crashed)
        waited = c.post("/broken", json={"how": "mapped"}, headers={"Prefer": "wait=5"})
        assert waited.status_code == 422
        assert waited.json()["error"] == "the input could not be used"
        assert waited.json()["request_id"] == waited.headers["x-request-id"]
        invalid = c.post("/broken", json={"how": 3})
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["loc"] == ["body", "how"]


@pytest.mark.slow
def test_a_hundred_concurrent_submissions_are_each_run_once(served: tuple[Server, Path]) -> None:
    """docs/spec.md, Jobs (`jobs.concurrency`): 100 jobs submitted at once get 100 ids,
    at most `concurrency` run at once while the rest wait `pending`, and each one runs its
    own request: none lost, none duplicated."""
    server, marks = served

    def submit(n: int) -> tuple[str, str]:
        with client(server) as c:
            answer = c.post("/many", json={"tag": f"many-{n}", "seconds": 0.2})
            assert answer.status_code == 202
            return str(answer.json()["id"]), str(answer.json()["status"])

    with concurrent.futures.ThreadPoolExecutor(25) as pool:
        submitted = list(pool.map(submit, range(100)))
    ids = [job_id for job_id, _ in submitted]
    assert len(set(ids)) == 100
    assert "pending" in {state for _, state in submitted}  # `concurrency: 8`: some wait
    with client(server) as c:
        results = [poll_until_done(c, f"/many/jobs/{i}", timeout=60) for i in ids]
    starts = [float((marks / f"many-{n}.start").read_text()) for n in range(100)]
    spans = [(start, r["finished_at"]) for start, r in zip(starts, results, strict=True)]
    # finished_at is rounded to the millisecond, and the next job starts within one
    most = max(sum(s <= t < f - 0.001 for s, f in spans) for t, _ in spans)
    assert 2 <= most <= 8
    assert [r["result"]["tag"] for r in results] == [f"many-{n}" for n in range(100)]
    assert {r["id"] for r in results} == set(ids)


class Receiver:
    """A local HTTP server that keeps what is POSTed to it."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                owner.received.append((dict(self.headers.items()), self.rfile.read(size)))
                self.send_response(204 if len(owner.received) > 1 else 503)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.slow
def test_a_callback_is_signed_as_a_generic_webhook_verifies_and_retried(
    served: tuple[Server, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs (`jobs.callbacks`, `POST <path>`): `?callback_url=` gets the
    job's status when it ends, signed with HMAC-SHA256 over `<timestamp>.<body>`, as
    endpointgen's `generic` webhook verifies it; a receiver that fails is tried again."""
    server, _ = served
    receiver = Receiver()
    try:
        with client(server) as c:
            hook = f"http://127.0.0.1:{receiver.port}/done"
            submitted = c.post(
                "/slow", params={"callback_url": hook}, json={"tag": "called", "seconds": 0.1}
            )
            assert submitted.status_code == 202
            deadline = time.monotonic() + 15
            while len(receiver.received) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
    finally:
        receiver.close()
    assert len(receiver.received) == 2  # the first answered 503, so it came again
    headers, body = receiver.received[-1]
    status = json.loads(body)
    assert status["id"] == submitted.json()["id"]
    assert status["status"] == "succeeded" and status["result"] == {"tag": "called", "done": True}
    monkeypatch.setenv("RECEIVER_KEY", SECRET)
    signature = webhooks.Signature(
        header="X-Endpointgen-Signature",
        prefix="sha256=",
        timestamp_header="X-Endpointgen-Timestamp",
    )
    verifier = webhooks.Webhook("generic", "RECEIVER_KEY", signature=signature)
    webhooks.verify_generic(verifier.secret, body, Headers(headers), verifier)
    with pytest.raises(webhooks.BadSignature):
        webhooks.verify_generic(verifier.secret, body + b" ", Headers(headers), verifier)


def test_callbacks_go_only_to_listed_public_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs (`jobs.callbacks`): a callback_url whose host the spec does not
    list, or that is a private or loopback address without `private: true`, is refused
    with 422 before any job starts (no SSRF through a job)."""
    from fastapi.testclient import TestClient

    (tmp_path / "handlers.py").write_text(HANDLERS)
    monkeypatch.setenv("API_KEYS", KEY)
    monkeypatch.setenv("JOB_CALLBACK_SECRET", SECRET)
    spec = job_spec(private=False)
    spec["jobs"]["callbacks"]["hosts"] = ["127.0.0.1", "localhost", "hooks.example.com"]
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    with TestClient(module.create_app()) as c:
        for url, reason in (
            ("http://127.0.0.1:9/done", "is a private address"),
            ("http://localhost:9/done", "is a private address"),
            ("http://evil.example.org/done", "is not one this app calls back"),
            ("ftp://127.0.0.1/done", "must be an http or https URL"),
            ("http://user:pw@hooks.example.com/x", "may not carry credentials"),
        ):
            answer = c.post(
                "/slow",
                params={"callback_url": url},
                json={"tag": "refused", "seconds": 0},
                headers={"X-API-Key": KEY},
            )
            assert answer.status_code == 422, url
            assert reason in answer.json()["detail"][0]["msg"], url
        monkeypatch.delenv("JOB_CALLBACK_SECRET")
        unsigned = c.post(
            "/slow",
            params={"callback_url": "http://127.0.0.1:9/"},
            json={"tag": "x", "seconds": 0},
            headers={"X-API-Key": KEY},
        )
        assert "JOB_CALLBACK_SECRET is not set" in unsigned.json()["detail"][0]["msg"]


def test_openapi_documents_the_job_routes_and_states(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs (`job`): /openapi.json has the submit (202, JobAccepted), the
    poll and the cancel (JobStatus with its states, 404, 410)."""
    from fastapi.testclient import TestClient

    (tmp_path / "handlers.py").write_text(HANDLERS)
    monkeypatch.setenv("API_KEYS", KEY)
    module = build_and_import(write_spec(tmp_path, job_spec()), tmp_path / "out")
    doc = TestClient(module.create_app()).get("/openapi.json", headers={"X-API-Key": KEY})
    paths = doc.json()["paths"]
    assert "202" in paths["/slow"]["post"]["responses"]
    poll = paths["/slow/jobs/{job_id}"]
    assert {"404", "410"} <= set(poll["get"]["responses"]) and "409" in poll["delete"]["responses"]
    states = doc.json()["components"]["schemas"]["JobStatus"]["properties"]["status"]["enum"]
    assert states == ["pending", "running", "succeeded", "failed", "cancelled"]


def test_on_modal_a_job_is_spawned_on_the_model_class_or_a_job_function(tmp_path: Path) -> None:
    """docs/spec.md, Jobs (`jobs.timeout`): jobs run in a CPU class, `JobRunner.job`, with
    the web function's Secrets and the jobs' timeout, and a model app's model class gets
    that timeout too; with `shape: single`, in the model's class (`Server.job`). Records
    go to the Dict `<app>-jobs`. Read back with the real SDK, offline."""
    (tmp_path / "handlers.py").write_text(HANDLERS)
    spec = job_spec()
    spec["jobs"]["timeout"] = 7200
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    runner = module.JobRunner._get_class_service_function().info()
    assert (runner.timeout, runner.method_names, runner.gpus) == (7200, ["job"], [])
    assert runner.secrets == module.web.info().secrets
    assert module.web.info().timeout != 7200  # the web function keeps its own
    queue = module.create_app().state.jobs
    assert isinstance(queue.worker(), modal.Function)
    assert queue.worker().info().method_names == ["job"]
    on_modal = jobs.OnModal(queue.app, queue.worker)
    assert on_modal.name == "jobs-test-jobs"
    assert isinstance(on_modal.records, modal.Dict)  # made lazily, looked up on first use
    assert set(queue.works) == {"/slow", "/many", "/broken"}

    built = build_and_import(SPECS / "jobs.yaml", tmp_path / "model-out")
    model = built.Inference._get_class_service_function().info()
    assert (model.timeout, model.gpus) == (3600, [("L4", 1)])
    assert built.JobRunner._get_class_service_function().info().gpus == []
    single = yaml.safe_load((SPECS / "jobs.yaml").read_text())
    single["shape"] = "single"
    shutil.copytree(SPECS / "handlers", tmp_path / "single" / "handlers")
    built = build_and_import(write_spec(tmp_path / "single", single), tmp_path / "single-out")
    info = built.Server._get_class_service_function().info()
    assert info.method_names == ["web", "job"]
    assert info.timeout == 3600
    assert not hasattr(built, "JobRunner")  # no class beside the model's


def test_values_cross_to_the_modal_worker_as_plain_data_and_come_back_typed(
    tmp_path: Path,
) -> None:
    """docs/spec.md, Jobs (`job`): what a job is spawned with on Modal is plain JSON data
    (no pickled class of the built module), made the route's own types again in the
    worker."""
    (tmp_path / "handlers.py").write_text(HANDLERS)
    module = build_and_import(write_spec(tmp_path, job_spec()), tmp_path / "out")
    queue = module.create_app().state.jobs
    work = queue.works["/slow"][0]
    body = module.PostSlowRequest(tag="wire", seconds=0.5)
    wire = jobs.to_wire({"body": body})
    assert wire == {"body": {"tag": "wire", "seconds": 0.5}}
    assert json.loads(json.dumps(wire)) == wire
    assert jobs.from_wire(work, wire) == {"body": body}


def test_a_job_is_a_post_model_action_or_handler_with_one_answer(tmp_path: Path) -> None:
    """docs/spec.md, Jobs (`job`): refused on GET, on routes that stream, on actions
    without a single JSON request, and `jobs:` without any job route."""
    spec = yaml.safe_load((SPECS / "jobs.yaml").read_text())
    spec["routes"][0]["stream"] = True
    with pytest.raises(SpecError, match="a job keeps one answer; it cannot stream"):
        pipeline.build(write_spec(tmp_path / "a", spec), tmp_path / "a-out")
    spec = {
        "name": "nojobs",
        "jobs": {"timeout": 60},
        "routes": [{"path": "/health", "action": "health", "job": True}],
    }
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path / "b", spec), tmp_path / "b-out")
    text = str(caught.value)
    assert "`job` applies to classify, embed, generate, handler, rerank routes, not health" in text


def test_endpointgen_test_waits_for_a_job_and_judges_its_answer(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs (`job`): a model action runs as a job too, and `endpointgen
    test` submits a job route's example, waits for the job, and checks what the route
    would have answered (its result, or its error's status)."""
    from endpointgen.local import contract

    (tmp_path / "handlers.py").write_text(HANDLERS)
    spec = {
        "name": "job-examples",
        "model": {"id": str(tiny_gpt2), "task": "text-generation"},
        "auth": {"mode": "api_key"},
        "errors": {"ValueError": {"status": 422, "message": "the input could not be used"}},
        "routes": [
            {
                "path": "/generate",
                "method": "POST",
                "action": "generate",
                "job": True,
                "examples": [
                    {
                        "request": {"json": {"prompt": "hello", "max_tokens": 3}},
                        "values": {"tokens_generated": 3, "finish_reason": "length"},
                    }
                ],
            },
            {
                "path": "/broken",
                "method": "POST",
                "action": "handler",
                "handler": "handlers.py:broken",
                "request": {"how": {"type": "str"}},
                "job": {"ttl": 60},
                "examples": [
                    {"request": {"json": {"how": "mapped"}}, "status": 422},
                    {"name": "wrong on purpose", "request": {"json": {"how": "mapped"}}},
                ],
            },
        ],
    }
    said: list[str] = []
    monkeypatch.setenv("API_KEYS", KEY)
    outcomes = contract.run(write_spec(tmp_path, spec), environ={"API_KEYS": KEY}, say=said.append)
    assert [bool(o.problems) for o in outcomes] == [False, False, True], said
    assert outcomes[0].body["tokens_generated"] == 3
    assert "status: expected 200, got 422" in "\n".join(said)


def test_plan_marks_job_routes(tmp_path: Path) -> None:
    """docs/spec.md, Jobs (`job`): `endpointgen plan` and the GitOps views say which routes
    are jobs, and how long their results are kept."""
    from endpointgen.compiler.plan import make_plan
    from endpointgen.gitops import appview

    _, spec = pipeline.load_spec(SPECS / "jobs.yaml", None)
    routes = make_plan(spec, SPECS / "jobs.yaml", tmp_path).routes
    assert appview.route_text(routes[0]) == (
        "generate, auth api_key, job (results kept 86400s), max_tokens 4096"
    )
    assert appview.route_attrs(routes[1])["job"] == "yes, results kept 3600s"
    assert "job" not in appview.route_attrs(routes[2])


def test_a_request_over_a_routes_ceiling_is_refused_at_submit(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs: a submit runs the route's own checks up to where the model or
    the handler would start, so a request over `max_tokens` or `max_chars` is the route's
    422 at once, and no job is made; a valid one is a job, and its handler does not run
    at submit (the hundred-submissions test counts each handler's runs)."""
    from fastapi.testclient import TestClient

    from endpointgen.local.serve import load_app

    folder = tmp_path / "specs"
    shutil.copytree(SPECS, folder, ignore=shutil.ignore_patterns("models", "__pycache__"))
    spec = yaml.safe_load((SPECS / "jobs.yaml").read_text())
    spec["model"]["id"] = str(tiny_gpt2)
    spec["routes"][0]["max_chars"] = 50
    monkeypatch.setenv("API_KEYS", KEY)
    web = load_app(build_and_import(write_spec(folder, spec), tmp_path / "build"), say=print)
    with TestClient(web, headers={"X-API-Key": KEY}) as http_client:
        for body, field in (
            ({"prompt": "Hello", "max_tokens": 5000}, "max_tokens"),
            ({"prompt": "x" * 51, "max_tokens": 4}, "prompt"),
        ):
            refused = http_client.post("/generate", json=body)
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"][0]["loc"] == ["body", field]
        assert web.state.jobs.backend.records == {}
        accepted = http_client.post("/generate", json={"prompt": "Hello", "max_tokens": 4})
        assert accepted.status_code == 202
        done = poll_until_done(http_client, accepted.headers["location"])
        assert done["status"] == "succeeded" and done["result"]["tokens_generated"] <= 4


# --- Hardening, round 3: attacks on job routes (docs/security.md) ---

BLOCKING = '''
import os, pathlib, threading, time

_lock = threading.Lock()
_running = [0]


def blocking(data):
    """A plain function, so it runs in a worker thread, which nothing can stop: sleeps
    `seconds`, leaving `<tag>.start` and `<tag>.end`, and in `blocking-peak` the most
    that ran at once."""
    marks = pathlib.Path(os.environ["JOB_MARKS"])
    (marks / f"{data['tag']}.start").write_text("")
    with _lock:
        _running[0] += 1
        peak = marks / "blocking-peak"
        before = int(peak.read_text()) if peak.exists() else 0
        peak.write_text(str(max(before, _running[0])))
    try:
        time.sleep(data["seconds"])
    finally:
        with _lock:
            _running[0] -= 1
        (marks / f"{data['tag']}.end").write_text("")
    return {"tag": data["tag"]}
'''


def hardened_spec(hosts: list[str], private: bool = True) -> dict[str, Any]:
    """Two job routes, `/slow` (async) and `/blocking` (a plain function), two at a time."""
    body = {"tag": {"type": "str", "max_length": 200}, "seconds": {"type": "float"}}
    route = {"method": "POST", "action": "handler", "request": body, "job": True}
    return {
        "name": "jobs-hardened",
        "auth": {"mode": "api_key"},
        "jobs": {"concurrency": 2, "callbacks": {"hosts": hosts, "private": private}},
        "routes": [
            {**route, "path": "/slow", "handler": "handlers.py:slow"},
            {**route, "path": "/blocking", "handler": "handlers.py:blocking"},
            {"path": "/health", "action": "health"},
        ],
    }


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    """`endpointgen serve` of `hardened_spec`, calling back 127.0.0.1."""
    folder = tmp_path_factory.mktemp("hardened")
    (folder / "handlers.py").write_text(HANDLERS + BLOCKING)
    marks = folder / "marks"
    marks.mkdir()
    env = {"API_KEYS": KEY, "JOB_MARKS": str(marks), "JOB_CALLBACK_SECRET": SECRET}
    server = Server(write_spec(folder, hardened_spec(["127.0.0.1"])), env=env)
    try:
        server.wait_ready()
        yield server, marks
    finally:
        server.stop()
    assert "Traceback" not in server.output


class InThread:
    """A built module's app served by uvicorn in a thread of this process, over real
    HTTP: so a test can set what the spec cannot (the queue's bounds) and see the same
    `socket` module as the app."""

    def __init__(self, web: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # asyncio's loop, not uvloop's: its name lookups go through `socket.getaddrinfo`
        config = uvicorn.Config(
            web, host="127.0.0.1", port=self.port, log_level="warning", loop="asyncio"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> InThread:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def in_thread_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hosts: list[str], private: bool = True
) -> Any:
    """`hardened_spec`'s app, built and made in this process."""
    (tmp_path / "handlers.py").write_text(HANDLERS + BLOCKING)
    (tmp_path / "marks").mkdir()
    monkeypatch.setenv("API_KEYS", KEY)
    monkeypatch.setenv("JOB_MARKS", str(tmp_path / "marks"))
    monkeypatch.setenv("JOB_CALLBACK_SECRET", SECRET)
    spec = hardened_spec(hosts, private)
    return build_and_import(write_spec(tmp_path, spec), tmp_path / "out").create_app()


class Answering:
    """A receiver on `host:port` that keeps each POST's headers and body, then answers
    200 with `size` bytes (in 64 KiB writes), noting how many it sent before the client
    hung up."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, size: int = 0) -> None:
        self.received: list[dict[str, str]] = []
        self.sent = 0
        self.hung_up = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                owner.received.append(dict(self.headers.items()))
                self.send_response(200)
                self.send_header("Content-Length", str(size))
                self.end_headers()
                chunk = b"x" * 65_536
                try:
                    while owner.sent < size:
                        self.wfile.write(chunk)
                        owner.sent += len(chunk)
                    self.wfile.flush()
                except OSError:
                    owner.hung_up.set()
                    self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.port = port or free_port()
        self.server = http.server.ThreadingHTTPServer((host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_malformed_prefer_wait_is_ignored_and_the_job_id_returned(
    hardened: tuple[Server, Path],
) -> None:
    """Hardening 27.1: `Prefer: wait=²` (a digit to `str.isdigit`, not to `int`) or a
    5000-digit wait was a 500 after the job was queued, so it ran and its id was never
    told. A malformed preference is ignored (RFC 7240): the plain 202, and the job runs."""
    server, _ = hardened
    with client(server) as c:
        for prefer in (b"wait=\xb2", b"wait=" + b"9" * 5000, b"wait=\xd9\xa3"):
            answer = c.post(
                "/slow", json={"tag": "prefer", "seconds": 0}, headers={b"Prefer": prefer}
            )
            assert answer.status_code == 202, (prefer[:12], answer.text)
            assert "preference-applied" not in answer.headers
            assert poll_until_done(c, answer.headers["location"])["status"] == "succeeded"
        waited = c.post("/slow", json={"tag": "prefer", "seconds": 0}, headers={"Prefer": "wait=5"})
        assert waited.status_code == 200 and waited.headers["preference-applied"] == "wait=5"


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/",
        "http://127.0.0.1\uff03@evil.example.org/",
        "http://[fe80::1%25eth0]/",
        "http://127.0.0.1:70000/",
        "http://127.0.0.1:99999999999999999999/",
    ],
)
@pytest.mark.slow
def test_a_callback_url_that_cannot_be_parsed_is_a_422(
    hardened: tuple[Server, Path], url: str
) -> None:
    """Hardening 27.2: an open bracket, a fullwidth `#` before `@` (NFKC makes it `#`), a
    zone id or a port over 65535 raised out of the URL check, a 500; each is the usual
    422 on `callback_url`, and no job is made."""
    server, _ = hardened
    with client(server) as c:
        answer = c.post(
            "/slow", params={"callback_url": url}, json={"tag": "bad-url", "seconds": 0}
        )
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["query", "callback_url"]
    assert problem["msg"] == "callback_url is not a valid URL"
    assert "Traceback" not in answer.text


@pytest.mark.slow
def test_a_cancelled_thread_job_keeps_its_slot_until_it_returns(
    hardened: tuple[Server, Path],
) -> None:
    """Hardening 27.3: a plain-function handler runs in a worker thread, which a cancel
    cannot stop; cancelling freed its slot at once, so submitting and cancelling in a
    loop ran any number of threads past `jobs.concurrency` (2 here). The job says
    `cancelled` at once, and its slot is free only when its thread returns."""
    server, marks = hardened
    tags = [f"thread-{n}" for n in range(10)]
    with client(server) as c:
        for tag in tags:
            url = c.post("/blocking", json={"tag": tag, "seconds": 2}).headers["location"]
            deadline = time.monotonic() + 0.3  # let it start, where a slot is free
            while not (marks / f"{tag}.start").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            began = time.monotonic()
            cancelled = c.delete(url)
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            assert time.monotonic() - began < 1  # not held until the thread returns
            assert c.get(url).json()["status"] == "cancelled"
        started = [tag for tag in tags if (marks / f"{tag}.start").exists()]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            (marks / f"{tag}.end").exists() for tag in started
        ):
            time.sleep(0.05)
        assert int((marks / "blocking-peak").read_text()) <= 2, started
        # The slots are free again once the threads have returned.
        after = c.post("/blocking", json={"tag": "after", "seconds": 0})
        assert poll_until_done(c, after.headers["location"])["status"] == "succeeded"


@pytest.mark.slow
def test_the_pending_queue_is_bounded_by_count_and_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hardening 27.4: pending jobs were unbounded (800 pending 1 MB submissions took the
    server from 499 to 1,252 MB). At most `queue` jobs, whose values come to at most
    `queue_bytes` as JSON, wait for a slot; past either a submit is a 503 with
    `Retry-After` and the error body, and nothing is queued."""
    web = in_thread_app(tmp_path, monkeypatch, ["127.0.0.1"])
    queue = web.state.jobs
    assert (queue.queue, queue.queue_bytes) == (256, 256 * 1024 * 1024)  # the defaults
    queue.concurrency, queue.queue, queue.queue_bytes = 1, 2, 800
    with InThread(web) as served_app, client(served_app) as c:  # type: ignore[arg-type]

        def submit(tag: str) -> httpx.Response:
            return c.post("/slow", json={"tag": tag, "seconds": 5})

        running = submit("running")
        while c.get(running.headers["location"]).json()["status"] != "running":
            time.sleep(0.02)
        waiting = [submit("one"), submit("two")]
        assert [w.status_code for w in waiting] == [202, 202]
        refused = submit("three")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"] == "too many jobs are waiting; try again later"
        assert len(queue.backend.records) == 3  # the refused one was never queued
        assert c.delete(waiting[1].headers["location"]).json()["status"] == "cancelled"
        assert submit("x" * 200).status_code == 202  # 233 bytes as JSON
        assert submit("y" * 200).status_code == 503  # two wait again
        assert c.delete(waiting[0].headers["location"]).status_code == 200
        queue.backend.queue = 10
        assert submit("z" * 200).status_code == 202  # 466 bytes wait now
        assert submit("w" * 200).status_code == 202  # 699
        over = submit("v" * 200)  # and its own 233: over 800
        assert over.status_code == 503 and over.json()["error"].startswith("too many jobs")
        for record in list(queue.backend.records.values()):
            c.delete(f"/slow/jobs/{record.id}")


@pytest.mark.slow
def test_the_spec_sets_how_many_jobs_may_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Jobs (`jobs.queue`, `jobs.queue_mib`): the spec's bounds reach the
    app; past them a submit is the 503, over real HTTP."""
    (tmp_path / "handlers.py").write_text(HANDLERS + BLOCKING)
    (tmp_path / "marks").mkdir()
    monkeypatch.setenv("API_KEYS", KEY)
    monkeypatch.setenv("JOB_MARKS", str(tmp_path / "marks"))
    monkeypatch.setenv("JOB_CALLBACK_SECRET", SECRET)
    spec = hardened_spec(["127.0.0.1"], True)
    spec["jobs"] |= {"concurrency": 1, "queue": 1, "queue_mib": 3}
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    assert "queue_bytes=3 * 1024 * 1024," in Path(module.__file__).read_text()
    web = module.create_app()
    assert (web.state.jobs.queue, web.state.jobs.queue_bytes) == (1, 3 * 1024 * 1024)
    with InThread(web) as served_app, client(served_app) as c:  # type: ignore[arg-type]
        running = c.post("/slow", json={"tag": "running", "seconds": 5})
        while c.get(running.headers["location"]).json()["status"] != "running":
            time.sleep(0.02)
        waiting = c.post("/slow", json={"tag": "waiting", "seconds": 0})
        refused = c.post("/slow", json={"tag": "refused", "seconds": 0})
        assert (waiting.status_code, refused.status_code) == (202, 503)
        assert refused.headers["retry-after"] == "5"
        for answer in (running, waiting):
            c.delete(answer.headers["location"])


@pytest.mark.slow
def test_a_job_is_only_served_under_its_own_route(hardened: tuple[Server, Path]) -> None:
    """Hardening 27.5: a job submitted to /slow was readable and cancellable at
    /blocking/jobs/<id>; another route's job is as unknown as none (404)."""
    server, _ = hardened
    with client(server) as c:
        job = c.post("/slow", json={"tag": "own-route", "seconds": 1}).json()["id"]
        assert c.get(f"/blocking/jobs/{job}").status_code == 404
        assert c.delete(f"/blocking/jobs/{job}").json()["error"] == "no such job"
        assert c.get(f"/slow/jobs/{job}").json()["status"] in ("pending", "running")
        assert poll_until_done(c, f"/slow/jobs/{job}")["status"] == "succeeded"


@pytest.mark.slow
def test_a_callback_reads_at_most_a_little_of_the_receivers_answer(
    hardened: tuple[Server, Path],
) -> None:
    """Hardening 27.5: a callback read the receiver's whole answer, however large; it
    reads at most 64 KiB of it and hangs up (a 2xx status is all that counts)."""
    server, _ = hardened
    receiver = Answering(size=256 * 1024 * 1024)
    try:
        with client(server) as c:
            hook = f"http://127.0.0.1:{receiver.port}/done"
            submitted = c.post(
                "/slow", params={"callback_url": hook}, json={"tag": "big-answer", "seconds": 0}
            )
            assert submitted.status_code == 202
            assert receiver.hung_up.wait(20), f"{receiver.sent} bytes read by the app"
    finally:
        receiver.close()
    assert receiver.sent < 32 * 1024 * 1024
    assert len(receiver.received) == 1  # it answered 200: not tried again


@pytest.mark.parametrize(
    "host", ["64:ff9b::7f00:1", "64:ff9b::a00:1", "::7f00:1", "::a00:1", "::ffff:7f00:1"]
)
@pytest.mark.slow
def test_nat64_and_ipv4_compatible_callback_addresses_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """Hardening 27.5: `64:ff9b::/96` (NAT64) and `::a.b.c.d` (IPv4-compatible) reach an
    IPv4 address, 127.0.0.1 or 10.0.0.1 here, but passed as global; a callback to one is
    refused as a private address unless the spec allows private ones."""
    web = in_thread_app(tmp_path, monkeypatch, [host], private=False)
    with InThread(web) as served_app, client(served_app) as c:  # type: ignore[arg-type]
        answer = c.post(
            "/slow",
            params={"callback_url": f"http://[{host}]:9/done"},
            json={"tag": "nat64", "seconds": 0},
        )
    assert answer.status_code == 422, answer.text
    (problem,) = answer.json()["detail"]
    assert problem["loc"] == ["query", "callback_url"]
    assert problem["msg"] == f"callback_url's host {host} is a private address"


@pytest.mark.slow
def test_a_callback_connects_to_the_address_that_was_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hardening 27.5 (DNS rebinding): the check resolved the callback's host, then httpx
    resolved it again to connect, so a name answering differently the second time sent
    the callback elsewhere. It connects to the address the check found (here the name
    checks as 127.0.0.1, then resolves to 127.0.0.2), with the name in `Host`."""
    import socket

    good = Answering("127.0.0.1")
    elsewhere = Answering("127.0.0.2", good.port)
    real = socket.getaddrinfo

    def rebound(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host  # anyio passes bytes
        return real("127.0.0.2" if name == "rebind.test" else host, *args, **kwargs)

    checked = {"rebind.test": ["127.0.0.1"]}
    monkeypatch.setattr(jobs.callbacks, "addresses", lambda host, port: checked.get(host, []))
    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    web = in_thread_app(tmp_path, monkeypatch, ["rebind.test"])
    try:
        with InThread(web) as served_app, client(served_app) as c:  # type: ignore[arg-type]
            hook = f"http://rebind.test:{good.port}/done"
            submitted = c.post(
                "/slow", params={"callback_url": hook}, json={"tag": "pinned", "seconds": 0}
            )
            assert submitted.status_code == 202, submitted.text
            deadline = time.monotonic() + 10
            while not (good.received or elsewhere.received) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        good.close()
        elsewhere.close()
    assert elsewhere.received == []
    (headers,) = good.received
    assert headers["Host"] == f"rebind.test:{good.port}"
