"""The release workflow, .github/workflows/release.yml: valid for GitHub, publishing with
trusted publishing only, and its own build and check steps, run as written."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"
BIN = Path(sys.executable).parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]


def workflow(root: Path = ROOT) -> dict[str, Any]:
    wf = yaml.safe_load((root / ".github" / "workflows" / "release.yml").read_text())
    return {("on" if k is True else k): v for k, v in wf.items()}  # YAML 1.1 reads `on` as True


def test_the_release_workflow_is_valid_and_publishes_without_a_token() -> None:
    """GitHub's workflow schema (as check-jsonschema vendors it) with its rule that every job
    sets `timeout-minutes`; tags `v*` trigger it; the publish job runs only for a tag, in the
    `pypi` environment, with an OIDC token and no password; every action is pinned to a
    commit."""
    import jsonschema
    from check_jsonschema import builtin_schemas

    wf = workflow()
    base = Path(builtin_schemas.__file__).parent
    for schema_file in (
        "vendor/github-workflows.json",
        "custom/github-workflows-require-timeout.json",
    ):
        jsonschema.validate(wf, json.loads((base / schema_file).read_text()))
    assert wf["on"]["push"] == {"tags": ["v*"]} and "workflow_dispatch" in wf["on"]
    assert wf["permissions"] == {"contents": "read"}

    build, publish = wf["jobs"]["build"], wf["jobs"]["publish"]
    assert publish["needs"] == "build" and "refs/tags/v" in publish["if"]
    assert publish["environment"]["name"] == "pypi"
    assert publish["permissions"] == {"id-token": "write"}
    assert "id-token" not in build.get("permissions", {})
    (upload,) = [s for s in publish["steps"] if "gh-action-pypi-publish" in s.get("uses", "")]
    assert not {"password", "user"} & set(upload.get("with") or {})
    values = json.dumps(wf)  # the workflow without its comments
    assert "secrets." not in values and "password" not in values

    uses = re.findall(r"uses: (\S+)@(\S+)(.*)", WORKFLOW.read_text())
    assert {u for u, _, _ in uses} == {
        "actions/checkout",
        "actions/setup-python",
        "actions/upload-artifact",
        "actions/download-artifact",
        "pypa/gh-action-pypi-publish",
    }
    for action, ref, comment in uses:
        assert re.fullmatch(r"[0-9a-f]{40}", ref), action
        assert re.fullmatch(r"\s+# v\d+(\.\d+)*", comment), action


def checkout(tmp_path: Path) -> Path:
    """What a clone of this working tree holds: the tracked files and the new ones git does
    not ignore (not .venv, not build outputs), as they are on disk now."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    repo = tmp_path / "repo"
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # an index entry deleted in the working tree is skipped
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    return repo


