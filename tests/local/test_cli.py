"""The command line: exit codes and text through CliRunner, and each command once for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, SPECS, import_file, write_spec
from typer.testing import CliRunner

from endpointgen import __version__
from endpointgen.cli import app

runner = CliRunner()
GPT2 = str(SPECS / "gpt2.yaml")


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "endpointgen", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def no_modal_token(tmp_path: Path) -> dict[str, str]:
    """An environment in which Modal finds no credentials at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODAL_")}
    env["HOME"] = str(tmp_path)
    env["MODAL_CONFIG_PATH"] = str(tmp_path / "modal.toml")
    return env


def test_validate_ok_and_failing(tmp_path: Path) -> None:
    ok = runner.invoke(app, ["validate", GPT2, str(SPECS / "minilm.yaml")])
    assert ok.exit_code == 0, ok.output
    assert f"{GPT2}: ok" in ok.output
    bad = write_spec(tmp_path, "name: x\nroutes:\n  - {path: /h, action: helth}\n")
    result = runner.invoke(app, ["validate", GPT2, str(bad)])
    assert result.exit_code == 1
    assert f"{bad}:3:24: routes[0].action: 'helth' is not one of" in result.output
    assert "did you mean 'health'?" in result.output


def test_build_writes_then_check_passes_then_detects_drift(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = runner.invoke(app, ["build", GPT2, "-o", str(out)])
    assert first.exit_code == 0, first.output
    module = out / "gpt2.py"
    source = module.read_text()
    assert runner.invoke(app, ["build", "--check", GPT2, "-o", str(out)]).exit_code == 0
    module.write_text(source + "# local edit\n")
    drift = runner.invoke(app, ["build", "--check", GPT2, "-o", str(out)])
    assert drift.exit_code == 1
    assert "out of date" in drift.output
    assert module.read_text() == source + "# local edit\n", "--check must write nothing"
    module.unlink()
    missing = runner.invoke(app, ["build", "--check", GPT2, "-o", str(out)])
    assert missing.exit_code == 1 and "missing" in missing.output
    assert not module.exists()


def test_build_with_an_environment_overlay(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`environments`): `--env NAME` deep-merges the overlay over the base:
    mappings key by key (scaling keeps the base's max_containers), values replace (gpu); a name
    the spec does not define is an error."""
    spec = write_spec(
        tmp_path,
        """\
        name: app
        gpu: T4
        scaling: {max_containers: 2}
        routes:
          - {path: /health, action: health}
        environments:
          prod:
            gpu: [h100, a100-80gb]
            scaling: {min_containers: 1}
        """,
    )
    base = runner.invoke(app, ["build", str(spec), "-o", str(tmp_path / "base")])
    prod = runner.invoke(app, ["build", str(spec), "-o", str(tmp_path / "prod"), "--env", "prod"])
    assert base.exit_code == prod.exit_code == 0
    base_app = import_file(tmp_path / "base" / "app.py")
    prod_app = import_file(tmp_path / "prod" / "app.py")
    assert base_app.web.info().gpus == [("T4", 1)]
    assert prod_app.web.info().gpus == [("H100", 1), ("A100-80GB", 1)]
    base_src = (tmp_path / "base" / "app.py").read_text()
    prod_src = (tmp_path / "prod" / "app.py").read_text()
    assert "min_containers" not in base_src and "max_containers=2" in base_src
    assert "min_containers=1" in prod_src and "max_containers=2" in prod_src
    unknown = runner.invoke(app, ["build", str(spec), "--env", "staging"])
    assert unknown.exit_code == 1
    assert "no environment named 'staging' (environments: prod)" in unknown.output


def test_schema_is_the_checked_in_file() -> None:
    result = runner.invoke(app, ["schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["additionalProperties"] is False
    assert "routes" in schema["required"]
    checked_in = (ROOT / "schema" / "endpointgen.schema.json").read_text()
    assert result.output == checked_in, "run `make schema`"


def test_deploy_dry_run_runs_nothing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["deploy", GPT2, "--dry-run", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "would run:" in result.output
    assert "-m modal deploy" in result.output and "--name gpt2" in result.output
    assert "compares the spec with its text at git HEAD (not with what runs on Modal)" in (
        result.output
    )
    assert list(tmp_path.iterdir()) == [], "a dry run writes nothing"


@pytest.mark.slow
def test_deploy_without_a_modal_token_fails_clearly(tmp_path: Path) -> None:
    started = time.monotonic()
    result = run_cli("deploy", GPT2, "-o", str(tmp_path / "out"), env=no_modal_token(tmp_path))
    assert time.monotonic() - started < 60
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "error: modal deploy failed:" in output
    assert "Token missing" in output
    assert "Traceback" not in output


@pytest.mark.parametrize("command", ["validate", "build"])
def test_commands_as_real_processes(command: str, tmp_path: Path) -> None:
    args = [command, GPT2] + (["-o", str(tmp_path)] if command == "build" else [])
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    evil = "name: !!python/object/apply:os.system ['echo pwned']\n"
    bad = write_spec(tmp_path, evil, name="evil.yaml")
    result = run_cli(command, str(bad))
    assert result.returncode == 1
    assert "pwned" not in result.stdout
    assert "Traceback" not in result.stderr
    assert (
        f"{bad}:1:7: name: YAML tag !!python/object/apply:os.system is not allowed" in result.stderr
    )


def test_schema_and_version_as_real_processes() -> None:
    assert json.loads(run_cli("schema").stdout)["title"] == "endpointgen spec"
    assert run_cli("--version").stdout.strip() == f"endpointgen {__version__}"


def test_validate_and_build_do_not_import_heavy_modules() -> None:
    """The command (`console.main`, the typer app inside) imports no model or web stack
    for `build`, and not rich: typer prints help and errors without it."""
    code = (
        "import sys; from endpointgen.console import main; "
        f"sys.argv=['endpointgen','build','--check',{GPT2!r},'-o','tests/golden']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'transformers', 'modal', 'fastapi', 'uvicorn', 'rich')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_validate_and_build_as_real_processes_print_each_line_where_it_belongs(
    tmp_path: Path,
) -> None:
    """Every way CI and pre-commit write `validate` and `build` (options before or after
    the files, `--out=DIR`, `--`, `-e`), as the command prints it: the exit status, results
    on stdout, problems, warnings and the advice for stale modules on stderr, a usage
    error as typer words it (exit 2). Each line is given by how it starts."""
    bad = write_spec(tmp_path, {"name": "bad", "routes": [{"path": "x", "action": "nope"}]})
    out, empty, missing = tmp_path / "out", tmp_path / "empty", tmp_path / "missing.yaml"
    built = [f"{GPT2} -> {out / 'gpt2.py'}"]
    warned = [f"{GPT2}:5:7: model.id: warning: no `revision`: each cold start asks the Hub"]
    wrong = [
        f"{bad}:3:9: routes[0].path: 'x' is not a valid route path: start with '/'",
        f"{bad}:4:11: routes[0].action: 'nope' is not one of health, generate,",
    ]
    cases: list[tuple[list[str], int, list[str], list[str]]] = [
        (["validate", GPT2], 0, [f"{GPT2}: ok"], warned),
        (["validate", GPT2, str(bad)], 1, [f"{GPT2}: ok"], warned + wrong),
        (["validate", str(missing)], 1, [], [f"{missing}:1:1: no such file"]),
        (["build", GPT2, "-o", str(out)], 0, built, []),
        (["build", "--out", str(out), GPT2], 0, built, []),
        (["build", f"--out={out}", "--check", GPT2], 0, [f"{out / 'gpt2.py'}: up to date"], []),
        (
            ["build", "--check", "-o", str(empty), GPT2],
            1,
            [],
            [f"{empty / 'gpt2.py'}: missing ({GPT2})", "run `endpointgen build` and commit"],
        ),
        (["build", GPT2, "-o", str(out), "--env", "prod"], 0, built, []),
        (
            ["build", GPT2, "-o", str(out), "-e", "staging"],
            1,
            [],
            [f"error: {GPT2}: no environment named 'staging' (environments: prod)"],
        ),
        (["build", str(bad), "-o", str(out)], 1, [], wrong),
        (["build", "-o", str(out), "--", GPT2], 0, built, []),
        (
            ["validate", "--only-specs", GPT2, str(bad), str(tmp_path)],
            1,
            [f"{GPT2}: ok"],
            [*warned, *wrong, f"{tmp_path}:1:1: is a directory, not a spec file"],
        ),
        (
            ["validate", "--bogus", GPT2],
            2,
            [],
            ["Usage: ", "Try '", "", "Error: No such option: --bogus"],
        ),
        (["build", GPT2, "-o"], 2, [], ["Error: Option '-o' requires an argument."]),
    ]
    for args, status, stdout, stderr in cases:
        done = run_cli(*args, cwd=ROOT)
        assert done.returncode == status, (args, done.stderr)
        assert done.stdout.splitlines() == stdout, args
        lines = done.stderr.splitlines()
        assert len(lines) == len(stderr), (args, lines)
        starts = zip(lines, stderr, strict=True)
        assert all(line.startswith(start) for line, start in starts), (args, lines)


def test_a_bug_of_ours_is_one_line_and_a_report_file(tmp_path: Path) -> None:
    """An unexpected error in any command: no traceback on screen, one line that says it
    is a bug and where the details are kept for the report."""
    code = (
        "import sys\n"
        "from endpointgen import console\n"
        "from endpointgen.compiler import pipeline\n"
        "def broken(*args, **kwargs):\n"
        "    raise KeyError('routes')\n"
        "pipeline.validate = broken\n"
        "sys.argv = ['endpointgen', 'validate', sys.argv[1]]\n"
        "console.main()\n"
    )
    spec = SPECS / "hello.yaml"
    result = subprocess.run(
        [sys.executable, "-c", code, str(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        timeout=120,
    )
    assert result.returncode == 70
    assert "Traceback" not in result.stdout + result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("endpointgen: internal error (KeyError: 'routes'); this is a bug")
    (report,) = tmp_path.glob("endpointgen-crash-*.txt")
    assert line.endswith(str(report))
    assert "Traceback" in report.read_text() and "def broken" not in line


def test_validate_warns_about_what_a_valid_spec_does_on_modal(tmp_path: Path) -> None:
    """Not errors: the spec is valid, exit 0; each warning points at its line."""
    spec = write_spec(
        tmp_path,
        """\
        name: app
        model: {id: org/model, task: embeddings}
        resources: {timeout: 600}
        auth: {mode: bearer, secret: app-keys}
        routes:
          - {path: /embed, method: POST, action: embed}
        """,
    )
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 0, result.output
    assert f"{spec}: ok" in result.output
    assert (
        f"{spec}:2:13: model.id: warning: no `revision`: each cold start asks the Hub for the "
        "latest `main`; pin a revision to deploy what was tested"
    ) in result.output
    assert (
        f"{spec}:3:22: resources.timeout: warning: Modal answers a web request that runs past "
        "150 s with a redirect the client must follow; keep routes below that, or stream"
    ) in result.output
    pinned = spec.read_text().replace("task: embeddings", "task: embeddings, revision: v1")
    spec.write_text(pinned.replace("timeout: 600", "timeout: 120"))
    quiet = runner.invoke(app, ["validate", str(spec)])
    assert quiet.exit_code == 0 and "warning" not in quiet.output
