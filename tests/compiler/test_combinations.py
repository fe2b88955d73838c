"""Every spec that validates gives an app that starts.

Hypothesis draws feature combinations: no model, one model of each task (with and without
a custom loader, in one container or behind a web tier), several models; every route
action; every auth mode; every rate-limit storage and key; CORS; batching; environments.
For each draw the spec is validated, then either refused with positioned one-line
problems, or built, and the module:
- has no undefined or unused names (ruff's F rules, over all the draws at once), and is
  as `ruff format` writes it;
- imports with the real `modal` SDK;
- makes its FastAPI app, whose /openapi.json documents every route the spec names.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import import_file
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app

DRAWS = int(__import__("os").environ.get("COMBO_DRAWS", "500"))
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
TASKS = ["text-generation", "text-classification", "embeddings", "image-classification"]
MODEL_ROUTES = {
    "text-generation": ["generate", "stream", "openai"],
    "text-classification": ["classify"],
    "embeddings": ["embed", "openai"],
    "image-classification": ["image-upload"],
}
PLAIN_ROUTES = [
    *("respond", "respond-body", "handler", "csv-upload", "handler-upload", "file", "webhook"),
]
HANDLERS = """\
def run(data, model=None):
    return {"got": sorted(data)}


def take(data, model=None):
    return {"bytes": len(data["content"])}
