"""`endpointgen openapi`: a valid OpenAPI 3.1 document, the same one the served app gives,
and the served apps fuzzed against it with schemathesis."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from conftest import ROOT, SPECS, build_and_import, write_spec
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from openapi_spec_validator.versions.shortcuts import get_spec_version
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.local.serve import load_app

runner = CliRunner()
SPEC_FILES = sorted(SPECS.glob("*.yaml"))
# One key per fuzzed operation and mode, so each gets a rate-limit budget of its own.
KEYS = [f"fuzz-key-{i}" for i in range(16)]
# What the fuzzer holds the apps to: no 500s, and every answer as documented.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
_BODY_CHECKS = (content_type_conformance, response_schema_conformance)
EXAMPLES = 25  # per operation and mode: the whole fuzz stays well under 90 s
# Small local models the tests make or ship, by task; a spec whose task has none is skipped.
MODELS = {
    "text-generation": "tiny_gpt2",
    "embeddings": "minilm",
    "text-classification": "tiny_bert",
    "zero-shot-classification": "tiny_nli",
    "token-classification": "tiny_ner",
    "rerank": "tiny_cross_encoder",
    "image-classification": "tiny_vit",
    "object-detection": "tiny_detector",
    "automatic-speech-recognition": "tiny_asr",
    "text-to-image": "tiny_diffusion",
}
# What a spec says a route answers instead of JSON (its document should say so too).
_NON_JSON_TYPES = {"text", "stream", "sse"}


@dataclass
class Served:
    spec: Path  # a copy of the spec, pointed at a small local model
    app: Any  # the FastAPI app, model loaded, as `endpointgen serve` runs it
    auth: dict[str, str]  # valid credentials, as headers: KEY stands for the key
    non_json: set[tuple[str, str]]  # (METHOD, OpenAPI path) of routes that answer non-JSON
    files: set[tuple[str, str]]  # routes that serve files, and so answer 404

    def key(self, index: int) -> dict[str, str]:
        """The credential headers with the `index`-th key (each key has its own budget)."""
        return {name: value.replace("KEY", KEYS[index]) for name, value in self.auth.items()}


def openapi_path(path: str) -> str:
    """`/download/{name:path}` (Starlette) -> `/download/{name}` (OpenAPI)."""
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _routes(data: dict[str, Any], keep: Any) -> set[tuple[str, str]]:
    return {
        (str(r.get("method", "GET")).upper(), openapi_path(r["path"]))
        for r in data["routes"]
        if keep(r)
    }


def non_json_routes(data: dict[str, Any]) -> set[tuple[str, str]]:
    return _routes(
        data,
        lambda r: (
            r.get("stream") or r.get("response_type") in _NON_JSON_TYPES or r["action"] == "file"
        ),
    )


def file_routes(data: dict[str, Any]) -> set[tuple[str, str]]:
    return _routes(data, lambda r: r["action"] == "file")


@pytest.fixture(scope="module", params=SPEC_FILES, ids=lambda p: p.name)
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The spec served as `endpointgen serve` would, from a copy of specs/ (so handlers and
    files next to it resolve), its model pointed at a small local one."""
    data = yaml.safe_load(request.param.read_text())
    folder = tmp_path_factory.mktemp(request.param.stem) / "specs"
    shutil.copytree(SPECS, folder, ignore=shutil.ignore_patterns("models", "__pycache__"))
    models = [data["model"]] if data.get("model") else list(data.get("models", {}).values())
    for model in models:
        task = model["task"]
        if task not in MODELS:
            pytest.skip(f"no small local {task} model in tests/models.py to serve it with")
        model["id"] = str(request.getfixturevalue(MODELS[task]))
    if any(m["task"] == "text-to-image" for m in models):
        # The fuzzer asks for any size and step count the schema allows; the route's own
        # ceilings keep the valid ones it sends to the smallest images (64x64, 2 steps).
        for route in data["routes"]:
            if route["action"] == "generate":
                route |= {"max_image_pixels": 4096, "max_steps": 2}
    spec = write_spec(folder, data, name=request.param.name)
    auth = data.get("auth", {})
    headers = {}
    if auth.get("mode") == "bearer":
        headers = {"Authorization": "Bearer KEY"}
    elif auth.get("mode") == "api_key":
        headers = {auth.get("header", "X-API-Key"): "KEY"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(auth.get("env") or "API_KEYS", ",".join(KEYS))
        mp.setenv("HF_HUB_OFFLINE", "1")
        module = build_and_import(spec, folder.parent / "build")
        web = load_app(module, say=lambda _: None)
        yield Served(spec, web, headers, non_json_routes(data), file_routes(data))


def _openapi_cli(spec: Path, *args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["openapi", str(spec), *args])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


@pytest.mark.slow
def test_openapi_is_valid_31_and_what_the_served_app_gives(served: Served) -> None:
    doc = _openapi_cli(served.spec)
    validate(doc)
    assert (get_spec_version(doc).major, get_spec_version(doc).minor) == ("3", "1")
    with TestClient(served.app) as client:
        assert client.get("/openapi.json", headers=served.key(-1)).json() == doc
    # The spec as checked in, model and all, gives the same document without loading it.
    original = SPECS / served.spec.name
    assert _openapi_cli(original) == doc


def _responses(doc: dict[str, Any], path: str, method: str = "post") -> dict[str, Any]:
    responses: dict[str, Any] = doc["paths"][path][method]["responses"]
    return responses


def test_gpt2_documents_bearer_auth_errors_and_rate_limit_headers() -> None:
    doc = _openapi_cli(SPECS / "gpt2.yaml")
    assert doc["components"]["securitySchemes"] == {
        "HTTPBearer": {"type": "http", "scheme": "bearer"}
    }
    operation = doc["paths"]["/generate"]["post"]
    assert operation["security"] == [{"HTTPBearer": []}]
    responses = _responses(doc, "/generate")
    assert {"200", "401", "413", "422", "429", "500", "503"} <= set(responses)
    limit_headers = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
    assert limit_headers <= set(responses["200"]["headers"])
    assert limit_headers | {"Retry-After"} <= set(responses["429"]["headers"])
    health = doc["paths"]["/health"]["get"]
    assert "security" not in health and "429" not in health["responses"]


def test_minilm_documents_its_api_key_header() -> None:
    doc = _openapi_cli(SPECS / "minilm.yaml")
    schemes = doc["components"]["securitySchemes"]
    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"} in [
        {k: v for k, v in s.items() if k in ("type", "in", "name")} for s in schemes.values()
    ]
    assert {"401", "413", "422", "429"} <= set(_responses(doc, "/embed"))


