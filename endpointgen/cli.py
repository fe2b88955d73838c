"""The `endpointgen` command: parses arguments, prints, sets exit codes. No logic here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from endpointgen import __version__, console
from endpointgen.errors import EndpointgenError, SpecError
from endpointgen.local import BODY_WITHIN, HEAD_WITHIN

app = typer.Typer(
    name="endpointgen",
    help="Turn a YAML spec into a Modal app that serves an ML model over HTTP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

Specs = Annotated[list[Path], typer.Argument(help="Spec files (YAML).", show_default=False)]
Env = Annotated[
    str | None,
    typer.Option("--env", "-e", help="Merge `environments.NAME` from the spec over its base."),
]


@contextmanager
def _user_errors() -> Iterator[None]:
    """A user's mistake prints as one clear message and exits 1, never a traceback."""
    try:
        yield
    except SpecError as exc:
        for problem in exc.problems:
            _fail(str(problem))
        raise typer.Exit(1) from None
    except EndpointgenError as exc:
        _fail(f"error: {exc}")
        raise typer.Exit(1) from None


def _fail(message: str) -> None:
    console.fail(message)


def _ok(message: str) -> None:
    console.say(message, "green")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"endpointgen {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """Validate, build, serve and deploy specs. Start with `endpointgen validate specs/*.yaml`."""


@app.command()
def validate(specs: Specs) -> None:
    """Check specs, every environment overlay included; one line per problem, exit 1 if any.
    Warnings (what a valid spec does on Modal that may surprise) are printed too."""
    status = console.validate(specs)
    if status:
        raise typer.Exit(status)


@app.command()
def build(
    specs: Specs,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the built modules.")] = Path(
        "build"
    ),
    env: Env = None,
    check: Annotated[
        bool,
        typer.Option("--check", help="Write nothing; exit 1 when a module is missing or stale."),
    ] = False,
) -> None:
    """Write one Modal app module per spec: OUT/<name>.py, the same bytes for the same spec."""
    status = console.build(specs, out, env, check)
    if status:
        raise typer.Exit(status)


@app.command()
def serve(
    spec: Annotated[Path, typer.Argument(help="The spec to serve.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    env: Env = None,
    timeout_headers: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds a request's headers may take to arrive (then 408)."),
    ] = HEAD_WITHIN,
    timeout_body: Annotated[
        float,
        typer.Option(min=0.1, help="Seconds a request's body may take after its headers."),
    ] = BODY_WITHIN,
    volume: Annotated[
        list[str] | None,
        typer.Option(
            help="NAME=DIR: serve a Modal Volume's files (a model's weights) from DIR here."
        ),
    ] = None,
) -> None:
    """Serve the app on this machine with uvicorn, the model loaded once at start.

    Secrets come from this process's environment (for example API_KEYS=key1,key2).
    Connections idle for 5 s between requests are closed.
    """
    from endpointgen.local import serve as local

    for given in volume or []:
        name, _, folder = given.partition("=")
        if not name or not folder:
            _fail(f"error: --volume takes NAME=DIR, not {given!r}")
            raise typer.Exit(2)
        os.environ[f"ENDPOINTGEN_VOLUME_{name}"] = str(Path(folder).resolve())
    with _user_errors():
        local.serve(
            spec,
            host,
            port,
            env,
            say=lambda line: typer.echo(line, err=True),
            head=timeout_headers,
            body=timeout_body,
        )


@app.command()
def deploy(
    specs: Specs,
    env: Env = None,
    modal_env: Annotated[
        str | None, typer.Option("--modal-env", help="The Modal environment to deploy into.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the built modules.")] = Path(
        "build"
    ),
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print each plan and command; write and deploy nothing. The plan compares "
            "with the spec at git HEAD, not with what runs on Modal.",
        ),
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Also stop the apps whose spec (under a folder given) was removed since "
            "--base; never an app no spec of this repository named.",
        ),
    ] = False,
    base: Annotated[
        str,
        typer.Option(
            "--base", "-b", help="With --prune or --changed: the git ref deployed before."
        ),
    ] = "HEAD",
    changed: Annotated[
        bool,
        typer.Option(
            "--changed",
            help="Deploy only the specs that change against --base (text, shipped files).",
        ),
    ] = False,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="Deploy each app on its own: a failure stops no other."),
    ] = False,
    pin: Annotated[
        bool,
        typer.Option(
            "--pin/--no-pin",
            help="Load the commit the Hub's main is now for models without a `revision` "
            "(unpinned where the Hub cannot be reached).",
        ),
    ] = True,
    warm_cache: Annotated[
        bool,
        typer.Option(
            "--warm-cache",
            help="After deploying, run each app's `download` function: the Hub cache Volume "
            "holds the weights before the first cold start.",
        ),
    ] = False,
) -> None:
    """Build every spec (files, or folders of specs), then `modal deploy` each in turn; the
    first failure stops the rest. With --prune, stop the apps whose spec is gone.

    Needs a Modal token (`modal token new`, or MODAL_TOKEN_ID and MODAL_TOKEN_SECRET).
    """
    from endpointgen.gitops import deploy as modal_deploy
    from endpointgen.gitops import workspace

    folders = [s for s in specs if s.is_dir()]
    if prune and not folders:
        _fail("error: --prune needs the folder of specs, to know which were removed")
        raise typer.Exit(2)
    with _user_errors():
        files = [f for s in specs for f in (workspace.find_specs(s) if s.is_dir() else [s])]
        if changed:
            from endpointgen.gitops import gitplan

            moving = {Path(p.file).resolve() for p in gitplan.plan_paths(specs, base, env)}
            files = [f for f in files if f.resolve() in moving]
        removed = modal_deploy.removed_apps(folders, base, env) if prune else []
        targets = modal_deploy.prepare(
            files, out, env, modal_env, write=not dry_run, pin=pin, say=typer.echo
        )
    if dry_run:
        from endpointgen.gitops import gitplan, planview

        typer.echo(
            "dry run: each plan compares the spec with its text at git HEAD (not with what "
            "runs on Modal); nothing is written or deployed\n"
        )
        for target in targets:
            with _user_errors():
                plan = gitplan.plan_for_deploy(target.spec, env)
            _print_plan(planview.as_table([plan], plan.base))
            typer.echo(f"would run: {target.shell}\n")
        for gone in removed:
            command = modal_deploy.stop_command(gone.app, modal_env)
            typer.echo(f"would run: {' '.join(command)}  (its spec {gone.spec} was removed)")
        return
    failed = modal_deploy.stop_all(removed, modal_env, say=typer.echo) if removed else []
    if not targets and not removed:
        typer.echo("nothing to deploy" + (f": no spec changed against {base}" if changed else ""))
    if targets:
        try:
            modal_deploy.deploy_all(targets, say=typer.echo, keep_going=keep_going)
        except modal_deploy.StoppedDeploy as exc:
            _fail(f"error: {exc.reason}")
            for line in exc.summary:
                _fail(line)
            raise typer.Exit(1) from None
        _ok(f"deployed {', '.join(t.app for t in targets)}")
        if warm_cache and modal_deploy.warm_all(targets, modal_env, say=typer.echo):
            _fail("error: the apps are deployed, and their Hub cache could not be filled")
            raise typer.Exit(1)
    if removed:
        stopped = [g.app for g in removed if g.app not in failed]
        if stopped:
            _ok(f"stopped {', '.join(stopped)}")
    if failed:
        _fail(f"error: could not stop {', '.join(failed)}")
        raise typer.Exit(1)


@app.command()
def plan(
    spec: Annotated[
        Path,
        typer.Argument(
            help="A spec, or a folder: every spec under it that changed.", show_default=False
        ),
    ],
    base: Annotated[
        str, typer.Option("--base", "-b", help="The git ref to compare with.")
    ] = "HEAD",
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="table (terminal), markdown (a PR comment) or json.",
        ),
    ] = "table",
    env: Env = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help="Exit 1 when the plan meets one of these (comma-separated): warning, "
            "public-route, removed-app, renamed-app, cost-increase>N% (e.g. 50%).",
        ),
    ] = None,
) -> None:
    """What deploying a spec would change against a git ref, with an hourly cost estimate.

    Routes, auth (a route becoming public is a WARNING), CORS, rate limits, GPU, scaling,
    resources, image packages, the model, and the files the spec ships (handlers, loaders,
    folders); costs are estimates from Modal list prices.
    """
    from endpointgen.gitops import gitplan, planview

    if fmt not in planview.FORMATS:
        _fail(f"error: --format is one of {', '.join(planview.FORMATS)}, not '{fmt}'")
        raise typer.Exit(2)
    with _user_errors():
        if spec.is_dir():
            plans = gitplan.plan_folder(spec, base, env)
        else:
            plans = [gitplan.plan_spec(spec, base, env)]
    with _user_errors():
        failed = gitplan.gate_failures(plans, fail_on) if fail_on else []
    text = planview.render(plans, base, fmt, where=str(spec))
    if fmt == "table":
        _print_plan(text)
    else:
        typer.echo(text, nl=False)
    if failed:
        for reason in failed:
            _fail(f"--fail-on: {reason}")
        raise typer.Exit(1)


@app.command()
def diff(
    spec: Annotated[Path, typer.Argument(help="The spec.", show_default=False)],
    left: Annotated[str, typer.Argument(help="An environment, or `base`.")] = "dev",
    right: Annotated[str, typer.Argument(help="The environment to compare with it.")] = "prod",
    fmt: Annotated[str, typer.Option("--format", "-f", help="table, markdown or json.")] = "table",
) -> None:
    """What one spec deploys differently in RIGHT than in LEFT (default: prod against dev):
    routes, auth, limits, GPU, scaling and the hourly cost estimate."""
    from endpointgen.gitops import gitplan, planview

    if fmt not in planview.FORMATS:
        _fail(f"error: --format is one of {', '.join(planview.FORMATS)}, not '{fmt}'")
        raise typer.Exit(2)
    with _user_errors():
        plan = gitplan.plan_environments(spec, left, right)
    text = planview.render([plan], plan.base, fmt, where=str(spec))
    if fmt == "table":
        _print_plan(text)
    else:
        typer.echo(text, nl=False)


def _print_plan(text: str) -> None:
    for line in text.splitlines():
        if line.startswith("WARNING"):
            typer.secho(line, fg=typer.colors.YELLOW, bold=True)
        else:
            typer.echo(line)


@app.command()
def check(
    folder: Annotated[
        Path, typer.Argument(help="Folder of specs (*.yaml, *.yml, recursively).")
    ] = Path("specs"),
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder of the built modules.")] = Path(
        "build"
    ),
    env: Env = None,
) -> None:
    """One CI step: every spec valid, and every built module in OUT current; exit 1 if not."""
    from endpointgen.gitops import workspace

    with _user_errors():
        problems = workspace.check(folder, out, env)
    for problem in problems:
        _fail(problem)
    if problems:
        count = len(problems)
        _fail(f"{count} problem{'s' if count != 1 else ''}")
        raise typer.Exit(1)
    _ok(f"{folder}: specs valid, modules in {out} current")


@app.command()
def init(
    name: Annotated[
        str, typer.Argument(help="The app name: lowercase letters, digits and '-'.")
    ] = "my-endpoint",
    task: Annotated[
        str,
        typer.Option(help="text-generation, text-classification or embeddings."),
    ] = "text-generation",
    gitops: Annotated[
        bool,
        typer.Option(
            "--gitops",
            help="Also write a GitHub Actions workflow: plan on pull requests, deploy on main.",
        ),
    ] = False,
    folder: Annotated[
        Path, typer.Option("--dir", "-d", help="The project folder to write into.")
    ] = Path("."),
    environments: Annotated[
        str | None,
        typer.Option(
            "--environments",
            help="With --gitops: the environments, in deploy order, comma-separated; each "
            "deploys to the Modal environment of its name, `prod` behind an approval gate. "
            "Asked for when not given and a terminal is attached (default: dev,prod).",
        ),
    ] = None,
) -> None:
    """Start a project: specs/NAME.yaml that validates and builds, its schema, build/NAME.py.

    Never overwrites a file.
    """
    from endpointgen.gitops import scaffold

    default = ",".join(scaffold.DEFAULT_ENVIRONMENTS)
    if gitops and environments is None and sys.stdin.isatty():
        environments = typer.prompt("Environments, in deploy order", default=default)
    names = tuple(e.strip() for e in (environments or default).split(",") if e.strip())
    with _user_errors():
        done = scaffold.init(name, task, gitops, folder, environments=names)
    for path in done.written:
        _ok(f"wrote {path}")
    for path in done.kept:
        typer.echo(f"kept {path} (already there)")
    typer.echo("next:")
    for step in done.next_steps:
        typer.echo(f"  {step}")


@app.command()
def openapi(
    spec: Annotated[Path, typer.Argument(help="The spec.", show_default=False)],
    env: Env = None,
) -> None:
    """Print the app's OpenAPI document (JSON) without deploying or loading the model."""
    from endpointgen.local import openapi as document

    with _user_errors():
        doc = document.document(spec, env)
    typer.echo(json.dumps(doc, indent=2))


