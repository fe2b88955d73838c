"""GitOps as a platform team runs it: environments through every command, removed apps,
code changes in plans, merge gates, and non-spec YAML beside the specs. Each scenario
runs against a real git repository made in the test."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from repos import Repo
from typer.testing import CliRunner

from endpointgen.cli import app

runner = CliRunner()

EMBED = """\
    name: embeddings
    model: {id: sentence-transformers/all-MiniLM-L6-v2, task: embeddings, revision: v1}
    gpu: A10
    auth: {mode: api_key, secret: embeddings-keys}
    routes:
      - {path: /embed, method: POST, action: embed}
    environments:
      prod:
        gpu: H100:4
        scaling: {min_containers: 1}
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


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(tmp_path)
    made = Repo(tmp_path)
    made.write("specs/embeddings.yaml", EMBED)
    made.write("specs/hello.yaml", HELLO)
    made.write("specs/handled.yaml", HANDLED)
    made.write("specs/handlers/run.py", "def run(body):\n    return {'ok': True}\n")
    made.write("specs/data/labels.yaml", "labels: [cat, dog]\n")  # not a spec
    made.commit("three apps", tag="v1")
    return made


def plan_json(*args: str) -> dict:
    done = runner.invoke(app, ["plan", "specs", "--base", "v1", "--format", "json", *args])
    assert done.exit_code == 0, done.output
    return json.loads(done.output)


def test_env_goes_through_plan_and_specs_without_the_overlay_use_their_base(repo: Repo) -> None:
    """GitOps 1: moving the prod overlay from 1xA10 to 4xH100 always-on is planned as a
    change under `--env prod`; specs with no prod overlay plan (and build) as their base."""
    text = (repo.root / "specs/embeddings.yaml").read_text().replace("H100:4", "H100:8")
    repo.write("specs/embeddings.yaml", text)
    (spec,) = plan_json("--env", "prod")["specs"]
    gpu = [c for c in spec["changes"] if c["what"] == "GPU"]
    assert gpu and gpu[0]["before"] == "H100:4" and gpu[0]["after"] == "H100:8"
    assert spec["estimated_cost"]["after"]["always_on"][0] > 0
    (base,) = plan_json()["specs"]  # the overlay's edit changes nothing of the base
    assert [c for c in base["changes"] if c["area"] != "app"] == [], base["changes"]
    for command in (
        ["check", "specs", "--env", "prod", "-o", "out"],
        ["list", "specs", "--env", "prod"],
    ):
        done = runner.invoke(app, command)
        assert "no environment named" not in done.output, done.output
    built = runner.invoke(
        app, ["build", "specs/hello.yaml", "specs/embeddings.yaml", "--env", "prod", "-o", "prod"]
    )
    assert built.exit_code == 0, built.output
    assert '"H100:8"' in (repo.root / "prod/embeddings.py").read_text()
    typo = runner.invoke(app, ["list", "specs", "--env", "prdo"])
    assert typo.exit_code == 1 and "no spec defines environment 'prdo'" in typo.output


def test_a_removed_spec_is_a_loud_warning_with_the_stop_command(repo: Repo) -> None:
    (repo.root / "specs/hello.yaml").unlink()
    (spec,) = plan_json()["specs"]
    assert spec["status"] == "removed"
    assert spec["warnings"] == [
        "WARNING: app removed: 'hello' keeps running, and billing, until it is stopped: "
        "`modal app stop hello` (or `endpointgen deploy --prune`)"
    ]
    gated = runner.invoke(app, ["plan", "specs", "--base", "v1", "--fail-on", "removed-app"])
    assert gated.exit_code == 1 and "--fail-on: specs/hello.yaml: app 'hello' is removed" in (
        gated.output
    )


def test_a_git_mv_under_the_same_name_is_one_change(repo: Repo) -> None:
    (repo.root / "specs/apps").mkdir()
    repo.git("mv", "specs/hello.yaml", "specs/apps/hello.yaml")
    plans = plan_json()["specs"]
    assert [(p["file"], p["status"]) for p in plans] == [("specs/apps/hello.yaml", "unchanged")]
    assert plans[0]["notes"][0] == "moved from specs/hello.yaml (same app)"