"""
LOADER = "def load(path):\n    return {'path': path}\n"


def route(kind: str, i: int, model: str | None, public: bool) -> dict[str, Any]:
    """One route of `kind`, at a path of its own."""
    path = f"/r{i}"
    out: dict[str, Any]
    if kind == "respond":
        out = {"path": path + "/{item_id}", "action": "respond", "response": {"id": "{item_id}"}}
        out["params"] = {"item_id": {"type": "int", "min": 1}, "q": {"type": "str", "default": "x"}}
    elif kind == "respond-body":
        out = {"path": path, "method": "POST", "action": "respond", "status": 201}
        out |= {"response": {"name": "{name}"}, "request": {"name": "str", "n": {"type": "int"}}}
    elif kind == "handler":
        out = {"path": path, "method": "POST", "action": "handler", "handler": "h.py:run"}
        out["request"] = {"texts": {"type": "list[str]", "max_items": 3}, "from": "str"}
    elif kind == "csv-upload":
        out = {"path": path, "method": "POST", "action": "upload", "processor": "csv"}
    elif kind == "handler-upload":
        out = {"path": path, "method": "POST", "action": "upload", "processor": "handler"}
        out["handler"] = "h.py:run"
    elif kind == "file":
        out = {"path": path + "/{name:path}", "action": "file", "folder": "files"}
    elif kind == "webhook":
        out = {"path": path, "method": "POST", "action": "webhook", "provider": "github"}
        out |= {"secret": "hook-secret", "env": "HOOK_SECRET"}
    elif kind in ("generate", "stream"):
        out = {"path": path, "method": "POST", "action": "generate", "stream": kind == "stream"}
    elif kind == "classify":
        out = {"path": path, "method": "POST", "action": "classify"}
    elif kind == "embed":
        out = {"path": path, "method": "POST", "action": "embed", "max_items": 16}
    elif kind == "openai":
        out = {"path": f"/v{i}", "action": "openai"}
    else:  # image-upload
        out = {"path": path, "method": "POST", "action": "upload"}
        out["processor"] = "image-classification"
    runs_model = kind not in PLAIN_ROUTES
    if model is not None and (runs_model or kind == "handler"):
        out["model"] = model
    if runs_model and public:
        out["public"] = True
    return out


def opened(route: dict[str, Any], auth: str) -> dict[str, Any]:
    """A `public: true` route of an app with auth opts out of it (`public` alone does not)."""
    return {**route, "auth": "none"} if route.get("public") and auth != "none" else route


@st.composite
def specs(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    spec: dict[str, Any] = {"name": "combo", "description": "a drawn combination"}
    shape = draw(st.sampled_from(["none", "single", "multi"]))
    auth = draw(st.sampled_from(["none", "api_key", "bearer", "jwt", "proxy"]))
    if auth == "proxy":  # Modal checks proxy tokens itself: no secret to read
        spec["auth"] = {"mode": auth}
    elif auth != "none":
        spec["auth"] = {"mode": auth, "secret": "combo-auth"}
    public = auth == "none" or (auth != "proxy" and draw(st.booleans()))
    kinds = draw(st.lists(st.sampled_from(PLAIN_ROUTES), max_size=3))
    models: list[str | None] = [None] * len(kinds)
    if shape == "single":
        task = draw(st.sampled_from(TASKS))
        spec["model"] = {"id": "org/model", "task": task}
        if draw(st.booleans()):
            spec["model"]["loader"] = "load.py:load"
        if draw(st.booleans()) and task != "text-generation":
            spec["batching"] = {"max_batch_size": 8, "wait_ms": 5}
        spec["gpu"] = draw(st.sampled_from([None, "T4", "h100:2", ["L40S", "A100"]]))
        spec["shape"] = draw(st.sampled_from(["single", "split"]))
        chosen = draw(st.lists(st.sampled_from(MODEL_ROUTES[task]), min_size=1, max_size=2))
        kinds += chosen
        models += [None] * len(chosen)
    elif shape == "multi":
        spec["models"] = {
            "writer": {"id": "gpt2", "task": "text-generation", "gpu": "L4"},
            "embedder": {"id": "org/minilm", "task": "embeddings", "gpu": "T4"},
        }
        if draw(st.booleans()):
            spec["models"]["embedder"]["batching"] = {"max_batch_size": 8, "wait_ms": 5}
        for name, task in (("writer", "text-generation"), ("embedder", "embeddings")):
            chosen = draw(st.lists(st.sampled_from(MODEL_ROUTES[task]), max_size=2))
            kinds += chosen
            models += [name] * len(chosen)
    routes = [
        opened(route(kind, i, m, public), auth)
        for i, (kind, m) in enumerate(zip(kinds, models, strict=True))
    ]
    spec["routes"] = [*routes, {"path": "/health", "action": "health"}]
    if routes and draw(st.booleans()):  # an app-wide limit needs a route besides health
        key = draw(st.sampled_from(["ip", "api_key"]))
        storage = draw(st.sampled_from(["memory", "redis", "modal-dict"]))
        spec["rate_limit"] = {"limit": "5/second", "key": key, "storage": storage}
    if draw(st.booleans()):
        spec["cors"] = {
            "origins": ["https://combo.example.com"],
            "credentials": draw(st.booleans()),
        }
    env = None
    if draw(st.booleans()):
        spec["environments"] = {"prod": {"description": "prod", "scaling": {"max_containers": 2}}}
        env = draw(st.sampled_from([None, "prod"]))
    return spec, env


def openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def documented(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of what the app must document for each route of the spec."""
    out = set()
    for r in spec["routes"]:
        if r["action"] == "openai":
            model = spec["models"][r["model"]] if "model" in r else spec["model"]
            out.add(("get", r["path"] + "/models"))
            if model["task"] == "text-generation":
                out |= {("post", r["path"] + "/completions")}
                out |= {("post", r["path"] + "/chat/completions")}
            else:
                out.add(("post", r["path"] + "/embeddings"))
        else:
            out.add((r.get("method", "GET").lower(), openapi_path(r["path"])))
    return out


class Tally:
    def __init__(self) -> None:
        self.built = 0
        self.refused = 0
        self.sources: list[str] = []


def check(spec: dict[str, Any], env: str | None, tally: Tally) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "h.py").write_text(HANDLERS)
        (folder / "load.py").write_text(LOADER)
        (folder / "files").mkdir()
        (folder / "files" / "a.txt").write_text("a")
        path = folder / "spec.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        problems = pipeline.validate(path)
        if problems:
            for problem in problems:  # refused: positioned, one line each
                line = str(problem)
                assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", line), line
                assert len(line.splitlines()) == 1
            tally.refused += 1
            return
        built = pipeline.build(path, folder / "out", env)
        built.path.parent.mkdir()
        built.path.write_text(built.source, encoding="utf-8")
        module = import_file(built.path)  # the real `modal`: no token, no network
        try:
            app = load_app(module, load=False)
            doc = app.openapi()
        finally:
            sys.modules.pop(module.__name__, None)
        operations = {(m, p) for p, item in doc["paths"].items() for m in item}
        missing = documented(spec) - operations
        assert not missing, f"{missing} not in /openapi.json of\n{built.source}"
        tally.built += 1
        tally.sources.append(built.source)


