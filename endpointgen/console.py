"""The `endpointgen` entry point, and the two commands CI runs on every push.

`validate` and `build` run here without typer: typer and click cost each start about a
fifth of these commands' time, for parsing a handful of options. A plain invocation
(spec files, `-o/--out`, `-e/--env`, `--check`, `--only-specs`) is parsed here;
anything else (help, a typo, another command) goes to the typer app in `cli.py`, which
parses it the usual way; both call `validate` and `build` in `commands.py`, so both
paths print the same.
`ENDPOINTGEN_NO_QUICK=1` sends everything to typer (the tests compare the two).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from endpointgen.commands import build, crashed, no_plugin_scan, only_specs, validate


def quick(args: list[str]) -> int | None:
    """Run a plain `validate` or `build` invocation; None for anything else."""
    if not args or args[0] not in ("validate", "build"):
        return None
    command, rest = args[0], args[1:]
    files: list[Path] = []
    options: dict[str, str] = {}
    names = {"-o": "out", "--out": "out", "-e": "env", "--env": "env"}
    i = 0
    while i < len(rest):
        token = rest[i]
        name, joined, value = token.partition("=") if token.startswith("--") else (token, "", "")
        if token == "--":
            files += map(Path, rest[i + 1 :])
            break
        if not token.startswith("-") or token == "-":
            files.append(Path(token))
        elif command == "build" and token == "--check" and "check" not in options:
            options["check"] = ""
        elif command == "validate" and token == "--only-specs" and "only" not in options:
            options["only"] = ""
        elif command == "build" and name in names and names[name] not in options:
            if joined:  # --out=DIR
                options[names[name]] = value
            elif i + 1 < len(rest):
                options[names[name]] = rest[i + 1]
                i += 1
            else:
                return None  # typer says what is missing
        else:
            return None  # help, a typo, an option typer knows better
        i += 1
    if not files or options.get("out") == "" or options.get("env") == "":
        return None
    if command == "validate":
        return validate(only_specs(files) if "only" in options else files)
    out = Path(options.get("out", "build"))
    return build(files, out, options.get("env"), "check" in options)


def main() -> None:
    """The `endpointgen` command."""
    no_plugin_scan()
    if not os.environ.get("ENDPOINTGEN_NO_QUICK"):
        try:
            status = quick(sys.argv[1:])
        except KeyboardInterrupt:
            sys.exit(130)
        except Exception as exc:  # a bug of ours: one line, the traceback in a file
            sys.exit(crashed(exc))
        if status is not None:
            sys.exit(status)
    from endpointgen.cli import main as full

    full()