def stand_in_modal(tmp_path: Path) -> Path:
    """A `modal` that records its arguments, one call per line, and succeeds."""
    log = tmp_path / "modal-calls.txt"
    script = tmp_path / "modal"
    script.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "ok"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


def test_deploy_prune_stops_only_apps_whose_spec_was_removed(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitOps 2: `deploy --prune` stops `hello` (its spec deleted), with `--yes` (a runner
    cannot answer modal's prompt), after the deploys, and nothing else: not the app moved
    under the same name, and never an app no spec here named."""
    (tmp_path / "bin").mkdir()
    log = stand_in_modal(tmp_path / "bin")
    monkeypatch.setenv("ENDPOINTGEN_MODAL", str(tmp_path / "bin" / "modal"))
    (repo.root / "specs/hello.yaml").unlink()
    (repo.root / "specs/apps").mkdir()
    repo.git("mv", "specs/handled.yaml", "specs/apps/handled.yaml")
    repo.write("specs/apps/handlers/run.py", "def run(body):\n    return {'ok': True}\n")
    repo.commit("remove hello, move handled")
    done = runner.invoke(
        app, ["deploy", "specs", "--prune", "--base", "v1", "--modal-env", "prod", "-o", "out"]
    )
    assert done.exit_code == 0, done.output
    calls = log.read_text().splitlines()
    assert calls[-1] == "app stop hello --yes --env prod"
    deployed = sorted(c.split()[-3] for c in calls if c.startswith("deploy"))
    assert deployed == ["embeddings", "handled"]
    assert not [c for c in calls if "stop" in c and "hello" not in c]
    dry = runner.invoke(app, ["deploy", "specs", "--prune", "--base", "v1", "--dry-run"])
    assert "would run:" in dry.output and "app stop hello" in dry.output
    assert len(log.read_text().splitlines()) == len(calls), "a dry run calls nothing"


def test_a_handler_only_change_is_in_the_plan(repo: Repo) -> None:
    """GitOps 3: a PR that only edits a handler is not "no spec changed"."""
    repo.write("specs/handlers/run.py", "def run(body):\n    return {'ok': False}\n")
    (spec,) = plan_json()["specs"]
    assert spec["file"] == "specs/handled.yaml" and spec["status"] == "changed"
    assert {"area": "code", "what": "file specs/handlers/run.py", "kind": "changed"}.items() <= (
        spec["changes"][0].items()
    )


def test_plan_gates_a_merge(repo: Repo) -> None:
    """GitOps 4: a required check can fail on what a change does."""
    text = (repo.root / "specs/embeddings.yaml").read_text()
    repo.write("specs/embeddings.yaml", text.replace("gpu: A10\n", "gpu: H100\n", 1))
    cheap = runner.invoke(app, ["plan", "specs", "--base", "v1", "--fail-on", "cost-increase>500%"])
    assert cheap.exit_code == 0, cheap.output
    costly = runner.invoke(app, ["plan", "specs", "--base", "v1", "--fail-on", "cost-increase>50%"])
    assert costly.exit_code == 1
    assert "estimated cost up" in costly.output and "(gate cost-increase>50%)" in costly.output
    repo.write("specs/hello.yaml", HELLO.replace("name: hello", "name: hello2"))
    renamed = runner.invoke(app, ["plan", "specs", "--base", "v1", "--fail-on", "renamed-app"])
    assert renamed.exit_code == 1
    unknown = runner.invoke(app, ["plan", "specs", "--base", "v1", "--fail-on", "costs"])
    assert unknown.exit_code == 1 and "unknown gate 'costs'" in unknown.output
    head = runner.invoke(app, ["plan", "specs", "--base", "HEAD", "--fail-on", "costs"])
    assert head.exit_code == 1 and "unknown gate 'costs'" in head.output, "even with no change"
    assert plan_json()["warnings"], "the JSON carries the warnings"


def test_yaml_that_is_not_a_spec_is_not_one(repo: Repo) -> None:
    """GitOps 5: `specs/data/labels.yaml` is data: no folder command reads it as a spec."""
    assert (
        runner.invoke(
            app,
            [
                "build",
                "specs/hello.yaml",
                "specs/embeddings.yaml",
                "specs/handled.yaml",
                "-o",
                "build",
            ],
        ).exit_code
        == 0
    )
    done = runner.invoke(app, ["check", "specs", "-o", "build"])
    assert done.exit_code == 0, done.output
    listed = runner.invoke(app, ["list", "specs"])
    assert "labels" not in listed.output and listed.exit_code == 0
    repo.write("specs/data/labels.yaml", "labels: [cat, dog, bird]\n")
    assert plan_json()["specs"] == []


def test_an_invalid_overlay_is_not_a_left_over_module(repo: Repo) -> None:
    """GitOps 7: when only an overlay breaks, `check` says so, not "delete the module"."""
    runner.invoke(
        app,
        ["build", "specs/hello.yaml", "specs/embeddings.yaml", "specs/handled.yaml", "-o", "build"],
    )
    text = (repo.root / "specs/embeddings.yaml").read_text()
    repo.write("specs/embeddings.yaml", text.replace("gpu: H100:4", "gpu: H900"))
    done = runner.invoke(app, ["check", "specs", "-o", "build"])
    assert done.exit_code == 1
    assert "environments.prod.gpu: unknown GPU 'H900'" in done.output
    assert "delete it" not in done.output


def test_handler_files_must_stay_in_the_specs_folder(repo: Repo) -> None:
    repo.write("outside.py", "def run(body):\n    return body\n")
    repo.write("specs/handled.yaml", HANDLED.replace("handlers/run.py", "../outside.py"))
    done = runner.invoke(app, ["validate", "specs/handled.yaml"])
    assert done.exit_code == 1
    assert "../outside.py leads out of the spec's folder" in done.output
    (repo.root / "specs/link.py").symlink_to(repo.root / "outside.py")  # links resolve
    repo.write("specs/handled.yaml", HANDLED.replace("handlers/run.py", "link.py"))
    linked = runner.invoke(app, ["validate", "specs/handled.yaml"])
    assert linked.exit_code == 1 and "link.py leads out of the spec's folder" in linked.output


def test_diff_shows_prod_against_dev_for_one_spec(repo: Repo) -> None:
    done = runner.invoke(app, ["diff", "specs/embeddings.yaml", "base", "prod", "-f", "json"])
    assert done.exit_code == 0, done.output
    (spec,) = json.loads(done.output)["specs"]
    gpu = next(c for c in spec["changes"] if c["what"] == "GPU")
    assert (gpu["before"], gpu["after"]) == ("A10", "H100:4")
    assert spec["estimated_cost"]["after"]["always_on"][0] > 0
    assert spec["estimated_cost"]["before"]["always_on"][0] == 0
    missing = runner.invoke(app, ["diff", "specs/embeddings.yaml", "dev", "prod"])
    assert missing.exit_code == 1 and "no environment named 'dev'" in missing.output


def test_list_shows_each_model_of_a_models_spec() -> None:
    """Issue "The docs are a promise", item 7: not "none" and "CPU"."""
    from conftest import SPECS

    done = runner.invoke(app, ["list", str(SPECS)])
    line = next(ln for ln in done.output.splitlines() if "multi.yaml" in ln)
    assert "writer: gpt2 (text-generation)" in line and "writer: L4; embedder: T4" in line


def test_a_new_endpointgen_that_changes_built_modules_is_in_the_plan(repo: Repo) -> None:
    """GitOps 3: modules built by another endpointgen version, committed at the base,
    that this version builds differently: the plan says so, even with no spec change."""
    assert runner.invoke(app, ["build", "specs/hello.yaml", "-o", "build"]).exit_code == 0
    module = repo.root / "build/hello.py"
    from endpointgen import __version__

    old = module.read_text().replace(f"endpointgen {__version__}", "endpointgen 0.1.0", 1)
    module.write_text(old.replace("return web", "return web  # built by the old version"))
    repo.commit("modules built by 0.1.0", tag="v2")
    done = runner.invoke(app, ["plan", "specs", "--base", "v2", "--format", "json"])
    (spec,) = json.loads(done.output)["specs"]
    assert spec["file"] == "specs/hello.yaml" and spec["status"] == "changed"
    (change,) = spec["changes"]
    assert change["what"] == "built module build/hello.py"
    assert (change["before"], change["after"]) == (
        "endpointgen 0.1.0",
        f"endpointgen {__version__}",
    )