def run_steps(repo: Path, ref: str, only: str | None = None) -> subprocess.CompletedProcess[str]:
    """The build job's `run:` steps (or the one named `only`), each as GitHub's default shell
    runs it (`bash -e`), with this venv's bin first on PATH, as on a tag push of `ref`."""
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REF_TYPE": "tag",
        "GITHUB_REF_NAME": ref,
    }
    output = ""
    for step in workflow(repo)["jobs"]["build"]["steps"]:
        script = step.get("run")
        if script is None or script.startswith("python -m pip install"):
            continue
        if only is not None and step["name"] != only:
            continue
        assert "${{" not in script, step["name"]  # runs unchanged under bash
        done = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=repo,
            env={**env, **step.get("env", {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
        output += re.sub(r"\x1b\[[0-9;]*m", "", done.stdout + done.stderr)  # twine's colours
        if done.returncode != 0:
            return subprocess.CompletedProcess(done.args, done.returncode, output, "")
    return subprocess.CompletedProcess([], 0, output, "")


@pytest.mark.slow
def test_the_release_build_steps_run_as_written(tmp_path: Path) -> None:
    """The build job's own steps, run by bash in a copy of the repository. Only the
    `pip install` step is skipped: this venv already holds what it installs (the test
    checks that), and with no network here that is also why the workflow builds with
    `--no-isolation`: it installs pyproject.toml's build backend itself, so the build runs
    in CI exactly as here. Then the wheel, unpacked the way pip installs it, builds a spec
    and writes `init --gitops`'s files from the templates it carries."""
    steps = workflow()["jobs"]["build"]["steps"]
    (install,) = [s["run"] for s in steps if s.get("run", "").startswith("python -m pip install")]
    backend = [re.split(r"[<>=!~\[ ]", r)[0] for r in PYPROJECT["build-system"]["requires"]]
    for package in ["build", "twine", *backend]:
        assert package in install.split(), package
        assert importlib.util.find_spec(package), f"no {package} here: pip install -e '.[dev]'"

    repo = checkout(tmp_path)
    done = run_steps(repo, f"v{VERSION}")
    assert done.returncode == 0, done.stdout
    assert f"Version {VERSION}" in done.stdout
    assert re.search(r"Checking dist/\S+\.whl: PASSED", done.stdout), done.stdout
    assert re.search(r"Checking dist/\S+\.tar\.gz: PASSED", done.stdout), done.stdout
    dist = sorted(p.name for p in (repo / "dist").iterdir())
    wheel_name = f"endpointgen-{VERSION}-py3-none-any.whl"
    assert dist == [wheel_name, f"endpointgen-{VERSION}.tar.gz"]

    wheel = zipfile.ZipFile(repo / "dist" / wheel_name)
    names = set(wheel.namelist())
    assert "endpointgen/templates/init/workflow.yml.jinja" in names
    folder = repo / "endpointgen/runtime"  # its packages too (http/)
    runtime = {
        f"endpointgen/runtime/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*.py")
    }
    assert "endpointgen/runtime/http/__init__.py" in runtime and runtime <= names
    locks = {"endpointgen/runtime/locks/tested.json", "endpointgen/runtime/locks/vllm.json"}
    assert locks <= names, "the wheel lacks the image locks `runtime.locked` reads"
    templates = {
        "endpointgen/templates/" + p.relative_to(repo / "templates").as_posix()
        for p in (repo / "templates").rglob("*")
        if p.is_file()
    }
    assert templates <= names

    site = tmp_path / "site"
    wheel.extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}  # ahead of this venv's editable install
    where = subprocess.run(
        [sys.executable, "-c", "import endpointgen; print(endpointgen.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(site / "endpointgen" / "__init__.py"), where.stderr
    for args in (
        ["build", str(repo / "specs" / "gpt2.yaml"), "-o", str(tmp_path / "built")],
        ["init", "demo", "--gitops", "--dir", str(tmp_path / "demo")],
    ):
        made = subprocess.run(
            [sys.executable, "-m", "endpointgen", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert made.returncode == 0, (args, made.stdout, made.stderr)
    assert (tmp_path / "built" / "gpt2.py").is_file()
    assert (tmp_path / "demo" / ".github" / "workflows" / "endpointgen.yml").is_file()


@pytest.mark.parametrize("ref", ["v9.9.9", "0.2.0"])
def test_the_release_refuses_a_tag_that_is_not_the_version(tmp_path: Path, ref: str) -> None:
    """A tag other than v<the version in pyproject.toml> fails the build job before it
    builds anything, and says which version to tag."""
    repo = checkout(tmp_path)
    done = run_steps(repo, ref, only="Check that the tag is the version")
    assert done.returncode == 1
    assert f"The tag {ref} is not v{VERSION}, the version in pyproject.toml" in done.stdout
    assert run_steps(repo, f"v{VERSION}", only="Check that the tag is the version").returncode == 0


def test_the_release_refuses_a_version_that_init_py_does_not_state(tmp_path: Path) -> None:
    """pyproject.toml and endpointgen/__init__.py must name the same version: the wheel's
    `endpointgen --version` and every built module's header print the second."""
    repo = checkout(tmp_path)
    init = repo / "endpointgen" / "__init__.py"
    init.write_text(init.read_text().replace(f'"{VERSION}"', '"0.0.1"'))
    done = run_steps(repo, f"v{VERSION}", only="Check that the tag is the version")
    assert done.returncode == 1
    assert f"__version__ is not {VERSION}" in done.stdout
