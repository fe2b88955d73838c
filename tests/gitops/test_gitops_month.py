"""GitOps on a runner: a month of pushes and pull requests through the workflow that
`init --gitops` wrote, run as GitHub runs it.

Each job's steps are read from the workflow file. `run:` steps run with `bash -e` in a
fresh clone of an `origin` (a bare repository: `actions/checkout` with `fetch-depth: 0`
is a clone, tags included), with the step's `env:` and GitHub's expressions filled in.
The `pip install` step is the one step left out: its requirement is tested on its own
(tests/gitops/test_install.py); here the endpointgen under test is the one on PATH. `modal` is a
stand-in that records each call and keeps which apps each Modal environment runs, saying
what Modal says for an app it does not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from endpointgen.gitops import config, workspace

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent

STAND_IN = """\
#!{python}
import json, os, sys
from pathlib import Path

args = sys.argv[1:]
Path(os.environ["MODAL_LOG"]).open("a").write(json.dumps(args) + "\\n")
state_file = Path(os.environ["MODAL_STATE"])
state = json.loads(state_file.read_text()) if state_file.is_file() else {{}}
env = args[args.index("--env") + 1] if "--env" in args else "main"
apps = state.setdefault(env, {{}})
if args[0] == "deploy":
    name = args[args.index("--name") + 1]
    if name in os.environ.get("MODAL_FAIL", "").split(","):
        print("Building image im-123...")
        print("Error: Image build for im-123 failed. See build logs for more details.")
        sys.exit(1)
    apps[name] = "deployed"
    print(f"✓ Created web function web => https://team-{{env}}--{{name}}-web.modal.run")
    print(f"✓ App deployed! View Deployment: https://modal.com/apps/team/{{env}}/{{name}}")
elif args[:2] == ["app", "stop"]:
    name = args[2]
    if "--yes" not in args:
        print(f"Are you sure you want to stop App '{{name}}'? [y/N]: ")
        print("Aborted.")
        sys.exit(1)
    if name not in apps:
        print(f"Error: No App with name '{{name}}' found in the '{{env}}' environment.")
        sys.exit(1)
    if apps[name] == "stopped":
        sys.exit("App is already stopped.")
    apps[name] = "stopped"
elif args[:2] == ["app", "list"]:
    rows = [{{"app_id": "ap-1", "description": n, "state": s}} for n, s in apps.items()]
    print(json.dumps(rows))
else:
    sys.exit(f"the stand-in does not know {{args}}")
state_file.write_text(json.dumps(state))
"""

EMBED = """\
name: embed
model: {id: sentence-transformers/all-MiniLM-L6-v2, task: embeddings, revision: v1}
gpu: A10
auth: {mode: api_key, secret: embed-keys}
routes:
  - {path: /embed, method: POST, action: embed}
environments:
  prod:
    gpu: L4
"""
HELLO = """\
name: hello
routes:
  - {path: /hello, action: respond, response: {ok: true}}
"""
HANDLED = """\
name: handled
routes:
  - {path: /run, method: POST, action: handler, handler: handlers/run.py:run}
"""
K8S = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: labels}
data: {a: b}
---
apiVersion: v1
kind: Service
metadata: {name: labels}
"""


