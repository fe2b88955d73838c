"""GitOps details a user meets in a specs folder: how a plan words a handler change, and
which YAML files under specs/ the folder commands (and `validate --only-specs`) treat
as specs. Each runs the CLI in a real git repository made in the test."""

from __future__ import annotations

import json
from pathlib import Path
from textwrap import dedent

import pytest
from repos import Repo
from typer.testing import CliRunner

from endpointgen.cli import app

runner = CliRunner()

HANDLED = """\
    name: handled
    routes:
      - {path: /run, method: POST, action: handler, handler: handlers/run.py:run}
    """
HELLO = """\
    name: hello
    routes:
      - {path: /hello, action: respond, response: {ok: true}}
    """
K8S = """\
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web}
    spec:
      replicas: 2
    ---
    apiVersion: v1
    kind: Service
    metadata: {name: web}
    spec:
      ports: [{port: 80}]
    """
CLOUDFORMATION = """\
    AWSTemplateFormatVersion: "2010-09-09"
    Parameters:
      Name: {Type: String}
    Resources:
      Bucket:
        Type: AWS::S3::Bucket
        Properties:
          BucketName: !Ref Name
    Outputs:
      Arn:
        Value: !GetAtt Bucket.Arn
      Joined:
        Value: !Join ["-", [!Ref Name, logs]]
    """
TAGGED = """\
    settings: !include settings.yaml
    loader: !!python/name:os.system
    values: !!python/object/apply:os.getcwd []
    """


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(tmp_path)
    made = Repo(tmp_path)
    made.write("specs/handled.yaml", HANDLED)
    made.write("specs/handlers/run.py", "def run(body):\n    return {'ok': True}\n")
    made.write("specs/hello.yaml", HELLO)
    made.commit("two apps", tag="v1")
    return made


def plan(fmt: str) -> str:
    done = runner.invoke(app, ["plan", "specs", "--base", "v1", "--format", fmt])
    assert done.exit_code == 0, done.output
    return done.output


def test_a_handler_change_reads_as_changed_in_every_plan_format(repo: Repo) -> None:
    """A plan words an edited handler as `file ... changed`, never `None -> None`."""
    repo.write("specs/handlers/run.py", "def run(body):\n    return {'ok': False}\n")
    table = plan("table")
    assert "specs/handled.yaml: app 'handled' changed against v1" in table
    assert any(
        line.split() == ["code", "file", "specs/handlers/run.py", "changed"]
        for line in table.splitlines()
    ), table
    markdown = plan("markdown")
    assert "| code | file specs/handlers/run.py changed |" in markdown.splitlines(), markdown
    as_json = plan("json")
    (spec,) = json.loads(as_json)["specs"]
    assert spec["changes"] == [
        {
            "area": "code",
            "kind": "changed",
            "what": "file specs/handlers/run.py",
            "before": None,
            "after": None,
        }
    ]
    for text in (table, markdown, as_json):
        assert "None" not in text, text


def write_other_yaml(repo: Repo) -> None:
    repo.write("specs/deploy/k8s.yaml", K8S)
    repo.write("specs/infra/stack.yml", CLOUDFORMATION)
    repo.write("specs/tagged.yaml", TAGGED)
    repo.write("specs/.old/legacy.yaml", HELLO.replace("hello", "legacy"))  # hidden folder


def test_other_tools_yaml_beside_the_specs_is_skipped(repo: Repo) -> None:
    """docs/spec.md, GitOps: a Kubernetes manifest (several documents) and
    CloudFormation (`!Ref`, `!GetAtt`) or `!include` and `!!python/...` tags under
    specs/ are not specs, nor is a spec in a hidden folder: `check`, `list` and `plan`
    read only the specs."""
    write_other_yaml(repo)
    built = runner.invoke(app, ["build", "specs/handled.yaml", "specs/hello.yaml", "-o", "build"])
    assert built.exit_code == 0, built.output
    checked = runner.invoke(app, ["check", "specs", "-o", "build"])
    assert checked.exit_code == 0, checked.output
    listed = runner.invoke(app, ["list", "specs"])
    assert listed.exit_code == 0, listed.output
    files = {line.split()[0] for line in listed.output.splitlines() if line.startswith("specs/")}
    assert files == {"specs/handled.yaml", "specs/hello.yaml"}, listed.output
    assert json.loads(plan("json"))["specs"] == []  # new files, none of them a spec
    repo.commit("other tools' YAML", tag="v2")
    (repo.root / "specs/deploy/k8s.yaml").unlink()  # removed: not an app removed
    done = runner.invoke(app, ["plan", "specs", "--base", "v2", "--format", "json"])
    assert done.exit_code == 0 and json.loads(done.output)["specs"] == [], done.output


def test_a_broken_spec_is_still_a_spec(repo: Repo) -> None:
    """A syntax error, a spec with a tag YAML does not define, and a spec followed by a
    second document are each reported by `check`, with file:line:col, not skipped."""
    write_other_yaml(repo)
    runner.invoke(app, ["build", "specs/handled.yaml", "specs/hello.yaml", "-o", "build"])
    repo.write("specs/syntax.yaml", "name: syntax\nroutes:\n  - {path: /a, action: echo\n")
    repo.write("specs/tagged-spec.yaml", "name: tagged\nversion: !Ref Version\nroutes: []\n")
    repo.write("specs/two.yaml", dedent(HELLO).replace("hello", "two") + "---\nextra: 1\n")
    done = runner.invoke(app, ["check", "specs", "-o", "build"])
    assert done.exit_code == 1
    found = {line.split(":")[0] for line in done.output.splitlines() if line.startswith("specs/")}
    assert found == {"specs/syntax.yaml", "specs/tagged-spec.yaml", "specs/two.yaml"}, done.output
    lines = done.output.splitlines()
    syntax = next(line for line in lines if line.startswith("specs/syntax.yaml:"))
    assert syntax.split(":")[1:3] == ["4", "1"], syntax
    tagged = next(line for line in lines if line.startswith("specs/tagged-spec.yaml:"))
    assert tagged.startswith("specs/tagged-spec.yaml:2:10:"), tagged
    two = next(line for line in lines if line.startswith("specs/two.yaml:"))
    assert two.startswith("specs/two.yaml:4:1:") and "---" in two, two