def test_openapi_with_an_environment_overlay(tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path,
        """\
        name: app
        description: base
        routes:
          - {path: /health, action: health}
        environments:
          prod: {description: production}
        """,
    )
    assert _openapi_cli(spec)["info"]["description"] == "base"
    assert _openapi_cli(spec, "--env", "prod")["info"]["description"] == "production"
    unknown = runner.invoke(app, ["openapi", str(spec), "--env", "nope"])
    assert unknown.exit_code == 1 and "no environment named 'nope'" in unknown.output


def test_the_description_is_in_the_document_and_on_the_docs_page(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`description`): shown in the OpenAPI document, the one
    `endpointgen openapi` writes and the one the app serves, which `/docs` renders; an
    app without one (the default, `""`) shows none."""
    routes = [{"path": "/health", "action": "health"}]
    described = write_spec(
        tmp_path / "a", {"name": "app", "description": "Answers questions", "routes": routes}
    )
    assert _openapi_cli(described)["info"]["description"] == "Answers questions"
    client = TestClient(build_and_import(described, tmp_path / "a" / "out").create_app())
    assert client.get("/openapi.json").json()["info"]["description"] == "Answers questions"
    page = client.get("/docs")
    assert page.status_code == 200 and "url: '/openapi.json'" in page.text
    plain = write_spec(tmp_path / "b", {"name": "app", "routes": routes})
    assert "description" not in _openapi_cli(plain)["info"]


def test_openapi_of_a_broken_spec_is_one_line_per_problem(tmp_path: Path) -> None:
    bad = write_spec(tmp_path, "name: x\nroutes:\n  - {path: /h, action: helth}\n")
    result = runner.invoke(app, ["openapi", str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3:24: routes[0].action:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_openapi_as_a_real_process_loads_no_model() -> None:
    code = (
        "import sys\nfrom endpointgen.console import main\n"
        "sys.argv = ['endpointgen', 'openapi', 'specs/gpt2.yaml']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["info"]["title"] == "gpt2"
    assert done.stderr.strip().splitlines()[-1] == "[]"


# --- fuzzing ---------------------------------------------------------------------------


def undocumented_statuses(doc: dict[str, Any], files: set[tuple[str, str]]) -> list[str]:
    """Answers the apps give that their documents leave out (reported for the templates):
    422 for a JSON body that cannot be decoded (`json_invalid`, as a malformed one), 400
    for multipart data that cannot be parsed, 404 from a file route for a missing file."""
    missing = []
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "requestBody" in operation and "422" not in operation["responses"]:
                missing.append(f"{method.upper()} {path} 422")
            if "multipart/form-data" in content and "400" not in operation["responses"]:
                missing.append(f"{method.upper()} {path} 400")
            if (method.upper(), path) in files and "404" not in operation["responses"]:
                missing.append(f"{method.upper()} {path} 404")
    return missing


def _with_known_gaps_documented(doc: dict[str, Any], files: set[tuple[str, str]]) -> dict[str, Any]:
    """The document plus what `undocumented_statuses` finds missing, so the fuzzer holds
    the app to everything else; test_routes_document_every_status_they_answer lists them."""
    doc = copy.deepcopy(doc)
    for gap in undocumented_statuses(doc, files):
        method, path, status = gap.split(" ")
        responses = doc["paths"][path][method.lower()]["responses"]
        error = {"content": {"application/json": {"schema": {"type": "object"}}}}
        error = copy.deepcopy(responses.get("500", error))  # the app's error body
        responses[status] = error | {"description": f"Undocumented {status}"}
    return doc


def _fuzz(operation: Any, mode: GenerationMode, headers: dict[str, str], checks: list[Any]) -> None:
    """Hypothesis drives schemathesis' cases for one operation; every answer is checked."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,  # the same cases on every run, in any order
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=checks)

    fuzz()


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors_and_no_undocumented_answers(served: Served) -> None:
    with TestClient(served.app) as client:
        found = client.get("/openapi.json", headers=served.key(-1)).json()
        doc = _with_known_gaps_documented(found, served.files)
    schema = schemathesis.openapi.from_dict(doc)
    schema.app = served.app
    ran: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err would be a broken document
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            headers = served.key(len(ran))
            checks = CHECKS
            if (operation.method.upper(), operation.path) in served.non_json:
                # Documented as JSON for now (see test_non_json_routes_document_their_media_type)
                checks = [c for c in CHECKS if c not in _BODY_CHECKS]
            try:
                _fuzz(operation, mode, headers, checks)
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # an operation with no inputs
                ran.append(f"{operation.label} {mode.value}: nothing to generate")
                continue
            ran.append(f"{operation.label} {mode.value}")
    assert len(ran) == 2 * sum(len(ops) for ops in doc["paths"].values()), ran