@app.command("test")
def test_examples(
    spec: Annotated[Path, typer.Argument(help="The spec whose route examples to run.")],
    url: Annotated[
        str | None,
        typer.Option("--url", help="Run against this deployment instead of in-process."),
    ] = None,
    env: Env = None,
) -> None:
    """Run each route's `examples:`; credentials come from the env vars the app reads.

    In-process (the model loaded here) unless --url points at a live deployment.
    """
    from endpointgen.local import contract

    with _user_errors():
        outcomes = contract.run(spec, url=url, env=env, say=typer.echo)
    failed = [o for o in outcomes if o.problems]
    if not outcomes:
        _fail(f"{spec}: no route has `examples:`")
        raise typer.Exit(1)
    summary = f"{len(outcomes) - len(failed)} passed, {len(failed)} failed"
    if failed:
        _fail(summary)
        raise typer.Exit(1)
    _ok(summary)


@app.command("list")
def list_specs(
    folder: Annotated[Path, typer.Argument(help="Folder of specs.")] = Path("specs"),
    env: Env = None,
) -> None:
    """A table of the apps under FOLDER: model, GPU, containers, routes and auth."""
    from endpointgen import tables
    from endpointgen.gitops import workspace

    with _user_errors():
        entries = workspace.listing(folder, env)
    if not entries:
        _fail(f"{folder}: no specs (*.yaml, *.yml) found")
        raise typer.Exit(1)
    typer.echo(tables.text_table(workspace.HEADERS, [e.row() for e in entries]), nl=False)
    if not all(e.valid for e in entries):
        raise typer.Exit(1)


@app.command()
def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to this file instead of stdout.")
    ] = None,
) -> None:
    """Print the JSON Schema of the spec language, for editors and CI."""
    from endpointgen.spec import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")


def main() -> None:
    """The typer app: every command, and `validate`/`build` when `console.main` hands
    them over (help, unusual options)."""
    console.no_plugin_scan()
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of ours, not the user's mistake: one line, not a trace
        sys.exit(crashed(exc))


def crashed(exc: Exception) -> int:
    """Keep the traceback in a file for the bug report; say where, in one line."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile(
        "w", prefix="endpointgen-crash-", suffix=".txt", delete=False
    ) as report:
        traceback.print_exception(exc, file=report)
    typer.echo(
        f"endpointgen: internal error ({type(exc).__name__}: {exc}); this is a bug in "
        f"endpointgen, please report it with {report.name}",
        err=True,
    )
    return 70  # EX_SOFTWARE
