"""What `validate` and `build` do, the two commands CI runs on every push, and how the
command prints: a line (coloured on a terminal), and the one line a bug of ours prints.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from endpointgen.errors import EndpointgenError, Problem, SpecError

COLORS = {"red": 31, "green": 32, "yellow": 33}


def say(message: str, color: str | None = None, err: bool = False) -> None:
    """A line, coloured only on a terminal (as click's `secho` does)."""
    stream: TextIO = sys.stderr if err else sys.stdout
    if color is not None and stream.isatty():
        message = f"\x1b[{COLORS[color]}m{message}\x1b[0m"
    stream.write(message + "\n")
    stream.flush()


def fail(message: str) -> None:
    say(message, "red", err=True)


def validate(specs: list[Path]) -> int:
    """Check specs, every environment overlay included; one line per problem. The exit
    status: 1 if any spec has a problem."""
    from endpointgen.compiler import pipeline

    failed = False
    for spec in specs:
        warnings: list[Problem] = []
        problems = pipeline.validate(spec, warnings)
        for problem in problems:
            fail(str(problem))
        if problems:
            failed = True
            continue
        for warning in warnings:
            say(str(warning), "yellow", err=True)
        say(f"{spec}: ok", "green")
    return 1 if failed else 0


def only_specs(paths: list[Path]) -> list[Path]:
    """`validate --only-specs`: the files `check` reads as specs (a missing or unreadable
    one stays, so that validate says so); YAML that is not a spec and files in hidden
    folders are dropped."""
    from endpointgen.gitops.gitref import in_hidden_folder, is_spec

    def skipped(path: Path) -> bool:
        if not path.is_file():
            return False
        if in_hidden_folder(path):
            return True
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return False
        return not is_spec(text)

    return [path for path in paths if not skipped(path)]


def build(specs: list[Path], out: Path, env: str | None, check: bool) -> int:
    """Write one module per spec (or with `check`, only compare); the exit status."""
    from endpointgen.compiler import pipeline

    try:
        pipeline.environment_used(specs, env)
    except SpecError as exc:
        for problem in exc.problems:
            fail(str(problem))
        return 1
    except EndpointgenError as exc:
        fail(f"error: {exc}")
        return 1
    stale = False
    for spec in specs:
        try:
            built = pipeline.build(spec, out, env, base_if_missing=True)
        except SpecError as exc:
            for problem in exc.problems:
                fail(str(problem))
            stale = True
            continue
        except EndpointgenError as exc:
            fail(f"error: {exc}")
            stale = True
            continue
        current = built.path.read_text(encoding="utf-8") if built.path.is_file() else None
        if check:
            if current != built.source:
                fail(f"{built.path}: {'missing' if current is None else 'out of date'} ({spec})")
                stale = True
            else:
                say(f"{built.path}: up to date", "green")
            continue
        if current != built.source:
            built.path.parent.mkdir(parents=True, exist_ok=True)
            built.path.write_text(built.source, encoding="utf-8")
        say(f"{spec} -> {built.path}", "green")
    if stale and check:
        fail("run `endpointgen build` and commit the result")
    return 1 if stale else 0


def crashed(exc: Exception) -> int:
    """Keep the traceback in a file for the bug report; say where, in one line."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile(
        "w", prefix="endpointgen-crash-", suffix=".txt", delete=False
    ) as report:
        traceback.print_exception(exc, file=report)
    say(
        f"endpointgen: internal error ({type(exc).__name__}: {exc}); this is a bug in "
        f"endpointgen, please report it with {report.name}",
        err=True,
    )
    return 70  # EX_SOFTWARE
