"""Broken specs, and the exact line each must give: `spec.yaml:LINE:COL: key.path: message`.

The table of broken specs is data: tests/spec/errors/*.yaml, each case a spec as a user
writes it and the lines it must give (tests/spec/errors/README.md). Every case is validated
as `spec.yaml` from inside its folder, so the lines read as a user sees them from
`endpointgen validate spec.yaml`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from conftest import import_file
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError
from endpointgen.spec import Spec
from endpointgen.spec.models import (
    ROUTE_CLASSES,
    Auth,
    Batching,
    Callbacks,
    Cors,
    Example,
    ExampleRequest,
    Job,
    Model,
    NamedModel,
    RateLimit,
    Resources,
    Scaling,
    Signature,
    Task,
    Tracing,
    Vllm,
)
from endpointgen.spec.models import Image as ImageSettings
from endpointgen.spec.models import Jobs as JobsSettings
from endpointgen.spec.models import (
    Metrics as MetricsSettings,
)
from endpointgen.spec.shapes import ErrorMapping, FieldSpec, Param

ROOT = Path(__file__).resolve().parents[2]

# A valid spec; the tests below add to it (from line 11 on) or change one of its lines.
#  1 name / 2 model / 3 id / 4 task / 5 auth / 6 mode / 7 routes / 8 path / 9 method
# 10 action
BASE = """\
name: demo
model:
  id: gpt2
  task: text-generation
auth:
  {mode: bearer, secret: demo-auth}
routes:
  - path: /generate
    method: POST
    action: generate