def test_non_json_routes_document_their_media_type() -> None:
    """A route that answers text, a stream or Server-Sent Events says so in /openapi.json."""
    wrong = []
    for spec in SPEC_FILES:
        data = yaml.safe_load(spec.read_text())
        routes = non_json_routes(data)
        if not routes:
            continue
        doc = _openapi_cli(spec)
        for method, path in sorted(routes):
            content = _responses(doc, path, method.lower())["200"].get("content", {})
            if not content or set(content) == {"application/json"}:
                wrong.append(f"{spec.name}: {method} {path}")
    assert not wrong, "documented as application/json: " + ", ".join(wrong)


def test_routes_document_every_status_they_answer() -> None:
    wrong = []
    for spec in SPEC_FILES:
        data = yaml.safe_load(spec.read_text())
        gaps = undocumented_statuses(_openapi_cli(spec), file_routes(data))
        wrong += [f"{spec.name}: {gap}" for gap in gaps]
    assert not wrong, "not documented: " + ", ".join(wrong)


def test_a_body_that_is_not_json_is_the_documented_422(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Every response: a body that is not JSON, or not even text, is the 422
    the document lists (`json_invalid`), not an undocumented 400."""
    doc = _openapi_cli(SPECS / "items.yaml")
    responses = _responses(doc, "/items")
    assert "400" not in responses and "422" in responses
    monkeypatch.setenv("API_KEYS", "k")
    module = build_and_import(SPECS / "items.yaml", tmp_path)
    client = TestClient(module.create_app())
    for body in (b"{not json", b"'\x80\xfe"):
        answer = client.post(
            "/items", content=body, headers={"Content-Type": "application/json", "X-API-Key": "k"}
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"][0]["type"] == "json_invalid"
