"""GitOps: deploy (real Modal CLI without a token, and a recording stand-in), check, list,
init and its GitHub workflow, and the pre-commit hook."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from conftest import ROOT, SPECS, import_file, write_spec
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.compiler import pipeline
from endpointgen.gitops import scaffold

runner = CliRunner()
BIN = Path(sys.executable).parent


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "endpointgen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env or dict(os.environ),
        timeout=120,
    )


def tiny_spec(folder: Path, name: str) -> Path:
    text = f"name: {name}\nroutes:\n  - {{path: /health, action: health}}\n"
    return write_spec(folder, text, name=f"{name}.yaml")


# --- deploy --------------------------------------------------------------------------

FAKE_MODAL = """\
import json, os, sys

with open(os.environ["FAKE_MODAL_LOG"], "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
name = sys.argv[sys.argv.index("--name") + 1]
if name == os.environ.get("FAKE_MODAL_FAIL"):
    print("Building image...")
    print("Error: App deployment failed: quota exceeded")
    sys.exit(1)
print(f"App deployed: {name}")
"""


@pytest.fixture
def fake_modal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `modal` package first on PYTHONPATH: `python -m modal` records its argv here."""
    shim = tmp_path / "shim" / "modal"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("")
    (shim / "__main__.py").write_text(FAKE_MODAL)
    log = tmp_path / "modal-calls.jsonl"
    monkeypatch.setenv("PYTHONPATH", str(shim.parent))
    monkeypatch.setenv("FAKE_MODAL_LOG", str(log))
    monkeypatch.delenv("FAKE_MODAL_FAIL", raising=False)
    return log


def calls(log: Path) -> list[list[str]]:
    if not log.is_file():
        return []
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_deploy_runs_modal_deploy_for_each_spec_in_order(tmp_path: Path, fake_modal: Path) -> None:
    specs = [tiny_spec(tmp_path / "specs", n) for n in ("alpha", "beta", "gamma")]
    out = tmp_path / "out"
    args = ["deploy", *map(str, specs), "-o", str(out), "--modal-env", "staging"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls(fake_modal) == [
        ["deploy", str(out / f"{n}.py"), "--name", n, "--env", "staging"]
        for n in ("alpha", "beta", "gamma")
    ]
    assert "deployed alpha, beta, gamma" in result.output
    assert all((out / f"{n}.py").is_file() for n in ("alpha", "beta", "gamma"))


def test_a_failed_deploy_stops_the_rest_and_says_which_went_out(
    tmp_path: Path, fake_modal: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODAL_FAIL", "beta")
    specs = [tiny_spec(tmp_path / "specs", n) for n in ("alpha", "beta", "gamma")]
    result = runner.invoke(app, ["deploy", *map(str, specs), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert [c[3] for c in calls(fake_modal)] == ["alpha", "beta"], "gamma must not run"
    assert "error: modal deploy failed: Error: App deployment failed: quota exceeded" in (
        result.output
    )
    assert "deployed before the failure: alpha" in result.output
    assert "not deployed: beta (failed), gamma" in result.output


def test_an_invalid_spec_deploys_nothing_and_names_every_problem(
    tmp_path: Path, fake_modal: Path
) -> None:
    good = tiny_spec(tmp_path, "alpha")
    bad1 = write_spec(tmp_path, "name: b\nroutes:\n  - {path: /h, action: helth}\n", "b.yaml")
    bad2 = write_spec(tmp_path, "name: C\nroutes:\n  - {path: /h, action: health}\n", "c.yaml")
    result = runner.invoke(app, ["deploy", str(good), str(bad1), str(bad2), "-o", str(tmp_path)])
    assert result.exit_code == 1
    assert f"{bad1}:3:24: routes[0].action:" in result.output
    assert f"{bad2}:1:7: name:" in result.output
    assert calls(fake_modal) == []


def test_two_specs_for_one_app_deploy_nothing(tmp_path: Path, fake_modal: Path) -> None:
    one = tiny_spec(tmp_path / "a", "alpha")
    two = tiny_spec(tmp_path / "b", "alpha")
    result = runner.invoke(app, ["deploy", str(one), str(two), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "both name app 'alpha'" in result.output
    assert calls(fake_modal) == []


def test_dry_run_prints_the_plan_and_the_exact_command(tmp_path: Path, fake_modal: Path) -> None:
    spec = tiny_spec(tmp_path, "alpha")
    out = tmp_path / "out"
    result = runner.invoke(app, ["deploy", str(spec), "--dry-run", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert calls(fake_modal) == []
    exact = shlex.join([sys.executable, "-m", "modal", "deploy", str(out / "alpha.py")])
    assert f"would run: {exact} --name alpha\n" in result.output
    # Not in git: planned against nothing, so everything is new.
    assert f"{spec}: app 'alpha' is new (nothing to compare with)" in result.output
    assert "+ GET /health: health, auth none" in result.output
    assert "Estimate from Modal list prices" in result.output


def test_dry_run_plans_against_head_in_a_git_repository(tmp_path: Path, fake_modal: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    spec = write_spec(tmp_path, "name: alpha\ngpu: T4\nroutes:\n  - {path: /h, action: health}\n")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=tmp_path, check=True)
    spec.write_text(spec.read_text().replace("T4", "L4"))
    result = runner.invoke(app, ["deploy", str(spec), "--dry-run", "-o", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "app 'alpha' changed against HEAD" in result.output
    assert "GPU: T4 -> L4" in result.output
    assert calls(fake_modal) == []


def no_modal_token(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env.pop("PYTHONPATH", None)  # the real `modal` package, not a stand-in
    env["HOME"] = str(tmp_path)
    env["MODAL_CONFIG_PATH"] = str(tmp_path / "modal.toml")
    return env


@pytest.mark.slow
def test_no_modal_token_stops_at_the_first_spec_with_modals_reason(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli(
        "deploy",
        str(SPECS / "gpt2.yaml"),
        str(tiny_spec(tmp_path, "alpha")),
        "-o",
        str(tmp_path / "out"),
        env=no_modal_token(tmp_path),
    )
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "error: modal deploy failed: Error: Token missing" in output
    assert "deployed before the failure: none" in output
    assert "not deployed: gpt2 (failed), alpha" in output
    assert "Traceback" not in output


# --- check and list --------------------------------------------------------------------


def test_check_passes_when_current_and_lists_every_problem(tmp_path: Path) -> None:
    specs, out = tmp_path / "specs", tmp_path / "build"
    a = tiny_spec(specs, "alpha")
    b = tiny_spec(specs / "team", "beta")
    assert runner.invoke(app, ["build", str(a), str(b), "-o", str(out)]).exit_code == 0
    ok = runner.invoke(app, ["check", str(specs), "-o", str(out)])
    assert ok.exit_code == 0, ok.output
    (out / "alpha.py").write_text((out / "alpha.py").read_text() + "# edited\n")
    (out / "beta.py").unlink()
    tiny_spec(specs, "gamma")  # never built
    (out / "gone.py").write_text("# Built by endpointgen 0.1.0 from ../specs/gone.yaml.\n")
    (out / "helper.py").write_text("# not ours, left alone\n")
    write_spec(specs, "name: bad\nroutes: []\n", "bad.yml")
    write_spec(specs / ".hidden", "not: a spec\n", "x.yaml")
    tiny_spec(specs / "copy", "alpha")
    result = runner.invoke(app, ["check", str(specs), "-o", str(out)])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert (
        f"{out / 'alpha.py'}: out of date with {a}; run `endpointgen build {a} -o {out}`" in lines
    )
    assert f"{out / 'beta.py'}: missing; run `endpointgen build {b} -o {out}`" in lines
    assert any(line.startswith(f"{out / 'gamma.py'}: missing") for line in lines)
    assert f"{out / 'gone.py'}: no spec under {specs} builds this module; delete it" in lines
    assert not any("helper.py" in line for line in lines)
    assert any(line.startswith(f"{specs / 'bad.yml'}:2:9: routes:") for line in lines)
    assert any("app 'alpha' is also defined by" in line for line in lines)
    assert not any(".hidden" in line for line in lines)
    assert lines[-1] == "7 problems"


def test_check_of_an_empty_or_missing_folder_fails(tmp_path: Path) -> None:
    empty = runner.invoke(app, ["check", str(tmp_path)])
    assert empty.exit_code == 1 and "no specs (*.yaml, *.yml) found" in empty.output
    missing = runner.invoke(app, ["check", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "no such folder" in missing.output


@pytest.mark.slow
def test_check_of_this_repositorys_specs_as_a_real_process(tmp_path: Path) -> None:
    specs = [str(p) for p in sorted(SPECS.rglob("*.y*ml"))]
    assert run_cli("build", *specs, "-o", str(tmp_path)).returncode == 0
    result = run_cli("check", "specs", "-o", str(tmp_path), cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"specs valid, modules in {tmp_path} current" in result.stdout
    (tmp_path / "gpt2.py").unlink()
    result = run_cli("check", "specs", "-o", str(tmp_path), cwd=ROOT)
    assert result.returncode == 1
    assert f"{tmp_path / 'gpt2.py'}: missing" in result.stderr


def test_list_shows_apps_gpus_routes_and_auth(tmp_path: Path) -> None:
    result = runner.invoke(app, ["list", str(SPECS)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["spec", "app", "model", "gpu", "containers", "routes", "auth"]
    gpt2 = next(line for line in lines if "gpt2.yaml" in line)
    assert "L40S" in gpt2 and "0-4" in gpt2 and "bearer" in gpt2
    assert "POST /generate, POST /generate/stream (stream), GET /health" in gpt2
    minilm = next(line for line in lines if "minilm.yaml" in line)
    assert "T4" in minilm and "api_key" in minilm and "(embeddings)" in minilm
    open_app = write_spec(
        tmp_path,
        "name: open\nmodel: {id: gpt2, task: text-generation}\nroutes:\n"
        "  - {path: /g, method: POST, action: generate, public: true}\n",
        "open.yaml",
    )
    write_spec(tmp_path, "name: Bad\nroutes: []\n", "bad.yaml")
    listed = runner.invoke(app, ["list", str(tmp_path)])
    assert listed.exit_code == 1, "an invalid spec fails the listing"
    assert "invalid (2 problems): `endpointgen validate`" in listed.output
    assert "none; open: POST /g" in listed.output
    assert str(open_app) in listed.output


# --- init ------------------------------------------------------------------------------


@pytest.mark.parametrize("task", scaffold.TASKS)
def test_init_writes_a_spec_that_validates_builds_and_imports(tmp_path: Path, task: str) -> None:
    result = runner.invoke(app, ["init", "my-app", "--task", task, "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    spec = tmp_path / "specs" / "my-app.yaml"
    assert pipeline.validate(spec) == []
    text = spec.read_text()
    first = text.splitlines()[0]
    match = re.fullmatch(r"# yaml-language-server: \$schema=(\S+)", first)
    assert match, first
    schema_file = (spec.parent / match.group(1)).resolve()
    schema = json.loads(schema_file.read_text())
    assert schema_file.read_text() == runner.invoke(app, ["schema"]).output
    jsonschema.validate(yaml.safe_load(text), schema)  # what an editor checks as you type
    check = runner.invoke(app, ["check", str(tmp_path / "specs"), "-o", str(tmp_path / "build")])
    assert check.exit_code == 0, check.output
    module = import_file(tmp_path / "build" / "my_app.py")
    assert module.app.name == "my-app"
    loaded = pipeline.load_spec(spec)[1]
    assert loaded.auth.mode != "none" and loaded.rate_limit is not None
    assert loaded.scaling.min_containers == 0 and loaded.scaling.max_containers
    assert "modal secret create my-app-auth" in result.output


def test_init_never_overwrites(tmp_path: Path) -> None:
    first = runner.invoke(app, ["init", "--dir", str(tmp_path)])
    assert first.exit_code == 0, first.output
    spec = tmp_path / "specs" / "my-endpoint.yaml"
    spec.write_text(spec.read_text() + "# mine\n")
    again = runner.invoke(app, ["init", "--dir", str(tmp_path), "--gitops"])
    assert again.exit_code == 1
    assert "will not overwrite existing files:" in again.output
    assert spec.read_text().endswith("# mine\n")
    assert not (tmp_path / ".github").exists(), "nothing is written when anything exists"
    other = runner.invoke(app, ["init", "other", "--dir", str(tmp_path)])
    assert other.exit_code == 0, other.output
    assert "kept " in other.output and "schema" in other.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["Bad_Name"], "'Bad_Name' cannot name an app"),
        (["json"], "shadows Python's `json`"),
        (["ok", "--task", "translation"], "unknown task 'translation'"),
    ],
)
def test_init_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["init", *args, "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output
    assert not list(tmp_path.rglob("*.yaml")), "a refused init leaves no spec behind"


def _workflow(tmp_path: Path) -> dict[str, Any]:
    result = runner.invoke(app, ["init", "demo", "--gitops", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / ".github" / "workflows" / "endpointgen.yml").read_text()
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def _runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_gitops_workflow_plans_pull_requests_and_deploys_main(tmp_path: Path) -> None:
    """GitOps 6: a workflow that works on GitHub as it really behaves."""
    from endpointgen import __version__

    wf = _workflow(tmp_path)
    triggers: Any = wf.get("on") or wf.get(True)  # type: ignore[call-overload]
    on: dict[str, Any] = triggers  # YAML 1.1 reads a bare `on` key as true
    assert set(on) == {"pull_request", "push", "workflow_dispatch"}
    assert on["workflow_dispatch"]["inputs"]["full"]["type"] == "boolean", "a full sync by hand"
    assert on["pull_request"] is None, "no path filter: a required check is never left pending"
    assert on["push"]["branches"] == ["main"]
    jobs = wf["jobs"]
    assert list(jobs) == ["plan", "deploy-dev", "deploy-prod"]
    plan = jobs["plan"]
    assert plan["if"] == "github.event_name == 'pull_request'"
    assert plan["permissions"]["pull-requests"] == "write"
    requirements = (tmp_path / "requirements-endpointgen.txt").read_text()
    pinned = requirements.splitlines()[-1]  # below the comment: a release, a commit or a wheel
    wheel = f"./.endpointgen/endpointgen-{__version__}-py3-none-any.whl"
    assert pinned in (f"endpointgen=={__version__}", wheel) or pinned.startswith(
        "endpointgen @ git+https://"
    )
    runs = "\n".join(_runs(plan))
    assert "pip install -r requirements-endpointgen.txt" in runs
    assert "endpointgen check specs -o build" in runs
    for env in ("dev", "prod"):
        assert f'--base "$base" --env {env} --config .endpointgen/gitops.yaml' in runs
    comment = next(s for s in plan["steps"] if s.get("uses", "").startswith("actions/github-sc"))
    assert "fs.readFileSync(process.env.BODY_FILE" in comment["with"]["script"]
    assert comment["env"]["BODY_FILE"] == "plan.md"
    assert "head.repo.full_name == github.repository" in comment["if"], "forks: no comment"
    assert "Validation failed" in runs, "a broken spec replaces a stale plan"
    assert plan["steps"][0]["with"]["fetch-depth"] == 0
    for name, job in jobs.items():
        assert job["timeout-minutes"] <= 30, name
        assert "group" in job["concurrency"], name
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
            if step.get("uses", "").startswith("actions/setup-python"):
                assert step["with"]["cache"] == "pip"
    dev, prod = jobs["deploy-dev"], jobs["deploy-prod"]
    # Each deploy runs in its GitHub environment, whose secrets hold its Modal token: a
    # repository secret would let any job deploy prod, past its reviewers.
    assert dev["environment"] == "dev" and prod["environment"] == "prod"
    assert prod["needs"] == "deploy-dev"
    step = next(s for s in prod["steps"] if "endpointgen deploy" in s.get("run", ""))
    assert step["env"]["MODAL_TOKEN_ID"] == "${{ secrets.MODAL_TOKEN_ID }}"
    assert "--against-deployed --prune --keep-going" in step["run"]
    assert "--env prod --modal-env prod" in step["run"]
    assert prod["permissions"] == {"contents": "write"}, "it moves its record tag"
    header = (tmp_path / ".github/workflows/endpointgen.yml").read_text().split("\nname:")[0]
    assert "environment\n# secrets of each GitHub environment" in header
    assert "never repository secrets" in header
    assert "in push order" not in header + json.dumps(wf), "GitHub cancels waiting runs"
    scripts = "\n".join(_runs(plan) + _runs(dev) + _runs(prod))
    assert "${{" not in scripts, "no expression inside a script: they go through env"


def test_the_workflow_is_valid_for_github(tmp_path: Path) -> None:
    """Checked against GitHub's workflow schema (SchemaStore's, as vendored by
    check-jsonschema), and its rule that every job sets `timeout-minutes`."""
    import jsonschema
    from check_jsonschema import builtin_schemas

    base = Path(builtin_schemas.__file__).parent
    wf = _workflow(tmp_path)
    previews = tmp_path / "previews"
    done = runner.invoke(app, ["init", "demo", "--gitops", "--previews", "--dir", str(previews)])
    assert done.exit_code == 0, done.output
    with_previews = yaml.safe_load((previews / ".github/workflows/endpointgen.yml").read_text())
    assert {"preview", "preview-stop"} <= set(with_previews["jobs"])
    for schema_file in (
        "vendor/github-workflows.json",
        "custom/github-workflows-require-timeout.json",
    ):
        schema = json.loads((base / schema_file).read_text())
        for doc in (wf, with_previews):
            jsonschema.validate({("on" if k is True else k): v for k, v in doc.items()}, schema)
    single = tmp_path / "single"
    done = runner.invoke(
        app, ["init", "demo", "--gitops", "--dir", str(single), "--environments", "prod"]
    )
    assert done.exit_code == 0, done.output
    text = (single / ".github" / "workflows" / "endpointgen.yml").read_text()
    one = yaml.safe_load(text)
    assert (
        list(one["jobs"]) == ["plan", "deploy-prod"] and "needs" not in one["jobs"]["deploy-prod"]
    )


@pytest.mark.slow
def test_gitops_workflow_steps_run_as_written(tmp_path: Path) -> None:
    """The pull-request job's own commands, run by bash in a clone with an `origin`."""
    project = tmp_path / "project"
    wf = _workflow(project)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=project, check=True)
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=project, check=True)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(project), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-qb", "bigger-gpu"], cwd=clone, check=True)
    spec = clone / "specs" / "demo.yaml"
    spec.write_text(spec.read_text().replace("gpu: L4", "gpu: A10"))
    assert runner.invoke(app, ["build", str(spec), "-o", str(clone / "build")]).exit_code == 0
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    env |= {"BASE_REF": "main", "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    env |= {"CHECKED": "success"}
    for script in _runs(wf["jobs"]["plan"]):
        if script.startswith(("pip install", 'echo "::notice')):
            continue
        done = subprocess.run(
            ["bash", "-e", "-c", script], cwd=clone, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (script, done.stdout, done.stderr)
    plan_md = (clone / "plan.md").read_text()
    assert plan_md.startswith("# Environment dev\n## endpointgen plan")
    assert "# Environment prod" in plan_md
    assert "| gpu | GPU: L4 -> A10 |" in plan_md
    assert (tmp_path / "summary.md").read_text() == plan_md
    spec.write_text("name: demo\nroutes: []\n")  # broken: the comment says so
    failed = {**env, "CHECKED": "failure"}
    write = next(s for s in _runs(wf["jobs"]["plan"]) if "Validation failed" in s)
    subprocess.run(["bash", "-e", "-c", write], cwd=clone, env=failed, check=True)
    assert "**Validation failed**" in (clone / "plan.md").read_text()


# --- pre-commit ------------------------------------------------------------------------


@pytest.mark.slow
def test_pre_commit_hook_runs_endpointgen_validate(tmp_path: Path) -> None:
    """The hook's entry runs as pre-commit runs it: from the repository root, on every
    file its `files:` pattern matches. YAML that `check` skips (data, a Kubernetes
    manifest, a hidden folder) passes; a broken spec fails with file:line:col."""
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hook = next(h for h in hooks if h["id"] == "endpointgen-validate")
    assert hook["language"] == "python"
    files = re.compile(hook["files"])
    for path in ("specs/gpt2.yaml", "specs/team/a.yml"):
        assert files.search(path), path
    for path in ("README.md", "build/gpt2.py", ".github/workflows/endpointgen.yml"):
        assert not files.search(path), path
    entry = shlex.split(hook["entry"])
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    staged = {
        "specs/gpt2.yaml": (SPECS / "gpt2.yaml").read_text(),
        "specs/data/labels.yaml": "labels: [cat, dog]\n",
        "specs/k8s/app.yaml": "apiVersion: v1\nkind: Service\n---\napiVersion: v1\nkind: Pod\n",
        "specs/.config/tool.yml": "name: tool\nversion: 2\nroutes: nope\n",
    }
    for rel, text in staged.items():
        assert files.search(rel), rel
        write_spec(tmp_path / Path(rel).parent, text, Path(rel).name)

    def hook_run(*rels: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*entry, *rels], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    good = hook_run(*staged)
    assert good.returncode == 0, good.stderr
    assert good.stdout == "specs/gpt2.yaml: ok\n" and "labels" not in good.stderr
    write_spec(tmp_path / "specs", "name: x\nroutes: []\n", "broken.yaml")
    failed = hook_run(*staged, "specs/broken.yaml")
    assert failed.returncode == 1
    assert "specs/broken.yaml:2:9: routes:" in failed.stderr
    assert "labels" not in failed.stderr and "k8s" not in failed.stderr


def test_workflow_template_ships_with_the_package() -> None:
    """templates/ goes into the wheel whole (pyproject force-include), init/ with it."""
    text = (ROOT / "pyproject.toml").read_text()
    assert '"templates" = "endpointgen/templates"' in text
    names = {p.name for p in (ROOT / "templates" / "init").iterdir()}
    assert {f"{t}.yaml.jinja" for t in scaffold.TASKS} | {"workflow.yml.jinja"} <= names
