"""`validate` says everything a spec needs fixed in one run, and what would only fail
once deployed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError

GPUS = "T4, L4, A10, L40S, A100, A100-40GB, A100-80GB, H100, H200, B200"


def _validate(path: Path) -> list[str]:
    return [str(p).replace(str(path.parent) + "/", "") for p in pipeline.validate(path)]


def test_a_gpu_typo_hides_no_route_or_auth_problem(tmp_path: Path) -> None:
    """One run names the GPU typo, the routes that run the model with no auth, and both
    route problems, each at its line (before, the GPU typo alone was reported)."""
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: demo\n"
        "model: {id: sentence-transformers/all-MiniLM-L6-v2, task: embeddings, revision: v1}\n"
        "gpu: H10\n"
        "auth: {mode: none}\n"
        "routes:\n"
        "  - {path: /gen, method: POST, action: generate}\n"
        "  - {path: /gen, method: POST, action: embed}\n",
        encoding="utf-8",
    )
    no_auth = (
        "runs the model with no auth; set `auth.mode` for the app, or mark this route "
        "`public: true` to serve it openly"
    )
    assert _validate(path) == [
        f"spec.yaml:3:6: gpu: unknown GPU 'H10'; did you mean 'H100'? (known: {GPUS})",
        f"spec.yaml:6:5: routes[0]: POST /gen {no_auth}",
        "spec.yaml:6:40: routes[0].action: POST /gen: `generate` needs a text-generation, "
        "text2text-generation or text-to-image model, but model.task is embeddings",
        f"spec.yaml:7:5: routes[1]: POST /gen {no_auth}",
        "spec.yaml:7:12: routes[1].path: POST /gen is already defined by routes[0]",
    ]


def test_a_wrong_value_whose_meaning_is_unsure_hides_nothing_misleading(tmp_path: Path) -> None:
    """A wrong value with no single likely meaning is left out for the rules, and what
    they would say about it is not shown; the rest is."""
    path = tmp_path / "spec.yaml"
    path.write_text(
        "name: demo\n"
        "model: {id: gpt2, task: text-generation, revision: v1}\n"
        "gpu: 12\n"
        "auth: {mode: bearer, secret: k}\n"
        "routes:\n"
        "  - {path: /gen, method: POST, action: generate}\n"
        "  - {path: /gen, method: POST, action: generate}\n",
        encoding="utf-8",
    )
    lines = _validate(path)
    assert lines[0].startswith("spec.yaml:3:6: gpu:")
    assert lines[1:] == [
        "spec.yaml:7:12: routes[1].path: POST /gen is already defined by routes[0]"
    ]


@pytest.mark.parametrize(
    ("auth", "env"),
    [
        ("{mode: api_key}", "API_KEYS"),
        ("{mode: bearer, env: MY_TOKENS}", "MY_TOKENS"),
        ("{mode: jwt}", "JWT_SECRET"),
        ("{mode: jwt, algorithm: RS256}", "JWT_PUBLIC_KEY"),
    ],
)
def test_auth_that_no_secret_feeds_is_refused_before_deploy(
    tmp_path: Path, auth: str, env: str
) -> None:
    """docs/spec.md, Auth (`secret`): auth whose keys no Modal Secret provides would answer
    every caller 401 once deployed: `validate` and `deploy` refuse it, naming the env var
    to put in a Secret; `build` (and so `serve`) builds it."""
    path = tmp_path / "spec.yaml"
    text = (
        "name: demo\n"
        "model: {id: gpt2, task: text-generation, revision: v1}\n"
        f"auth: {auth}\n"
        "routes:\n"
        "  - {path: /gen, method: POST, action: generate}\n"
    )
    path.write_text(text, encoding="utf-8")
    (line,) = _validate(path)
    assert line.startswith("spec.yaml:3:14: auth.mode: ")
    assert f"from ${env}, and no Modal Secret gives the app that variable" in line
    assert f"(a Modal Secret holding {env})" in line
    pipeline.build(path, tmp_path / "out")
    with pytest.raises(SpecError):
        pipeline.build(path, tmp_path / "out", deploying=True)
    cli = subprocess.run(
        [sys.executable, "-m", "endpointgen", "validate", str(path)],
        capture_output=True,
        text=True,
    )
    assert cli.returncode == 1 and "every caller would get 401" in cli.stderr
    for fixed in (
        text.replace(auth, auth[:-1] + ", secret: demo-keys}"),
        text + "secrets: [demo-hub]\n",
    ):
        path.write_text(fixed, encoding="utf-8")
        assert _validate(path) == []