class Runner:
    """GitHub, as far as the workflow's `run:` steps can tell: an origin, a clone per job,
    the event's expressions, and a stand-in `modal`."""

    def __init__(self, root: Path, workflow: dict[str, Any]) -> None:
        self.root = root
        self.workflow = workflow
        self.origin = root / "origin.git"
        self.log = root / "modal-calls.jsonl"
        self.state = root / "modal-state.json"
        self.fail: set[str] = set()
        self.runs = 0
        self.outputs: dict[str, str] = {}
        subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(self.origin)], check=True)
        modal = root / "bin" / "modal"
        modal.parent.mkdir()
        modal.write_text(STAND_IN.format(python=sys.executable))
        modal.chmod(modal.stat().st_mode | stat.S_IEXEC)
        self.modal = modal

    def calls(self) -> list[str]:
        """Every `modal` call since the last look, as a command line."""
        if not self.log.is_file():
            return []
        lines = [" ".join(json.loads(line)) for line in self.log.read_text().splitlines()]
        self.log.unlink()
        return lines

    def running(self, env: str) -> dict[str, str]:
        state = json.loads(self.state.read_text()) if self.state.is_file() else {}
        apps: dict[str, str] = state.get(env, {})
        return apps

    def job(self, name: str, event: dict[str, str], ref: str) -> subprocess.CompletedProcess[str]:
        """Run job `name` at commit or branch `ref`: its `run:` steps in order, each with
        `bash -e`, until one fails (what GitHub does without `if: always()`)."""
        self.runs += 1
        clone = self.root / f"run-{self.runs}-{name}"
        subprocess.run(["git", "clone", "-q", str(self.origin), str(clone)], check=True)
        subprocess.run(["git", "checkout", "-q", ref], cwd=clone, check=True)
        sha = git(clone, "rev-parse", "HEAD")
        context = {"github.sha": sha, **event}
        summary = self.root / f"summary-{self.runs}.md"
        done = subprocess.CompletedProcess[str]([], 0, "", "")
        failed = False
        for step in self.workflow["jobs"][name]["steps"]:
            if "run" not in step or step["run"].startswith("pip install"):
                continue
            condition = str(step.get("if", ""))
            if failed and "always()" not in condition:
                continue
            env = {
                **os.environ,
                "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                "ENDPOINTGEN_MODAL": str(self.modal),
                "MODAL_LOG": str(self.log),
                "MODAL_STATE": str(self.state),
                "MODAL_FAIL": ",".join(self.fail),
                "GITHUB_STEP_SUMMARY": str(summary),
                "GIT_CONFIG_GLOBAL": os.devnull,
                "HF_HUB_OFFLINE": "1",
            }
            context["steps.check.outcome"] = "failure" if failed else "success"
            env |= {k: expression(str(v), context) for k, v in step.get("env", {}).items()}
            ran = subprocess.run(
                ["bash", "-e", "-c", step["run"]],
                cwd=clone,
                env=env,
                capture_output=True,
                text=True,
            )
            done = subprocess.CompletedProcess(
                ran.args,
                ran.returncode or done.returncode,
                done.stdout + ran.stdout,
                done.stderr + ran.stderr,
            )
            failed = failed or ran.returncode != 0
        self.clone = clone
        return done

    def push(self, jobs: list[str], full: bool = False) -> dict[str, int]:
        """A push to main (or a run by hand, `full`): the deploy jobs in order, each only
        when the one it needs succeeded. Exit codes by job; a job not run is absent."""
        event = {
            "secrets.MODAL_TOKEN_ID": "ak-test",
            "secrets.MODAL_TOKEN_SECRET": "as-test",
            "inputs.full": "true" if full else "",
        }
        out: dict[str, int] = {}
        for name in jobs:
            needs = self.workflow["jobs"][name].get("needs")
            if needs and out.get(needs) != 0:
                break
            done = self.job(name, event, "main")
            out[name] = done.returncode
            self.outputs[name] = done.stdout + done.stderr
        return out


def expression(text: str, context: dict[str, str]) -> str:
    """GitHub's `${{ ... }}` filled in from `context`; one it does not hold fails the test
    (the workflow grew an expression this replay does not know)."""

    def value(match: re.Match[str]) -> str:
        key = match.group(1).strip()
        assert key in context, f"the replay does not know ${{{{ {key} }}}}"
        return context[key]

    return re.sub(r"\$\{\{(.*?)\}\}", value, text)


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout.strip()