"""
AUTH = "{mode: bearer, secret: demo-auth}"

GPUS = "T4, L4, A10, L40S, A100, A100-40GB, A100-80GB, H100, H200, B200"
APP_NAME_RULE = (
    "is not a valid app name: use lowercase letters, digits and '-', "
    "starting with a letter, at most 48 characters"
)


def changed(old: str, new: str) -> str:
    assert old in BASE
    return BASE.replace(old, new, 1)


# --- the broken specs of tests/spec/errors/ --------------------------------------------

ERRORS = Path(__file__).parent / "errors"
CASE_KEYS = {"id", "spec", "spec_file", "expect", "slow"}


def load_cases(folder: Path) -> list[Any]:
    """Every case of FOLDER/*.yaml as (the spec's bytes, the lines it must give), with the id
    `FILE/ID` (`gpus/gpu-count-too-high`). A case gives its spec as text (`spec`), or as a file
    under FOLDER/files/ (`spec_file`) for bytes that YAML text cannot hold (README.md there)."""
    cases = []
    ids: set[str] = set()
    used: set[Path] = set()
    for path in sorted(folder.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text(encoding="utf-8")):
            where = f"{path.relative_to(ROOT)}, case {case.get('id')!r}"
            assert {"id", "expect"} <= set(case) <= CASE_KEYS, f"{where}: keys {sorted(case)}"
            assert ("spec" in case) != ("spec_file" in case), f"{where}: spec or spec_file"
            assert case["id"] not in ids, f"{where}: the id is taken"
            ids.add(case["id"])
            expect = case["expect"]
            assert expect and all(isinstance(line, str) for line in expect), where
            if "spec" in case:
                content = case["spec"].encode("utf-8")
            else:
                used.add(folder / case["spec_file"])
                content = (folder / case["spec_file"]).read_bytes()
            marks = [pytest.mark.slow] if case.get("slow") is True else []
            cases.append(pytest.param(content, expect, id=f"{path.stem}/{case['id']}", marks=marks))
    files = folder / "files"
    unused = set(files.iterdir()) - used if files.is_dir() else set()
    assert not unused, f"files no case names: {sorted(unused)}"
    return cases


CASES = load_cases(ERRORS)


def write(folder: Path, content: str | bytes) -> Path:
    path = folder / "spec.yaml"
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def lines_for(path: str | Path) -> list[str]:
    return [str(problem) for problem in pipeline.validate(path)]


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(("content", "expected"), CASES)
def test_broken_spec_gives_exact_lines(
    in_tmp: Path, content: str | bytes, expected: list[str]
) -> None:
    write(in_tmp, content)
    assert lines_for("spec.yaml") == expected


@pytest.mark.parametrize(("content", "expected"), CASES)
def test_build_refuses_what_validate_refuses(
    in_tmp: Path, content: str | bytes, expected: list[str]
) -> None:
    """`build` raises SpecError, never another exception, for the base and each
    environment; the problems `validate` finds are the union of those."""
    path = write(in_tmp, content)
    try:
        envs = list(yaml.safe_load(path.read_bytes()).get("environments") or {})
    except Exception:
        envs = []
    found: set[str] = set()
    for env in [None, *envs]:
        try:
            pipeline.build("spec.yaml", in_tmp / "out", env)
        except SpecError as exc:
            assert exc.problems
            found |= {str(problem) for problem in exc.problems}
    assert sorted(found) == sorted(expected)


def test_base_spec_is_valid(in_tmp: Path) -> None:
    write(in_tmp, BASE)
    assert lines_for("spec.yaml") == []


def test_name_that_shadows_a_module_is_refused(in_tmp: Path) -> None:
    write(in_tmp, changed("name: demo", "name: json"))
    [line] = lines_for("spec.yaml")
    assert line.endswith(
        "name: 'json' would make a module that shadows Python's `json`; choose another name"
    )


@pytest.mark.parametrize(
    "name", ["endpointgen", "redis", "jwt", "huggingface-hub", "rich", "sympy", "grpclib", "yarl"]
)
def test_a_name_that_shadows_what_the_runtime_imports_is_refused(in_tmp: Path, name: str) -> None:
    """In a container the module sits first on sys.path: `endpointgen.py` would hide the
    runtime it imports, `redis.py` the client the rate limits use. The refused names come
    from the image lock: every module the image's packages (`rich`, under fastapi's CLI;
    `sympy`, under torch) and Modal's own client (`grpclib`, `yarl`) make importable."""
    (in_tmp / "spec.yaml").write_text(f"name: {name}\nroutes:\n  - {{path: /h, action: health}}\n")
    problems = [str(p) for p in pipeline.validate("spec.yaml")]
    module = name.replace("-", "_")
    assert problems == [
        f"spec.yaml:1:7: name: '{name}' would make a module that shadows Python's `{module}`; "
        "choose another name"
    ]


def test_name_that_shadows_a_module_names_its_line(in_tmp: Path) -> None:
    write(in_tmp, "# the app\n" + changed("name: demo", "name: json"))
    assert lines_for("spec.yaml") == [
        "spec.yaml:2:7: name: 'json' would make a module that shadows Python's "
        "`json`; choose another name"
    ]


def test_directory_instead_of_a_file(in_tmp: Path) -> None:
    (in_tmp / "specs").mkdir()
    assert lines_for("specs") == ["specs:1:1: is a directory, not a spec file"]


def test_missing_file(in_tmp: Path) -> None:
    assert lines_for("nowhere.yaml") == ["nowhere.yaml:1:1: no such file"]


def test_full_path_is_kept_in_each_line(tmp_path: Path) -> None:
    path = write(tmp_path, "gpus: T4\n" + BASE)
    assert lines_for(path) == [f"{path}:1:1: gpus: unknown key 'gpus'; did you mean 'gpu'?"]


@pytest.mark.parametrize("limit", ["60/minute", " 60 / minutes ", "60/minute\n", "1/day"])
def test_rate_limit_spellings_that_are_valid(in_tmp: Path, limit: str) -> None:
    write(in_tmp, BASE + yaml.safe_dump({"rate_limit": {"limit": limit}}))
    assert lines_for("spec.yaml") == []


def test_yes_and_on_keys_are_names_not_booleans(in_tmp: Path) -> None:
    """YAML 1.1 reads a bare `ON` as true; as a key it is the name the user wrote."""
    write(in_tmp, BASE + "env:\n  ON: '1'\n  NULL: x\n  Yes: y\n")
    assert lines_for("spec.yaml") == []
    _, spec = pipeline.load_spec("spec.yaml")
    assert spec.env == {"ON": "1", "NULL": "x", "Yes": "y"}


def test_model_id_under_an_unknown_home_directory(in_tmp: Path) -> None:
    write(in_tmp, changed("id: gpt2", "id: ~no-such-user-here/model"))
    assert lines_for("spec.yaml") == [
        "spec.yaml:3:7: model.id: '~no-such-user-here/model' starts with "
        "'~no-such-user-here', but this machine has no home directory for that user"
    ]
    with pytest.raises(SpecError):
        pipeline.build("spec.yaml", in_tmp / "out")


# --- all problems at once ------------------------------------------------------------


def test_every_problem_is_reported_at_once_sorted_by_line(in_tmp: Path) -> None:
    # Written in an order unlike pydantic's field order (name, gpu, routes).
    write(
        in_tmp,
        "routes:\n"
        "  - path: /health\n"
        "    methd: GET\n"  # line 3
        "    action: health\n"
        "gpu: l40\n"  # line 5
        "name: Demo\n",  # line 6
    )
    assert lines_for("spec.yaml") == [
        "spec.yaml:3:5: routes[0].methd: unknown key 'methd'; did you mean 'method'?",
        f"spec.yaml:5:6: gpu: unknown GPU 'l40'; did you mean 'L40S'? (known: {GPUS})",
        f"spec.yaml:6:7: name: 'Demo' {APP_NAME_RULE}",
    ]


def test_every_yaml_problem_is_reported_at_once(in_tmp: Path) -> None:
    write(
        in_tmp,
        BASE
        + "description: !!python/name:os.system ''\n"  # line 11
        + "name: again\n"  # line 12
        + "scaling:\n  <<: {}\n",  # line 14
    )
    assert lines_for("spec.yaml") == [
        "spec.yaml:11:14: description: YAML tag !!python/name:os.system is not allowed in a spec",
        "spec.yaml:12:1: name: duplicate key (first given on line 1)",
        "spec.yaml:14:3: scaling: YAML merge keys (<<) are not supported; write the keys out",
    ]


def test_every_check_problem_is_reported_at_once(in_tmp: Path) -> None:
    write(
        in_tmp,
        changed(AUTH, "mode: none")  # line 8: routes[0] has no auth
        + "  - path: /generate\n    method: POST\n    action: generate\n"  # line 11
        + "cors: {origins: ['*'], credentials: true}\n"  # line 14
        + "secrets: [sk-abcdefghijklmnop]\n",  # line 15
    )
    no_auth = (
        "runs the model with no auth; set `auth.mode` for the app, "
        "or mark this route `public: true` to serve it openly"
    )
    assert lines_for("spec.yaml") == [
        f"spec.yaml:8:5: routes[0]: POST /generate {no_auth}",
        f"spec.yaml:11:5: routes[1]: POST /generate {no_auth}",
        "spec.yaml:11:11: routes[1].path: POST /generate is already defined by routes[0]",
        "spec.yaml:14:37: cors.credentials: `credentials: true` with origin '*' lets any "
        "site send your users' credentials; list the origins instead",
        "spec.yaml:15:11: secrets[0]: this looks like a key or token, not the name "
        "of a Modal Secret; store the value in a Modal Secret and put its name here",
    ]


def test_overlay_and_base_problems_together(in_tmp: Path) -> None:
    """docs/spec.md, Top level (`environments`): `validate` checks the base and every overlay."""
    write(
        in_tmp,
        BASE
        + "gpu: l40\n"  # line 11
        + "environments:\n  dev:\n    scaling:\n      max_inputs: 0\n"  # line 15
        + "  prod:\n    gpu: h100:99\n",  # line 17
    )
    assert lines_for("spec.yaml") == [
        f"spec.yaml:11:6: gpu: unknown GPU 'l40'; did you mean 'L40S'? (known: {GPUS})",
        "spec.yaml:15:19: environments.dev.scaling.max_inputs: must be at least 1, not 0",
        "spec.yaml:17:10: environments.prod.gpu: GPU count in 'h100:99' must be a "
        "whole number from 1 to 8",
    ]


def test_overlay_value_over_a_base_value_points_at_the_overlay(in_tmp: Path) -> None:
    write(in_tmp, BASE + "gpu: T4\nenvironments:\n  prod:\n    gpu: l40\n")
    assert lines_for("spec.yaml") == [
        "spec.yaml:14:10: environments.prod.gpu: unknown GPU 'l40'; did you mean "
        f"'L40S'? (known: {GPUS})",
    ]


def test_problem_that_only_an_overlay_causes_is_found(in_tmp: Path) -> None:
    # The route is fine in the base; `prod` turns auth off under it.
    base = changed(AUTH, "mode: bearer") + "secrets: [demo-keys]\n"
    write(in_tmp, base + "environments:\n  prod:\n    auth:\n      mode: none\n")
    assert lines_for("spec.yaml") == [
        "spec.yaml:8:5: routes[0]: POST /generate runs the model with no auth; set "
        "`auth.mode` for the app, or mark this route `public: true` to serve it openly"
        " (with --env prod)"
    ]
    pipeline.build("spec.yaml", in_tmp / "out")  # the base alone builds
    with pytest.raises(SpecError):
        pipeline.build("spec.yaml", in_tmp / "out", "prod")


def test_byte_order_mark_is_allowed(in_tmp: Path) -> None:
    write(in_tmp, "\ufeff" + BASE)
    assert lines_for("spec.yaml") == []


def test_overlay_that_fixes_nothing_repeats_nothing(in_tmp: Path) -> None:
    """A base problem inherited by every overlay is reported once."""
    write(in_tmp, BASE + "gpu: l40\nenvironments:\n  dev: {}\n  prod:\n    gpu: T4\n")
    assert lines_for("spec.yaml") == [
        f"spec.yaml:11:6: gpu: unknown GPU 'l40'; did you mean 'L40S'? (known: {GPUS})",
    ]


# --- the command line ----------------------------------------------------------------


def test_cli_validate_prints_every_line_and_exits_1(in_tmp: Path) -> None:
    (in_tmp / "a").mkdir()
    write(in_tmp / "a", BASE + "gpu: l40\nscaling:\n  max_containers: four\n")
    (in_tmp / "b").mkdir()
    write(in_tmp / "b", b"\x00\x01")
    (in_tmp / "c").mkdir()
    write(in_tmp / "c", BASE + "secrets: &x [*x]\n")
    (in_tmp / "d").mkdir()
    write(in_tmp / "d", BASE + "description: " + "{" * 2000 + "}" * 2000 + "\n")
    result = CliRunner().invoke(
        app,
        [
            "validate",
            "a/spec.yaml",
            "b/spec.yaml",
            "c/spec.yaml",
            "d/spec.yaml",
            "nowhere.yaml",
            ".",
        ],
    )
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.splitlines() == [
        f"a/spec.yaml:11:6: gpu: unknown GPU 'l40'; did you mean 'L40S'? (known: {GPUS})",
        "a/spec.yaml:13:19: scaling.max_containers: expected a whole number, got 'four'",
        "b/spec.yaml:1:1: not a text file (it contains NUL bytes)",
        "c/spec.yaml:11:10: secrets[0]: a YAML alias (*name) here refers to a value "
        "that contains it",
        "d/spec.yaml:1:1: invalid YAML: lists or mappings nested too deeply",
        "nowhere.yaml:1:1: no such file",
        ".:1:1: is a directory, not a spec file",
    ]


@pytest.mark.parametrize(("content", "expected"), CASES)
def test_cli_validate_each_case(in_tmp: Path, content: str | bytes, expected: list[str]) -> None:
    write(in_tmp, content)
    result = CliRunner().invoke(app, ["validate", "spec.yaml"])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    if expected:
        assert result.exit_code == 1
        assert result.output.splitlines() == lines_for("spec.yaml")
    else:
        assert result.exit_code == 0


def test_cli_validate_accepts_the_example() -> None:
    result = CliRunner().invoke(app, ["validate", str(ROOT / "specs" / "gpt2.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("gpt2.yaml: ok")


def test_examples_are_valid() -> None:
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        assert lines_for(path) == [], path


# --- every key of the contract validates ---------------------------------------------

EVERY_KEY_EMBEDDINGS: dict[str, Any] = {
    "version": 1,
    "name": "every-key",
    "description": "Every key of the spec language, in one spec",
    "model": {
        "id": "sentence-transformers/all-MiniLM-L6-v2",
        "task": "embeddings",
        "revision": "main",
        "dtype": "float32",
        "variant": "fp16",
    },
    "gpu": ["l40s", "A100-80GB:2"],
    "shape": "split",
    "region": ["us-east", "eu"],
    "resources": {"cpu": 2.5, "memory": 4096, "timeout": 120, "startup_timeout": 900},
    "scaling": {
        "min_containers": 0,
        "max_containers": 3,
        "buffer_containers": 1,
        "scaledown_window": 300,
        "max_inputs": 16,
        "target_inputs": 4,
    },
    "batching": {"max_batch_size": 32, "wait_ms": 5},
    "secrets": ["extra-secret", "hf-token"],
    "env": {"LOG_LEVEL": "info", "WORKERS": 2, "DEBUG": False},
    "auth": {
        "mode": "api_key",
        "secret": "every-key-auth",
        "header": "X-Key",
        "env": "MY_KEYS",
    },
    "cors": {
        "origins": ["https://app.example.com", "http://localhost:3000"],
        "methods": ["get", "POST"],
        "headers": ["Content-Type", "X-Key"],
        "credentials": True,
        "max_age": 600,
    },
    "rate_limit": {"limit": "100/minute", "key": "api_key", "storage": "memory"},
    "metrics": {"enabled": True, "public": False},
    "tracing": {"enabled": True},
    "image": {"python": "3.12", "system_packages": ["ffmpeg"], "commands": ["echo built"]},
    "docs": "public",
    "routes": [
        {
            "path": "/embed",
            "method": "POST",
            "action": "embed",
            "summary": "Embed some texts",
            "public": False,
            "rate_limit": {"limit": "10/second", "key": "ip"},
            "max_chars": 1000,
            "max_items": 16,
            "max_bytes": 65536,
        },
        {
            "path": "/embed/open",
            "method": "POST",
            "action": "embed",
            "auth": "none",
            "public": True,
            "rate_limit": "none",
        },
        {"path": "/embed/limited", "method": "POST", "action": "embed"},  # the app's limit
        {"path": "/health", "action": "health", "rate_limit": "none"},
    ],
    "environments": {
        "dev": {"gpu": None, "scaling": {"max_containers": 1}},
        "prod": {
            "scaling": {"min_containers": 1},
            "rate_limit": {"limit": "1000/hour"},
        },
    },
}

EVERY_KEY_GENERATION: dict[str, Any] = {
    "name": "every-key-gen",
    "model": {
        "id": "gpt2",
        "task": "text-generation",
        "volume": "weights",
        "path": "gpt2/finetune-1",
        "engine": "vllm",
        "vllm": {
            "max_model_len": 1024,
            "gpu_memory_utilization": 0.85,
            "tensor_parallel_size": 2,
            "quantization": "fp8",
            "enforce_eager": True,
        },
    },
    "gpu": "h100:2",
    "auth": {"mode": "bearer", "secret": "gen-auth"},
    "rate_limit": {"limit": "60/minute", "key": "api_key"},
    "routes": [
        {
            "path": "/generate",
            "method": "post",
            "action": "generate",
            "stream": True,
            "max_tokens": 256,
            "max_chars": 4000,
            "rate_limit": False,  # `rate_limit: off`
        },
        {"path": "/generate/limited", "method": "POST", "action": "generate"},
        {
            "path": "/generate/ws",
            "action": "generate",
            "websocket": {"idle_timeout": 60, "max_lifetime": 120},
        },
    ],
}

# jwt auth, redis and modal-dict storage, a webhook: the keys only they use.
EVERY_KEY_JWT_WEBHOOK: dict[str, Any] = {
    "name": "jwt-webhook",
    "auth": {
        "mode": "jwt",
        "secret": "jwt-key",
        "env": "JWT_PUBLIC_KEY",
        "algorithm": "RS256",
        "audience": "api://mine",
        "issuer": "https://issuer.example.com/",
        "leeway": 10,
    },
    "rate_limit": {
        "limit": "5/second",
        "storage": "redis",
        "url_env": "MY_REDIS",
        "secret": "redis-url",
    },
    "routes": [
        {
            "path": "/hook",
            "method": "POST",
            "action": "webhook",
            "provider": "github",
            "secret": "github-hook",
            "env": "GITHUB_SECRET",
            "rate_limit": {"limit": "100/minute", "storage": "modal-dict"},
        },
        {
            "path": "/hook/generic",
            "method": "POST",
            "action": "webhook",
            "provider": "generic",
            "secret": "generic-hook",
            "env": "GENERIC_SECRET",
            "signature": {
                "header": "X-Signature",
                "algorithm": "sha512",
                "encoding": "base64",
                "prefix": "v1=",
                "timestamp_header": "X-Timestamp",
            },
            "tolerance": 120,
            "examples": [
                {
                    "name": "unsigned is refused",
                    "request": {"json": {"a": 1}, "query": {"q": "1"}, "headers": {"X-Trace": "t"}},
                    "auth": False,
                    "status": 401,
                    "keys": ["error"],
                    "values": {"error": "invalid signature"},
                }
            ],
        },
    ],
}


# Routes without a fixed model action: typed params and bodies, respond, handlers,
# uploads, files, error mapping and a custom model loader. The files it names are
# written next to it by `write_shape_files`.
EVERY_KEY_SHAPES: dict[str, Any] = {
    "name": "every-key-shapes",
    "packages": ["pandas==2.2.3", "scikit-learn>=1.4"],
    "model": {"id": "./weights", "task": "text-classification", "loader": "loader.py:load"},
    "auth": {"mode": "api_key", "secret": "shapes-keys"},
    "errors": {
        "ValueError": {"status": 400, "message": "the input could not be processed"},
        "LookupError": {"status": 404, "message": "no such thing"},
    },
    "routes": [
        {
            "path": "/items/{item_id}",
            "method": "PUT",
            "action": "respond",
            "params": {
                "item_id": {"type": "int", "min": 1, "max": 1_000_000, "description": "the item"},
                "verbose": {"in": "query", "type": "bool", "default": False},
                "x_trace": {
                    "in": "header",
                    "type": "str",
                    "default": "none",
                    "min_length": 1,
                    "max_length": 64,
                },
                "unit": {"type": "str", "enum": ["kg", "lb"], "default": "kg"},
                "scale": "float",
            },
            "request": {
                "name": {"type": "str", "min_length": 1, "max_length": 200},
                "price": {"type": "float", "min": 0, "max": 1e6, "description": "in euros"},
                "grade": {"type": "int", "enum": [1, 2, 3], "default": 1},
                "tags": {"type": "list[str]", "default": [], "min_items": 0, "max_items": 10},
                "sizes": "list[int]",
                "weights": {"type": "list[float]", "default": []},
                "meta": {"type": "object", "default": {}},
                "extra": {"type": "any", "default": None},
            },
            "response": {"id": "{item_id}", "name": "{name}", "unit": "{unit}"},
            "response_type": "json",
            "status": 202,
            "examples": [
                {
                    "name": "update",
                    "request": {
                        "path": "/items/7",
                        "json": {"name": "lamp", "price": 3, "sizes": [1]},
                        "query": {"scale": "1.5"},
                    },
                    "status": 202,
                    "values": {"id": 7},
                }
            ],
        },
        {
            "path": "/events",
            "method": "POST",
            "action": "handler",
            "handler": "handlers/run.py:events",
            "response_type": "sse",
            "request": {"text": "str"},
        },
        {
            "path": "/upload/csv",
            "method": "POST",
            "action": "upload",
            "processor": "csv",
            "content_types": ["text/csv"],
            "max_rows": 1000,
            "max_bytes": 1_048_576,
        },
        {
            "path": "/upload/doc",
            "method": "PUT",
            "action": "upload",
            "processor": "handler",
            "handler": "handlers/run.py:document",
            "content_types": ["application/pdf"],
            "params": {"lang": {"type": "str", "default": "en"}},
        },
        {
            "path": "/files/{name:path}",
            "action": "file",
            "folder": "files",
            "download_name": "report.txt",
            "media_type": "text/plain",
        },
        {"path": "/volume/{name:path}", "action": "file", "volume": "reports"},
        {"path": "/health", "action": "health"},
    ],
}


def write_shape_files(folder: Path) -> None:
    """The loader, handlers, model folder and served folder EVERY_KEY_SHAPES names."""
    (folder / "handlers").mkdir(exist_ok=True)
    (folder / "handlers" / "run.py").write_text(
        "def events(data, model):\n    yield data['text']\n\n\n"
        "def document(data):\n    return {'size': len(data['content'])}\n"
    )
    (folder / "handlers" / "work.py").write_text("def work(data, model):\n    return data\n")
    (folder / "loader.py").write_text("def load(where):\n    return where\n")
    (folder / "weights").mkdir(exist_ok=True)
    (folder / "files").mkdir(exist_ok=True)
    (folder / "files" / "report.txt").write_text("report")


def _keys_used(spec: dict[str, Any]) -> dict[str, set[str]]:
    used: dict[str, set[str]] = {"": set(spec)}
    for section in (
        "model",
        "resources",
        "scaling",
        "batching",
        "auth",
        "cors",
        "metrics",
        "tracing",
        "image",
        "jobs",
    ):
        if isinstance(spec.get(section), dict):
            used.setdefault(section, set()).update(spec[section])
    engines = [spec.get("model") or {}, *spec.get("models", {}).values()]
    used["vllm"] = {k for model in engines for k in model.get("vllm", {})}
    limits = [spec.get("rate_limit")] + [r.get("rate_limit") for r in spec["routes"]]
    used["rate_limit"] = {k for limit in limits if isinstance(limit, dict) for k in limit}
    used["routes"] = {k for route in spec["routes"] for k in route}
    return used


EVERY_KEY_MULTI: dict[str, Any] = {
    "name": "every-key-multi",
    "models": {
        "writer": {
            "id": "gpt2",
            "task": "text-generation",
            "revision": "main",
            "dtype": "float16",
            "variant": "fp16",
            "gpu": "l4",
            "resources": {"cpu": 2, "memory": 8192, "timeout": 300},
            "scaling": {"min_containers": 0, "max_containers": 2, "max_inputs": 4},
            "snapshot": "memory",
        },
        "tagger": {
            "id": "./weights",
            "task": "text-classification",
            "loader": "loader.py:load",
            "gpu": ["t4", "a10"],
            "batching": {"max_batch_size": 8, "wait_ms": 2},
        },
        "eyes": {"id": "google/vit-base-patch16-224", "task": "image-classification"},
        "painter": {"id": "stabilityai/sd-turbo", "task": "text-to-image"},
    },
    "auth": {"mode": "bearer", "secret": "demo-keys"},
    "routes": [
        {"path": "/generate", "method": "POST", "action": "generate", "model": "writer"},
        {
            "path": "/see",
            "method": "POST",
            "action": "upload",
            "processor": "image-classification",
            "max_upload_pixels": 1_000_000,
            "model": "eyes",
        },
        {
            "path": "/draw",
            "method": "POST",
            "action": "generate",
            "model": "painter",
            "max_image_pixels": 512 * 512,
            "max_steps": 4,
        },
        {
            "path": "/tag",
            "method": "POST",
            "action": "handler",
            "handler": "handlers/run.py:document",
            "model": "tagger",
        },
    ],
}
# Several models on vLLM: the engine keys of a named model.
EVERY_KEY_VLLM_MODELS: dict[str, Any] = {
    "name": "every-key-vllm-models",
    "models": {
        "chat": {
            "id": "Qwen/Qwen2.5-7B-Instruct",
            "task": "text-generation",
            "gpu": "h100",
            "volume": "chat-weights",
            "path": "qwen",
            "engine": "vllm",
            "vllm": {"max_model_len": 8192},
        },
    },
    "auth": {"mode": "bearer", "secret": "demo-keys"},
    "routes": [{"path": "/v1", "action": "openai", "model": "chat"}],
}
# Job routes: a model action and a handler as jobs, with signed callbacks.
EVERY_KEY_JOBS: dict[str, Any] = {
    "name": "every-key-jobs",
    "model": {"id": "gpt2", "task": "text-generation"},
    "snapshot": "memory",
    "auth": {"mode": "api_key", "secret": "demo-keys"},
    "jobs": {
        "timeout": 7200,
        "concurrency": 2,
        "queue": 64,
        "queue_mib": 16,
        "callbacks": {
            "hosts": ["hooks.example.com"],
            "secret": "callback-keys",
            "env": "CALLBACK_KEY",
            "private": False,
        },
    },
    "routes": [
        {"path": "/generate", "method": "POST", "action": "generate", "job": {"ttl": 600}},
        {
            "path": "/work",
            "method": "POST",
            "action": "handler",
            "handler": "handlers/work.py:work",
            "job": True,
        },
    ],
}
EVERY_KEY_SPECS = (
    EVERY_KEY_JOBS,
    EVERY_KEY_EMBEDDINGS,
    EVERY_KEY_GENERATION,
    EVERY_KEY_JWT_WEBHOOK,
    EVERY_KEY_SHAPES,
    EVERY_KEY_MULTI,
    EVERY_KEY_VLLM_MODELS,
)


TASKS = set(get_args(Task))


def _names(model: Any) -> set[str]:
    """A model's keys as a spec spells them (`in` for `where`, `json` for `json_body`)."""
    return {field.alias or name for name, field in model.model_fields.items()}


def test_every_key_of_the_contract_is_covered_here() -> None:
    """The four specs above use every key the models define; a new key fails this."""
    used: dict[str, set[str]] = {}
    for spec in EVERY_KEY_SPECS:
        for section, keys in _keys_used(spec).items():
            used.setdefault(section, set()).update(keys)
    models = {
        "": Spec,
        "model": Model,
        "resources": Resources,
        "scaling": Scaling,
        "batching": Batching,
        "vllm": Vllm,
        "auth": Auth,
        "cors": Cors,
        "rate_limit": RateLimit,
        "metrics": MetricsSettings,
        "tracing": Tracing,
        "image": ImageSettings,
        "jobs": JobsSettings,
    }
    for section, model in models.items():
        assert used[section] == set(model.model_fields), section
    # Every action's keys; `max_pixels`, an old name, is in test_schema.py.
    route_keys = {key for route in ROUTE_CLASSES.values() for key in route.model_fields}
    assert used["routes"] == route_keys - {"max_pixels"}
    assert set(EVERY_KEY_JOBS["jobs"]["callbacks"]) == set(Callbacks.model_fields)
    assert set(EVERY_KEY_JOBS["routes"][0]["job"]) == set(Job.model_fields)
    named = [m for spec in EVERY_KEY_SPECS for m in spec.get("models", {}).values()]
    assert {k for m in named for k in m} == set(NamedModel.model_fields)
    generic = EVERY_KEY_JWT_WEBHOOK["routes"][1]
    assert set(generic["signature"]) == set(Signature.model_fields)
    assert set(generic["examples"][0]) == set(Example.model_fields)
    examples = [
        e for spec in EVERY_KEY_SPECS for r in spec["routes"] for e in r.get("examples", [])
    ]
    assert {k for e in examples for k in e.get("request", {})} == _names(ExampleRequest)
    routes = [r for spec in EVERY_KEY_SPECS for r in spec["routes"]]
    params = [p for r in routes for p in r.get("params", {}).values() if isinstance(p, dict)]
    fields = [f for r in routes for f in (r.get("request") or {}).values() if isinstance(f, dict)]
    # A parameter is never a list, so the list bounds it inherits are always refused on
    # it (test_shape_errors.py: max-items-on-a-str); every other key is used.
    assert {k for p in params for k in p} == _names(Param) - {"min_items", "max_items"}
    assert {k for f in fields for k in f} == _names(FieldSpec)
    mappings = [m for spec in EVERY_KEY_SPECS for m in spec.get("errors", {}).values()]
    assert {k for m in mappings for k in m} == _names(ErrorMapping)


@pytest.mark.parametrize(
    "spec",
    EVERY_KEY_SPECS,
    ids=[
        "jobs",
        "embeddings",
        "text-generation",
        "jwt-webhook-redis",
        "shapes-loader-errors",
        "multi",
        "vllm-models",
    ],
)
def test_spec_with_every_key_validates_and_builds(in_tmp: Path, spec: dict[str, Any]) -> None:
    write_shape_files(in_tmp)
    write(in_tmp, yaml.safe_dump(spec, sort_keys=False))
    assert lines_for("spec.yaml") == []
    for env in [None, *spec.get("environments", {})]:
        built = pipeline.build("spec.yaml", in_tmp / "out", env)
        compile(built.source, str(built.path), "exec")


def test_every_key_modules_are_ruff_clean_and_import(in_tmp: Path) -> None:
    """The every-key specs reach every template branch; their modules stay lint-clean."""
    write_shape_files(in_tmp)
    out = in_tmp / "out"
    out.mkdir()
    for i, spec in enumerate(EVERY_KEY_SPECS):
        path = write(in_tmp, yaml.safe_dump(spec, sort_keys=False)).rename(in_tmp / f"s{i}.yaml")
        built = pipeline.build(path, out)
        built.path.write_text(built.source, encoding="utf-8")
        assert pipeline.build(path, out).source == built.source
        import_file(built.path)
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"
    isolated = ["--isolated", "--line-length", "88", "--target-version", "py311"]
    rules = ["--select", "E,F,I,UP,B,RUF", "--ignore", "E501"]
    check = subprocess.run(
        [ruff, "check", *isolated, *rules, str(out)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [ruff, "format", *isolated, "--diff", str(out)], capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_every_key_spec_reads_back() -> None:
    spec = Spec.model_validate(EVERY_KEY_EMBEDDINGS)
    assert spec.gpu == ["L40S", "A100-80GB:2"]
    assert spec.env == {"LOG_LEVEL": "info", "WORKERS": "2", "DEBUG": "false"}
    assert spec.cors is not None and spec.cors.methods == ["GET", "POST"]
    assert spec.routes[1].rate_limit == "none"
    assert Spec.model_validate(EVERY_KEY_JWT_WEBHOOK).auth.audience == "api://mine"
    assert Spec.model_validate(EVERY_KEY_GENERATION).routes[0].rate_limit == "none"


def test_jwt_webhook_and_redis_keys_are_in_the_schema() -> None:
    spec = Spec.model_validate(EVERY_KEY_JWT_WEBHOOK)
    assert spec.auth.mode == "jwt"
    assert spec.auth.algorithm == "RS256"
    assert spec.auth.audience == "api://mine"
    assert spec.auth.issuer == "https://issuer.example.com/"
    assert spec.rate_limit is not None and spec.rate_limit.storage == "redis"
    assert spec.rate_limit.url_env == "MY_REDIS"
    hook = spec.routes[0]
    assert (hook.provider, hook.secret, hook.env) == (
        "github",
        "github-hook",
        "GITHUB_SECRET",
    )


@pytest.mark.parametrize(
    "content",
    [
        changed("mode: bearer", "mode: jwt"),
        changed(AUTH, "mode: jwt\n  secret: k\n  algorithm: RS256\n  audience: me\n  issuer: you"),
        changed(AUTH, "mode: proxy"),
        BASE + "rate_limit:\n  limit: 5/minute\n  storage: redis\n  url_env: MY_REDIS\n",
        BASE + "    rate_limit:\n      limit: 5/minute\n      storage: modal-dict\n",
        BASE
        + "  - path: /hook\n    method: POST\n    action: webhook\n"
        + "    provider: stripe\n    secret: stripe-hook\n    env: STRIPE_SECRET\n",
    ],
    ids=["jwt", "jwt-rs256", "proxy", "redis", "modal-dict", "webhook"],
)
def test_auth_modes_storages_and_webhooks_validate_and_build(in_tmp: Path, content: str) -> None:
    write(in_tmp, content)
    assert lines_for("spec.yaml") == []
    built = pipeline.build("spec.yaml", in_tmp / "out")
    compile(built.source, str(built.path), "exec")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "auth: {mode: bearer, header: X-Token, audience: a, issuer: i, algorithm: RS256, "
            "leeway: 5}",
            {
                "auth.algorithm: auth mode bearer does not read `algorithm` (modes that do: jwt)",
                "auth.audience: auth mode bearer does not read `audience` (modes that do: jwt)",
                "auth.header: auth mode bearer does not read `header` (modes that do: api_key)",
                "auth.issuer: auth mode bearer does not read `issuer` (modes that do: jwt)",
                "auth.leeway: auth mode bearer does not read `leeway` (modes that do: jwt)",
            },
        ),
        (
            "auth: {mode: none, env: X}",
            {
                "auth.env: auth mode none does not read `env` "
                "(modes that do: api_key, bearer, jwt, proxy)"
            },
        ),
        (
            "rate_limit: {limit: 5/minute, url_env: MY_REDIS, secret: redis-url}",
            {
                "rate_limit.secret: `secret` is for `storage: redis`; this limit counts in memory",
                "rate_limit.url_env: `url_env` is for `storage: redis`; this limit counts in "
                "memory",
            },
        ),
    ],
    ids=["bearer-with-jwt-keys", "none-with-env", "memory-limit-with-redis-keys"],
)
def test_keys_the_app_would_not_read_are_refused(
    in_tmp: Path, text: str, expected: set[str]
) -> None:
    """docs/spec.md: nothing is silently ignored. Each key that validates but that the
    built app would drop is refused, at its own line and column."""
    (in_tmp / "spec.yaml").write_text(
        "name: demo\nroutes:\n  - {path: /h, action: respond, response: {}}\n" + text + "\n"
    )
    found = lines_for("spec.yaml")
    assert all(re.match(r"spec\.yaml:4:\d+: ", line) for line in found), found
    assert {line.split(": ", 1)[1] for line in found} == expected


@pytest.mark.parametrize("name", ["DB_PASSWORD", "STRIPE_KEY", "API_TOKEN"])
def test_a_short_value_under_a_credential_name_is_refused(in_tmp: Path, name: str) -> None:
    """docs/spec.md, Top level (`env`): any value under such a name belongs in a Secret."""
    (in_tmp / "spec.yaml").write_text(
        f"name: demo\nenv: {{{name}: hunter2}}\nroutes:\n  - {{path: /h, action: health}}\n"
    )
    (line,) = lines_for("spec.yaml")
    assert line.startswith("spec.yaml:2:") and f"put {name} in a Modal Secret" in line
    (in_tmp / "spec.yaml").write_text(
        "name: demo\nenv: {CACHE_KEY_PREFIX: v1}\nroutes:\n  - {path: /h, action: health}\n"
    )
    assert lines_for("spec.yaml") == []


def test_version_is_1_and_may_be_left_out(in_tmp: Path) -> None:
    """docs/spec.md, Top level (`version`): the language version is 1, the default: a spec
    may leave it out or say 1; any other version is refused at its line."""
    write(in_tmp, BASE)
    assert lines_for("spec.yaml") == []
    write(in_tmp, "version: 1\n" + BASE)
    assert lines_for("spec.yaml") == []
    _, spec = pipeline.load_spec("spec.yaml")
    assert spec.version == 1
    write(in_tmp, BASE + "version: 2\n")
    assert lines_for("spec.yaml") == ["spec.yaml:11:10: version: must be 1, not 2"]


def test_routes_are_required_and_at_least_one(in_tmp: Path) -> None:
    """docs/spec.md, Top level (`routes`): required, at least one; a spec without routes,
    or with an empty list, is refused, and one route is enough."""
    write(in_tmp, "name: demo\n")
    assert lines_for("spec.yaml") == ["spec.yaml:1:1: routes: required key is missing"]
    write(in_tmp, "name: demo\nroutes: []\n")
    assert lines_for("spec.yaml") == ["spec.yaml:2:9: routes: must have at least 1 item, not 0"]
    write(in_tmp, "name: demo\nroutes:\n  - {path: /h, action: health}\n")
    assert lines_for("spec.yaml") == []


@pytest.mark.parametrize("task", sorted(TASKS))
def test_model_task_is_required_and_one_of_the_tasks(in_tmp: Path, task: str) -> None:
    """docs/spec.md, Model (`task`): required, and one of the tasks."""
    health_only = "routes:\n  - {path: /h, action: health}\n"
    write(in_tmp, f"name: demo\nmodel:\n  id: gpt2\n  task: {task}\n  revision: v1\n" + health_only)
    assert lines_for("spec.yaml") == []
    write(in_tmp, "name: demo\nmodel:\n  id: gpt2\n" + health_only)
    assert lines_for("spec.yaml") == ["spec.yaml:3:3: model.task: required key is missing"]
    write(in_tmp, "name: demo\nmodel:\n  id: gpt2\n  task: summarization\n" + health_only)
    (line,) = lines_for("spec.yaml")
    assert line.startswith(
        "spec.yaml:4:9: model.task: 'summarization' is not one of text-generation, "
        "text2text-generation, text-classification, zero-shot-classification, "
        "token-classification, rerank, embeddings, image-text-embeddings, "
        "image-classification"
    )


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (
            "action: generate",
            "routes[0].action: POST /r runs `generate` but the spec has no `model`",
        ),
        (
            "action: classify",
            "routes[0].action: POST /r runs `classify` but the spec has no `model`",
        ),
        ("action: embed", "routes[0].action: POST /r runs `embed` but the spec has no `model`"),
        (
            "action: upload\n    processor: image-classification",
            "routes[0].processor: image-classification needs an image-classification model",
        ),
    ],
    ids=["generate", "classify", "embed", "image-upload"],
)
def test_routes_that_run_a_model_need_model(in_tmp: Path, route: str, message: str) -> None:
    """docs/spec.md, Top level (`model`): the routes that run a model need it: without
    `model` each is refused, naming the route."""
    write(
        in_tmp,
        f"name: demo\nauth: {{mode: bearer}}\n"
        f"routes:\n  - path: /r\n    method: POST\n    {route}\n",
    )
    (line,) = lines_for("spec.yaml")
    assert line.split(": ", 1)[1] == message


def test_schema_and_rule_problems_come_out_in_one_run(in_tmp: Path) -> None:
    """An unknown key and a rule the spec breaks are both reported by one `validate`,
    each at its own line, so a newcomer does not fix one to meet the other."""
    (in_tmp / "spec.yaml").write_text(
        "name: demo\n"
        "model: {id: gpt2, task: text-generation, revision: main}\n"
        "routes:\n"
        "  - {path: /a, method: POST, action: generate}\n"
        "  - {path: /b, action: respond, response: {}, max_tokenz: 3}\n"
    )
    assert lines_for("spec.yaml") == [
        "spec.yaml:4:5: routes[0]: POST /a runs the model with no auth; set `auth.mode` for "
        "the app, or mark this route `public: true` to serve it openly",
        "spec.yaml:5:47: routes[1].max_tokenz: unknown key 'max_tokenz'; 'max_tokens' is "
        "close, but it applies to generate, openai routes, not respond",
    ]


def test_no_guess_for_a_word_that_is_not_a_slip(in_tmp: Path) -> None:
    """`websocket` is no misspelt `webhook`: the allowed actions are listed, no guess."""
    (in_tmp / "spec.yaml").write_text("name: demo\nroutes:\n  - {path: /a, action: websocket}\n")
    (line,) = lines_for("spec.yaml")
    assert "'websocket' is not one of health, generate" in line and "did you mean" not in line
