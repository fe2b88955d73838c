"""The `endpointgen` command line, every command of it: parses arguments, prints, sets exit
codes. No logic here. `console.main` runs it."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from endpointgen import __version__, commands
from endpointgen.errors import EndpointgenError, SpecError
from endpointgen.local import BODY_WITHIN, HEAD_WITHIN

if TYPE_CHECKING:
    from endpointgen.gitops.config import GitOpsConfig

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
Config = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="The GitOps settings (.endpointgen/gitops.yaml, written by `init --gitops`): "
        "its environments exist for every spec, its gates fail `plan`.",
    ),
]


def _config(path: Path | None) -> GitOpsConfig:
    from endpointgen.gitops import config

    return config.load(path) if path is not None else config.GitOpsConfig()


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
    commands.fail(message)


def _ok(message: str) -> None:
    commands.say(message, "green")


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
def validate(
    specs: Specs,
    only_specs: Annotated[
        bool,
        typer.Option(
            "--only-specs",
            help="Skip, silently, files that `check` skips: YAML that is not a spec, "
            "and files in hidden folders (for pre-commit, which passes every YAML file).",
        ),
    ] = False,
) -> None:
    """Check specs, every environment overlay included; one line per problem, exit 1 if any.
    Warnings (what a valid spec does on Modal that may surprise) are printed too."""
    if only_specs:
        specs = commands.only_specs(specs)
    status = commands.validate(specs)
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
    status = commands.build(specs, out, env, check)
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
    config: Config = None,
    suffix: Annotated[
        str,
        typer.Option(
            "--suffix",
            help="Add this to every app's name (a pull request's previews: -pr-12): its own "
            "app, module and stores beside the real one.",
        ),
    ] = "",
    summary: Annotated[
        Path | None,
        typer.Option(
            "--summary", help="Also write the apps deployed and their URLs here (Markdown)."
        ),
    ] = None,
    against_deployed: Annotated[
        bool,
        typer.Option(
            "--against-deployed",
            help="--base is what --env last deployed in full: the git tag "
            "endpointgen/deployed/ENV (the `record` of --config), or nothing when there is "
            "none yet. Move the tag after a deploy that succeeds.",
        ),
    ] = False,
) -> None:
    """Build every spec (files, or folders of specs), then `modal deploy` each in turn; the
    first failure stops the rest. With --prune, then stop the apps whose spec is gone and
    the old names of renamed apps.

    Needs a Modal token (`modal token new`, or MODAL_TOKEN_ID and MODAL_TOKEN_SECRET).
    """
    from endpointgen.gitops import deploy as modal_deploy
    from endpointgen.gitops import workspace

    folders = [s for s in specs if s.is_dir()]
    if prune and not folders:
        _fail("error: --prune needs the folder of specs, to know which were removed")
        raise typer.Exit(2)
    if suffix and not modal_deploy.SUFFIX.fullmatch(suffix):
        _fail(f"error: --suffix '{suffix}': '-' then lowercase letters, digits and '-'")
        raise typer.Exit(2)
    with _user_errors():
        settings = _config(config)
        if against_deployed:
            from endpointgen.gitops import deployed as records

            recorded = records.record(specs[0], settings, env)
            base = recorded.base
            typer.echo(f"comparing with {recorded.label}")
        files = [f for s in specs for f in (workspace.find_specs(s) if s.is_dir() else [s])]
        known = [*settings.environments]
        if files and env:  # any spec given, changed or not, may define the environment
            from endpointgen.compiler import pipeline

            pipeline.environment_used(files, env, known)
            known.append(env)
        if changed:
            from endpointgen.gitops import gitplan

            moving = {Path(p.file).resolve() for p in gitplan.plan_paths(specs, base, env, known)}
            files = [f for f in files if f.resolve() in moving]
        removed = modal_deploy.removed_apps(folders, base, env, known) if prune else []
        targets = modal_deploy.prepare(
            files,
            out,
            env,
            modal_env,
            write=not dry_run,
            pin=pin,
            say=typer.echo,
            known=known,
            suffix=suffix,
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
            typer.echo(f"would run: {' '.join(command)}  ({gone.reason})")
        return
    if not targets and not removed:
        typer.echo("nothing to deploy" + (f": no spec changed against {base}" if changed else ""))
    deployed: dict[str, list[str]] = {}
    stopped_deploy = None
    if targets:
        try:
            deployed = modal_deploy.deploy_all(targets, say=typer.echo, keep_going=keep_going)
        except modal_deploy.StoppedDeploy as exc:
            stopped_deploy = exc
            deployed = {app: [] for app in exc.deployed}
    if summary is not None:
        summary.write_text(modal_deploy.summary_markdown(targets, deployed), encoding="utf-8")
    if stopped_deploy is not None:
        # Removed apps still stop; a renamed app's old name only once its new one is up.
        stopping = [g for g in removed if g.successor is None or g.successor in deployed]
        unstopped = modal_deploy.stop_all(stopping, modal_env, say=typer.echo)
        _fail(f"error: {stopped_deploy.reason}")
        for line in stopped_deploy.summary:
            _fail(line)
        kept = [g.app for g in removed if g not in stopping or g.app in unstopped]
        if kept:
            _fail(f"not stopped: {', '.join(kept)}")
        raise typer.Exit(1)
    if targets:
        _ok(f"deployed {', '.join(t.app for t in targets)}")
        if warm_cache and modal_deploy.warm_all(targets, modal_env, say=typer.echo):
            _fail("error: the apps are deployed, and their Hub cache could not be filled")
            raise typer.Exit(1)
    # After the deploys: a renamed app's new name serves before its old one stops.
    _stop(removed, modal_env)


def _stop(apps: list[Any], modal_env: str | None, why: str | None = None) -> None:
    """`modal app stop` each of `apps` (`deploy.Removed`); exit 1 naming any that failed."""
    from endpointgen.gitops import deploy as modal_deploy

    failed = modal_deploy.stop_all(apps, modal_env, say=typer.echo, why=why) if apps else []
    stopped = [g.app for g in apps if g.app not in failed]
    if stopped:
        _ok(f"stopped {', '.join(stopped)}")
    if failed:
        _fail(f"error: could not stop {', '.join(failed)}")
        raise typer.Exit(1)


@app.command()
def stop(
    specs: Specs,
    env: Env = None,
    modal_env: Annotated[
        str | None, typer.Option("--modal-env", help="The Modal environment the apps run in.")
    ] = None,
    suffix: Annotated[
        str, typer.Option("--suffix", help="The suffix they were deployed with (previews).")
    ] = "",
    base: Annotated[
        str, typer.Option("--base", "-b", help="With --changed: the git ref to compare with.")
    ] = "HEAD",
    changed: Annotated[
        bool,
        typer.Option("--changed", help="Only the specs that change against --base."),
    ] = False,
) -> None:
    """`modal app stop --yes` the apps these specs (files, or folders) name, plus --suffix:
    a pull request's previews when it closes. An app that is not running counts as
    stopped; an app no spec names is never stopped."""
    from endpointgen.gitops import deploy as modal_deploy

    if suffix and not modal_deploy.SUFFIX.fullmatch(suffix):
        _fail(f"error: --suffix '{suffix}': '-' then lowercase letters, digits and '-'")
        raise typer.Exit(2)
    with _user_errors():
        apps = modal_deploy.named_apps(specs, env, base if changed else None)
    gone = [modal_deploy.Removed(str(spec), name + suffix) for name, spec in apps.items()]
    if not gone:
        typer.echo("nothing to stop")
        return
    _stop(gone, modal_env, why="stopping")


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
            "public-route, removed-app, renamed-app, cost-increase>N% (e.g. 50%). "
            "Default: the gates of --config, if given.",
        ),
    ] = None,
    config: Config = None,
    against_deployed: Annotated[
        bool,
        typer.Option(
            "--against-deployed",
            help="Compare with what --env last deployed in full (the git tag "
            "endpointgen/deployed/ENV that the workflow moves), not --base; and, when Modal "
            "can be reached, with the apps it lists (drift).",
        ),
    ] = False,
    modal_env: Annotated[
        str | None,
        typer.Option("--modal-env", help="With --against-deployed: default the --env name."),
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
    drifted: list[str] = []
    with _user_errors():
        settings = _config(config)
        known = settings.environments
        if against_deployed:
            from endpointgen.gitops import deployed

            recorded = deployed.record(spec, settings, env)
            base = recorded.base
        if spec.is_dir():
            plans = gitplan.plan_folder(spec, base, env, known)
        else:
            plans = [gitplan.plan_spec(spec, base, env, known)]
        if against_deployed:
            drifted = _drift(spec, recorded, modal_env or env, env)
    gates = fail_on if fail_on is not None else list(settings.gates) if config else None
    with _user_errors():
        failed = gitplan.gate_failures(plans, gates) if gates else []
    shown = recorded.label if against_deployed else base
    text = planview.render(plans, shown, fmt, where=str(spec))
    text = _with_extras(text, fmt, drifted, failed if gates else None, config)
    if fmt == "table":
        _print_plan(text)
    else:
        typer.echo(text, nl=False)
    if failed:
        for reason in failed:
            _fail(f"--fail-on: {reason}")
        raise typer.Exit(1)


def _drift(spec: Path, recorded: Any, modal_env: str | None, env: str | None) -> list[str]:
    """The DRIFT lines of `plan --against-deployed`, or one line saying Modal was not seen."""
    from endpointgen.compiler import pipeline
    from endpointgen.gitops import deployed, workspace
    from endpointgen.gitops.gitref import repo_of

    seen = deployed.modal_apps(modal_env)
    if seen.error is not None:
        return [f"Modal could not be reached ({seen.error}); compared with {recorded.tag} only"]
    now = {}
    for path in workspace.find_specs(spec):
        try:
            _, built = pipeline.load_spec(path, env, base_if_missing=True)
        except EndpointgenError:
            continue  # the plan says what is wrong with it
        now[built.name] = str(path)
    repo = repo_of(spec)
    folder = spec if spec.is_dir() else spec.parent
    before = deployed.names_at(repo, recorded.base, folder) if repo and recorded.found else set()
    return deployed.drift(now, before, seen) or [f"Modal ({modal_env}): no drift"]


def _with_extras(
    text: str, fmt: str, drifted: list[str], failed: list[str] | None, config: Path | None
) -> str:
    """The plan, with what Modal runs (`--against-deployed`) and the gates it failed."""
    if fmt == "json":
        data = json.loads(text)
        if drifted:
            data["drift"] = drifted
        if failed is not None:
            data["gates_failed"] = failed
        return json.dumps(data, indent=2) + "\n"
    out = text
    if drifted:
        if fmt == "markdown":
            out += "\n### What Modal runs\n\n" + "".join(f"- {d}\n" for d in drifted)
        else:
            out += "\n" + "".join(f"{d}\n" for d in drifted)
    if failed and fmt == "markdown":
        where = f" (set in `{config.as_posix()}`)" if config else ""
        out += f"\n### Merge gates failed{where}\n\n" + "".join(f"- {r}\n" for r in failed)
    return out


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
    previews: Annotated[
        bool,
        typer.Option(
            "--previews",
            help="With --gitops: each pull request from this repository deploys its changed "
            "apps into the first environment as NAME-pr-<number>, comments their URLs, and "
            "stops them when it closes.",
        ),
    ] = False,
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
        done = scaffold.init(name, task, gitops, folder, environments=names, previews=previews)
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
