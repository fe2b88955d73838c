"""Hand built modules to `modal deploy`, and make its failures one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from endpointgen.errors import DeployError


def command(module: Path, app_name: str, modal_env: str | None = None) -> list[str]:
    """The exact command run: the `modal` CLI of this Python environment."""
    cmd = [sys.executable, "-m", "modal", "deploy", str(module), "--name", app_name]
    if modal_env:
        cmd += ["--env", modal_env]
    return cmd


def run(cmd: list[str], say: Callable[[str], None] = print) -> None:
    """Run Modal's deploy, echoing its output as it comes; DeployError when it fails."""
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except OSError as exc:
        raise DeployError(f"could not start `modal`: {exc.strerror}") from None
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip("\n")
        lines.append(line)
        say(line)
    if proc.wait() != 0:
        raise DeployError(f"modal deploy failed: {_reason(lines)}")


def _reason(lines: list[str]) -> str:
    """Modal's own reason: its `Error:` line, else the last thing it printed."""
    text = [line.strip().strip("│┃|").strip() for line in lines if line.strip()]
    for line in reversed(text):
        if line.lower().startswith("error"):
            return line
    return text[-1] if text else "no output"