def endpointgen(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [str(BIN / "endpointgen"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


class Project:
    """The platform team's repository: edits, builds the modules, commits, pushes."""

    def __init__(self, root: Path, origin: Path) -> None:
        self.root = root
        git(root, "init", "-q", "-b", "main")
        git(root, "remote", "add", "origin", str(origin))

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text(encoding="utf-8")
        assert old in text, (rel, old)
        path.write_text(text.replace(old, new), encoding="utf-8")

    def push(self, message: str) -> None:
        """Rebuild the modules (what a contributor runs before committing), commit, push."""
        self.rebuild()
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)
        git(self.root, "push", "-q", "origin", "main")

    def specs(self) -> list[str]:
        found = workspace.find_specs(self.root / "specs")
        return [path.relative_to(self.root).as_posix() for path in found]

    def rebuild(self) -> None:
        shutil.rmtree(self.root / "build", ignore_errors=True)
        endpointgen(self.root, "build", *self.specs(), "-o", "build")


@pytest.fixture
def month(tmp_path: Path) -> tuple[Runner, Project]:
    done = subprocess.run(
        [str(BIN / "endpointgen"), "init", "demo", "--gitops", "--previews", "--dir", "project"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote project/.github/workflows/endpointgen.yml" in done.stdout
    text = (tmp_path / "project/.github/workflows/endpointgen.yml").read_text()
    workflow = yaml.safe_load(text)
    runner = Runner(tmp_path, workflow)
    project = Project(tmp_path / "project", runner.origin)
    project.write("specs/embed.yaml", EMBED)
    project.write("specs/hello.yaml", HELLO)
    project.write("specs/handled.yaml", HANDLED)
    project.write("specs/handlers/run.py", "def run(body):\n    return {'ok': True}\n")
    project.write("README.md", "# Our models\n")
    project.push("day 1: four apps")
    return runner, project


DEPLOYS = ["deploy-dev", "deploy-prod"]


def deploy(env: str, module: str, app: str) -> str:
    return f"deploy build/{env}/{module}.py --name {app} --env {env}"


def stop(env: str, app: str) -> str:
    return f"app stop {app} --yes --env {env}"


def test_a_month_of_pushes_deploys_each_change_once_in_each_environment(
    month: tuple[Runner, Project],
) -> None:
    """Issue 28's month, push by push through the deploy jobs' own steps: each exits 0 in
    dev and prod (but the run made to fail), and the `modal` calls are exactly these."""
    runner, project = month
    everything = ["demo", "embed", "handled", "hello"]

    # Day 1: nothing recorded yet, so every app deploys, in both environments.
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [
        *(deploy("dev", app, app) for app in everything),
        *(deploy("prod", app, app) for app in everything),
    ]
    assert (
        git(runner.origin, "tag", "--list") == "endpointgen/deployed/dev\nendpointgen/deployed/prod"
    )

    # A GPU change in the prod overlay of a spec with only a prod overlay: prod redeploys
    # it; dev, where it deploys its base, has nothing to do.
    project.edit("specs/embed.yaml", "gpu: L4", "gpu: H100")
    project.push("embed: H100 in prod")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [deploy("prod", "embed", "embed")]
    assert "nothing to deploy: no spec changed" in runner.outputs["deploy-dev"]

    # A GPU change to its base: dev redeploys it; prod's overlay sets its own GPU.
    project.edit("specs/embed.yaml", "gpu: A10", "gpu: L40S")
    project.push("embed: L40S")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [deploy("dev", "embed", "embed")]

    # A handler-only change redeploys the app that ships it.
    project.write("specs/handlers/run.py", "def run(body):\n    return {'ok': 2}\n")
    project.push("handler: answer 2")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [
        deploy("dev", "handled", "handled"),
        deploy("prod", "handled", "handled"),
    ]

    # A README-only push, and non-spec YAML under specs/: nothing to deploy, exit 0.
    project.write("README.md", "# Our models\n\nSee specs/.\n")
    project.push("readme")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    project.write("specs/data/labels.yaml", "labels: [cat, dog]\n")
    project.write("specs/k8s/labels.yaml", K8S)
    project.write("specs/aws/stack.yaml", "Resources:\n  B: {Type: x, Name: !Ref Env}\n")
    project.push("data beside the specs")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == []

    # A spec removed: its app stops in both environments, with --yes.
    (project.root / "specs/hello.yaml").unlink()
    project.push("retire hello")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [stop("dev", "hello"), stop("prod", "hello")]
    assert runner.running("dev")["hello"] == runner.running("prod")["hello"] == "stopped"

    # A rename in place (`name:`): the new app deploys, then the old one stops.
    project.edit("specs/handled.yaml", "name: handled", "name: runner")
    project.push("handled is now runner")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [
        deploy("dev", "runner", "runner"),
        stop("dev", "handled"),
        deploy("prod", "runner", "runner"),
        stop("prod", "handled"),
    ]

    # A file rename under the same app name: one app, nothing to do.
    (project.root / "specs/models").mkdir()
    git(project.root, "mv", "specs/embed.yaml", "specs/models/embed.yaml")
    project.push("specs/models/")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == []

    # A file rename with a new name: the new app deploys, then the old one stops.
    git(project.root, "mv", "specs/demo.yaml", "specs/chat.yaml")
    project.edit("specs/chat.yaml", 'name: "demo"', "name: chat")
    project.push("demo is now chat")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [
        deploy("dev", "chat", "chat"),
        stop("dev", "demo"),
        deploy("prod", "chat", "chat"),
        stop("prod", "demo"),
    ]

    # A failed run: dev's deploy of chat fails, so dev's record stays and prod never runs.
    project.edit("specs/chat.yaml", "gpu: L4", "gpu: A100")
    project.push("chat: A100")
    runner.fail = {"chat"}
    assert runner.push(DEPLOYS) == {"deploy-dev": 1}, runner.outputs
    assert runner.calls() == [deploy("dev", "chat", "chat")]
    assert "Image build for im-123 failed" in runner.outputs["deploy-dev"]
    # ... and the next push, which changes no spec, deploys the failed change everywhere.
    runner.fail = set()
    project.write("README.md", "# Our models\n\nAsk #ml-platform.\n")
    project.push("readme")
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [deploy("dev", "chat", "chat"), deploy("prod", "chat", "chat")]

    # Run by hand: every app again, and each environment runs exactly the specs' apps.
    assert runner.push(DEPLOYS, full=True) == {"deploy-dev": 0, "deploy-prod": 0}
    now = ["chat", "runner", "embed"]  # in the order of their files
    assert runner.calls() == [
        *(deploy("dev", app, app) for app in now),
        *(deploy("prod", app, app) for app in now),
    ]
    for env in ("dev", "prod"):
        deployed = sorted(a for a, s in runner.running(env).items() if s == "deployed")
        assert deployed == sorted(now), env
    head = git(project.root, "rev-parse", "HEAD")
    for env in ("dev", "prod"):
        assert git(runner.origin, "rev-parse", f"endpointgen/deployed/{env}^{{commit}}") == head


def test_a_stop_that_modal_already_did_is_not_a_failure(month: tuple[Runner, Project]) -> None:
    """A retried run stops what the last one stopped: Modal's "already stopped" and
    "No App with name" count as stopped, any other failure of `app stop` does not."""
    runner, project = month
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}
    runner.calls()
    (project.root / "specs/hello.yaml").unlink()
    project.push("retire hello")
    state = json.loads(runner.state.read_text())
    state["dev"]["hello"] = "stopped"  # someone stopped it by hand
    del state["prod"]["hello"]  # or it never ran there
    runner.state.write_text(json.dumps(state))
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}, runner.outputs
    assert runner.calls() == [stop("dev", "hello"), stop("prod", "hello")]
    assert "hello is not running (already stopped)" in runner.outputs["deploy-dev"]


def test_pull_requests_are_gated_and_say_which_gate(month: tuple[Runner, Project]) -> None:
    """The plan job fails its last step on the gates that init wrote (removed apps,
    renamed apps, public routes, cost up over 50%), after commenting which; an ordinary
    change passes. Nothing in it calls Modal."""
    runner, project = month
    settings = config.load(project.root / config.FILE)
    assert settings.gates == config.DEFAULT_GATES
    assert settings.environments == ("dev", "prod")

    def pull_request(branch: str) -> tuple[int, str]:
        git(project.root, "push", "-q", "origin", branch)
        event = {"github.base_ref": "main", "github.event.pull_request.number": "7"}
        done = runner.job("plan", event, f"origin/{branch}")
        return done.returncode, (runner.clone / "plan.md").read_text()

    git(project.root, "checkout", "-qb", "handler")
    project.write("specs/handlers/run.py", "def run(body):\n    return {'ok': 3}\n")
    project.rebuild()
    git(project.root, "commit", "-qam", "handler")
    status, text = pull_request("handler")
    assert status == 0, text
    assert "file specs/handlers/run.py changed" in text and "Merge gates failed" not in text

    git(project.root, "checkout", "-q", "main")
    git(project.root, "checkout", "-qb", "costly")
    project.edit("specs/embed.yaml", "gpu: L4", "gpu: H100:8")
    (project.root / "specs/hello.yaml").unlink()
    project.rebuild()
    git(project.root, "add", "-A")
    git(project.root, "commit", "-qm", "bigger, and no hello")
    status, text = pull_request("costly")
    assert status == 1
    assert "### Merge gates failed (set in `.endpointgen/gitops.yaml`)" in text
    assert "specs/hello.yaml: app 'hello' is removed (gate removed-app)" in text
    assert "(gate cost-increase>50%)" in text
    assert text.index("# Environment prod") < text.rindex("(gate cost-increase>50%)")
    assert runner.calls() == []


def test_previews_deploy_a_pull_requests_apps_and_stop_when_it_closes(
    month: tuple[Runner, Project],
) -> None:
    """`init --previews`: the preview job deploys each changed app as NAME-pr-7 into dev,
    built under its own name (its own Modal Dicts), and comments their URLs with a plan
    against dev; closing the pull request stops them. A fork's gets no preview job."""
    runner, project = month
    workflow = runner.workflow
    fork_guard = "github.event.pull_request.head.repo.full_name == github.repository"
    assert fork_guard in workflow["jobs"]["preview"]["if"]
    assert fork_guard in workflow["jobs"]["preview-stop"]["if"]
    assert workflow["jobs"]["preview"]["environment"] == "dev"
    git(project.root, "checkout", "-qb", "tune")
    project.edit("specs/hello.yaml", "ok: true", "ok: 1")
    project.rebuild()
    git(project.root, "commit", "-qam", "tune hello")
    git(project.root, "push", "-q", "origin", "tune")
    event = {
        "secrets.MODAL_TOKEN_ID": "ak-test",
        "secrets.MODAL_TOKEN_SECRET": "as-test",
        "github.base_ref": "main",
        "github.event.pull_request.number": "7",
    }
    done = runner.job("preview", event, "origin/tune")
    assert done.returncode == 0, done.stdout + done.stderr
    assert runner.calls() == ["deploy build/previews/hello_pr_7.py --name hello-pr-7 --env dev"]
    module = (runner.clone / "build/previews/hello_pr_7.py").read_text()
    assert 'APP_NAME = "hello-pr-7"' in module
    comment = (runner.clone / "preview.md").read_text()
    assert "https://team-dev--hello-pr-7-web.modal.run" in comment
    assert "# Plan against dev" in comment and "hello" in comment
    assert runner.running("dev") == {"hello-pr-7": "deployed"}

    event["github.event.pull_request.head.sha"] = git(project.root, "rev-parse", "HEAD")
    done = runner.job("preview-stop", event, "origin/tune")
    assert done.returncode == 0, done.stdout + done.stderr
    stops = runner.calls()
    assert stop("dev", "hello-pr-7") in stops
    assert all(c.startswith("app stop ") and c.endswith("-pr-7 --yes --env dev") for c in stops)
    assert runner.running("dev")["hello-pr-7"] == "stopped"


def test_plan_against_deployed_shows_what_each_environment_lacks_and_modal_drift(
    month: tuple[Runner, Project],
) -> None:
    """`plan --against-deployed --env dev` compares with dev's record, not a ref: after a
    failed run it shows the change dev still lacks; with Modal reachable it lists drift
    (an app the specs name that is not deployed, an app still deployed whose spec is gone),
    and without Modal it says it compared with the record only."""
    runner, project = month
    assert runner.push(DEPLOYS) == {"deploy-dev": 0, "deploy-prod": 0}
    runner.calls()
    project.edit("specs/embed.yaml", "gpu: A10", "gpu: L40S")
    (project.root / "specs/hello.yaml").unlink()
    project.push("embed: L40S, no hello")
    runner.fail = {"embed"}
    assert runner.push(DEPLOYS) == {"deploy-dev": 1}
    # The failed run still stopped the removed app (its new spec is not what failed).
    assert runner.calls() == [deploy("dev", "embed", "embed"), stop("dev", "hello")]
    state = json.loads(runner.state.read_text())
    state["dev"]["handled"] = "stopped"  # stopped by hand
    state["dev"]["hello"] = "deployed"  # and deployed again by hand
    runner.state.write_text(json.dumps(state))

    def plan(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(BIN / "endpointgen"),
                "plan",
                "specs",
                "--env",
                "dev",
                "--against-deployed",
                "--config",
                config.FILE,
                *extra,
            ],
            cwd=project.root,
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "ENDPOINTGEN_MODAL": str(runner.modal),
                "MODAL_LOG": str(runner.log),
                "MODAL_STATE": str(runner.state),
            },
        )

    git(project.root, "fetch", "-q", "--tags", "origin")
    done = plan("--format", "json", "--fail-on", "")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    plans = {p["app"]: p["status"] for p in shown["specs"]}
    assert plans == {"embed": "changed", "hello": "removed"}, "what dev still lacks"
    assert shown["drift"] == [
        "DRIFT: specs/handled.yaml names app 'handled', which Modal lists as stopped",
        "DRIFT: app 'hello' is deployed on Modal, and no spec names it now",
    ]
    assert runner.calls() == ["app list --json --env dev"]
    (runner.modal).write_text("#!/bin/sh\necho 'Error: Token missing.' >&2\nexit 1\n")
    table = plan()
    assert "Modal could not be reached (Error: Token missing.); compared with " in table.stdout
    assert table.returncode == 1, "the config's gates apply: hello is removed"
    assert "(gate removed-app)" in table.stderr