@pytest.mark.slow
def test_every_spec_that_validates_gives_an_app_that_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_KEYS", "k")
    tally = Tally()

    @settings(
        max_examples=DRAWS,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(specs())
    def draw(drawn: tuple[dict[str, Any], str | None]) -> None:
        check(*drawn, tally)

    draw()
    print(f"{tally.built} built, {tally.refused} refused")
    assert tally.built + tally.refused >= DRAWS
    assert tally.built >= DRAWS // 2, f"only {tally.built} of the draws built"
    if RUFF is None:
        pytest.fail("ruff is a dev dependency: pip install -e '.[dev]'")
    for i, source in enumerate(tally.sources):
        (tmp_path / f"m{i}.py").write_text(source, encoding="utf-8")
    found = subprocess.run(
        [RUFF, "check", "--isolated", "--select", "F", "--no-cache", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert found.returncode == 0, found.stdout
    formatted = subprocess.run(
        [RUFF, "format", "--isolated", "--check", "--no-cache", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_a_loader_behind_handler_and_respond_routes_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once `openapi` and `serve` died on this spec with a NameError: a text-generation
    model from a custom loader, behind only handler and respond routes."""
    from typer.testing import CliRunner

    from endpointgen.cli import app

    (tmp_path / "h.py").write_text(HANDLERS)
    monkeypatch.setenv("API_KEYS", "k")
    (tmp_path / "load.py").write_text(LOADER)
    spec = {
        "name": "loaded",
        "model": {"id": "org/model", "task": "text-generation", "loader": "load.py:load"},
        "auth": {"mode": "bearer", "secret": "loaded-keys"},
        "routes": [
            {"path": "/run", "method": "POST", "action": "handler", "handler": "h.py:run"}
            | {"request": {"a": "int"}},
            {"path": "/hi", "action": "respond", "response": "hi"},
        ],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("API_KEYS", "k")
    result = CliRunner().invoke(app, ["openapi", str(path)])
    assert result.exit_code == 0, result.output
    assert {"/run", "/hi"} <= set(yaml.safe_load(result.stdout)["paths"])
    built = pipeline.build(path, tmp_path / "out")
    built.path.parent.mkdir()
    built.path.write_text(built.source)
    module = import_file(built.path)
    from fastapi.testclient import TestClient

    with TestClient(load_app(module, say=lambda _: None)) as client:
        answer = client.post("/run", headers={"Authorization": "Bearer k"}, json={"a": 1})
    assert answer.status_code == 200 and answer.json() == {"got": ["a"]}


def test_a_loader_behind_an_openai_route_must_return_a_text_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once this spec built, then failed at model load with a NameError. Now a loader may
    serve `openai` routes when its object is a text engine; this one's is not, so the
    load fails with what the object lacks, and the route answers 503 with that reason."""
    monkeypatch.setenv("API_KEYS", "k")
    (tmp_path / "load.py").write_text(LOADER)
    spec = {
        "name": "loaded",
        "model": {"id": "org/model", "task": "text-generation", "loader": "load.py:load"},
        "auth": {"mode": "bearer", "secret": "loaded-keys"},
        "routes": [{"path": "/v1", "action": "openai"}],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    assert pipeline.validate(path) == []
    built = pipeline.build(path, tmp_path / "out")
    built.path.parent.mkdir()
    built.path.write_text(built.source)
    module = import_file(built.path)
    from fastapi.testclient import TestClient

    with TestClient(load_app(module, say=lambda _: None)) as client:
        models = client.get("/v1/models", headers={"Authorization": "Bearer k"})
    assert module.model.status == "failed"
    assert "returned a dict, not a text engine (engines.TextEngine)" in str(module.model.error)
    assert "it lacks start, generate, count" in str(module.model.error)
    assert models.status_code == 503
