"""The `endpointgen` process (the console script, and `python -m endpointgen`): the typer
app in `cli.py` parses every command line; around it, what a process owes its user.

Exit codes: the command's own; 130 on Ctrl-C; 70 for a bug of ours, which prints one
line and keeps the traceback in a file (`commands.crashed`).
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """The `endpointgen` command."""
    # Set before anything imports pydantic: no command needs a pydantic plugin, and
    # pydantic would search every installed distribution's entry points for one before
    # its first model is built. A value the user set is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from endpointgen.cli import app
    from endpointgen.commands import crashed

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug of ours, not the user's mistake: one line, not a trace
        sys.exit(crashed(exc))