def test_gitops_config_mistakes_name_the_file(tmp_path: Path) -> None:
    """A wrong .endpointgen/gitops.yaml is one line naming the file and the key."""
    path = tmp_path / "gitops.yaml"
    for text, message in (
        ("environments: [dev]\ngate: [warning]\n", "unknown key 'gate'"),
        ("gates: [costs]\n", "gates: unknown gate 'costs'"),
        ("environments: dev\n", "environments: a list of names"),
        ("gates: [warning\n", "not valid YAML"),
    ):
        path.write_text(text)
        done = subprocess.run(
            [str(BIN / "endpointgen"), "plan", "specs", "--config", str(path)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode != 0 and f"{path}" in done.stderr and message in done.stderr, (
            text,
            done.stderr,
        )
        assert "Traceback" not in done.stderr


def test_keep_going_lists_what_deployed_after_the_failure_as_deployed(
    month: tuple[Runner, Project],
) -> None:
    """`deploy --keep-going`: when the first app fails and the others go out, the summary
    says they deployed, not that they deployed "before the failure"."""
    runner, project = month
    runner.fail = {"demo"}
    done = subprocess.run(
        [str(BIN / "endpointgen"), "deploy", "specs", "--keep-going", "-o", "out"],
        cwd=project.root,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "ENDPOINTGEN_MODAL": str(runner.modal),
            "MODAL_LOG": str(runner.log),
            "MODAL_STATE": str(runner.state),
            "MODAL_FAIL": "demo",
        },
    )
    assert done.returncode == 1
    assert "deployed: embed, handled, hello\nnot deployed: demo (failed)" in done.stderr
    assert "before the failure" not in done.stderr
