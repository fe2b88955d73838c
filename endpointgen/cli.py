"""The `endpointgen` command: parses arguments, prints, sets exit codes. No logic here."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from endpointgen import __version__
from endpointgen.errors import EndpointgenError, SpecError

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
    typer.secho(message, fg=typer.colors.RED, err=True)


def _ok(message: str) -> None:
    typer.secho(message, fg=typer.colors.GREEN)


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
    """Check specs, every environment overlay included; one line per problem, exit 1 if any."""
    from endpointgen import pipeline

    failed = False
    for spec in specs:
        problems = pipeline.validate(spec)
        for problem in problems:
            _fail(str(problem))
        if problems:
            failed = True
        else:
            _ok(f"{spec}: ok")
    if failed:
        raise typer.Exit(1)


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
    from endpointgen import pipeline

    stale = False
    for spec in specs:
        try:
            built = pipeline.build(spec, out, env)
        except SpecError as exc:
            for problem in exc.problems:
                _fail(str(problem))
            stale = True
            continue
        except EndpointgenError as exc:
            _fail(f"error: {exc}")
            stale = True
            continue
        current = built.path.read_text(encoding="utf-8") if built.path.is_file() else None
        if check:
            if current != built.source:
                _fail(f"{built.path}: {'missing' if current is None else 'out of date'} ({spec})")
                stale = True
            else:
                _ok(f"{built.path}: up to date")
            continue
        if current != built.source:
            built.path.parent.mkdir(parents=True, exist_ok=True)
            built.path.write_text(built.source, encoding="utf-8")
        _ok(f"{spec} -> {built.path}")
    if stale:
        if check:
            _fail("run `endpointgen build` and commit the result")
        raise typer.Exit(1)


@app.command()
def serve(
    spec: Annotated[Path, typer.Argument(help="The spec to serve.", show_default=False)],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    env: Env = None,
) -> None:
    """Serve the app on this machine with uvicorn, the model loaded once at start.

    Secrets come from this process's environment (for example API_KEYS=key1,key2).
    """
    from endpointgen import local

    with _user_errors():
        local.serve(spec, host, port, env, say=lambda line: typer.echo(line, err=True))


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
        bool, typer.Option("--dry-run", help="Build and print the commands; deploy nothing.")
    ] = False,
) -> None:
    """Build each spec, then `modal deploy` it; stops at the first failure."""
    import shlex

    from endpointgen import deploy as modal_deploy
    from endpointgen import pipeline

    done: list[str] = []
    for spec in specs:
        with _user_errors():
            built = pipeline.build(spec, out, env)
        built.path.parent.mkdir(parents=True, exist_ok=True)
        built.path.write_text(built.source, encoding="utf-8")
        cmd = modal_deploy.command(built.path, built.spec.name, modal_env)
        typer.echo(("would run: " if dry_run else "running: ") + shlex.join(cmd))
        if dry_run:
            continue
        try:
            modal_deploy.run(cmd, say=typer.echo)
        except EndpointgenError as exc:
            _fail(f"error: {exc}")
            if done:
                _fail(f"deployed before the failure: {', '.join(done)}")
            raise typer.Exit(1) from None
        done.append(built.spec.name)
        _ok(f"deployed {built.spec.name}")


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
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
