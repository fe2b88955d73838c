"""Hand built modules to `modal deploy`, and make its failures one clear line.

Every spec is built (and every problem reported) before anything deploys; then the apps
deploy in the order given, and the first failure stops the rest, saying which went out.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from endpointgen.compiler import pipeline
from endpointgen.errors import DeployError, Problem, SpecError, UsageError
from endpointgen.spec import Spec


@dataclass(frozen=True)
class Target:
    """One app ready to deploy: its spec, its built module and the exact command."""

    spec: Path
    app: str
    module: Path
    command: list[str]

    @property
    def shell(self) -> str:
        return shlex.join(self.command)


class StoppedDeploy(DeployError):
    """A deploy failed part-way: some apps went out, the failed one and the rest did not."""

    def __init__(self, reason: str, deployed: list[str], failed: str, skipped: list[str]) -> None:
        self.reason = reason
        self.deployed = deployed
        self.failed = failed
        self.skipped = skipped
        super().__init__(reason)

    @property
    def summary(self) -> list[str]:
        done = ", ".join(self.deployed) if self.deployed else "none"
        left = ", ".join([f"{self.failed} (failed)", *self.skipped])
        return [f"deployed before the failure: {done}", f"not deployed: {left}"]


def modal_cli() -> list[str]:
    """The `modal` CLI: this Python environment's, or `ENDPOINTGEN_MODAL` (a command)."""
    given = os.environ.get("ENDPOINTGEN_MODAL")
    return shlex.split(given) if given else [sys.executable, "-m", "modal"]


def command(module: Path, app_name: str, modal_env: str | None = None) -> list[str]:
    """The exact command run: the `modal` CLI of this Python environment."""
    cmd = [*modal_cli(), "deploy", str(module), "--name", app_name]
    if modal_env:
        cmd += ["--env", modal_env]
    return cmd


def warm_command(module: Path, modal_env: str | None = None) -> list[str]:
    """`modal run MODULE::download`: fill the Hub cache Volume before the first cold start."""
    cmd = [*modal_cli(), "run", f"{module}::download"]
    if modal_env:
        cmd += ["--env", modal_env]
    return cmd


def warm_all(
    targets: Sequence[Target],
    modal_env: str | None,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Run each deployed app's `download` function (apps whose models all ship in the
    image or sit on a Volume have none). Returns the apps whose download failed."""
    failed = []
    for target in targets:
        if "\ndef download() -> None:" not in target.module.read_text(encoding="utf-8"):
            continue
        cmd = warm_command(target.module, modal_env)
        say(f"running: {shlex.join(cmd)}  (fills the Hub cache for {target.app})")
        try:
            run(cmd, say, what="modal run")
        except DeployError as exc:
            say(f"could not fill the Hub cache for {target.app}: {exc}")
            failed.append(target.app)
    return failed


def stop_command(app_name: str, modal_env: str | None = None) -> list[str]:
    cmd = [*modal_cli(), "app", "stop", app_name]
    if modal_env:
        cmd += ["--env", modal_env]
    return cmd


@dataclass(frozen=True)
class Removed:
    """An app this repository deployed from a spec that is gone since `base`."""

    spec: str  # its path at base
    app: str


def removed_apps(folders: Sequence[Path], base: str, env: str | None = None) -> list[Removed]:
    """Apps whose spec was under one of `folders` at `base` and is not now: the removed
    specs of `plan`, which pairs a spec moved under the same app name with its move.

    Only apps named by a spec this repository held (and that built there) are returned:
    nothing else is ever stopped.
    """
    from endpointgen.gitops import gitplan

    return [
        Removed(plan.file, plan.app)
        for folder in folders
        for plan in gitplan.plan_folder(folder, base, env)
        if plan.status == "removed" and plan.cost_before is not None  # built at base
    ]


def stop_all(
    removed: Sequence[Removed], modal_env: str | None, say: Callable[[str], None] = print
) -> list[str]:
    """`modal app stop` each; every one is tried. Returns those that could not be stopped."""
    failed = []
    for gone in removed:
        cmd = stop_command(gone.app, modal_env)
        say(f"running: {shlex.join(cmd)}  (its spec {gone.spec} was removed)")
        try:
            run(cmd, say)
        except DeployError as exc:
            say(f"could not stop {gone.app}: {exc}")
            failed.append(gone.app)
    return failed


def prepare(
    specs: Sequence[Path],
    out: Path,
    env: str | None = None,
    modal_env: str | None = None,
    write: bool = True,
    pin: bool = False,
    say: Callable[[str], None] = print,
) -> list[Target]:
    """Build every spec into `out` (nothing written with `write=False`: a dry run); a
    SpecError with all their problems before any deploys. `pin`: Hub models without a
    `revision` load the commit their `main` is now (`revisions.resolve`)."""
    from endpointgen.compiler import revisions

    pipeline.environment_used(list(specs), env)
    problems: list[Problem] = []
    built: list[tuple[Path, pipeline.Built]] = []

    def pinned(spec: Spec, spec_dir: Path) -> dict[str, str]:
        found = revisions.resolve(spec, spec_dir, say)
        for model_id, sha in found.items():
            say(f"{spec.name}: {model_id} pinned to {sha} (the Hub's main now)")
        return found

    for spec in specs:
        try:
            build = pipeline.build(
                spec, out, env, base_if_missing=True, pin=pinned if pin else None
            )
            built.append((spec, build))
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(problems)
    seen: dict[str, Path] = {}
    for spec, b in built:
        if b.spec.name in seen:
            raise UsageError(
                f"{seen[b.spec.name]} and {spec} both name app '{b.spec.name}'; "
                "the second deploy would replace the first"
            )
        seen[b.spec.name] = spec
    targets = []
    for spec, b in built:
        if write:
            b.path.parent.mkdir(parents=True, exist_ok=True)
            if not b.path.is_file() or b.path.read_text(encoding="utf-8") != b.source:
                b.path.write_text(b.source, encoding="utf-8")
        targets.append(Target(spec, b.spec.name, b.path, command(b.path, b.spec.name, modal_env)))
    return targets


def deploy_all(
    targets: Sequence[Target], say: Callable[[str], None] = print, keep_going: bool = False
) -> list[str]:
    """Deploy in order; StoppedDeploy at the first failure, or, with `keep_going`, after
    trying every app (each on its own). Returns the apps deployed."""
    done: list[str] = []
    failed: list[tuple[str, str]] = []
    for i, target in enumerate(targets):
        say(f"running: {target.shell}")
        try:
            run(target.command, say)
        except DeployError as exc:
            if not keep_going:
                rest = [t.app for t in targets[i + 1 :]]
                raise StoppedDeploy(str(exc), done, target.app, rest) from None
            say(f"{target.app}: {exc}")
            failed.append((target.app, str(exc)))
            continue
        done.append(target.app)
        say(f"deployed {target.app}")
    if failed:
        others = [app for app, _ in failed[1:]]
        raise StoppedDeploy(failed[0][1], done, failed[0][0], [f"{a} (failed)" for a in others])
    return done


def run(cmd: list[str], say: Callable[[str], None] = print, what: str = "modal deploy") -> None:
    """Run a `modal` command, echoing its output as it comes; DeployError when it fails."""
    lines: list[str] = []
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
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
        raise DeployError(f"{what} failed: {_reason(lines)}")


def _reason(lines: list[str]) -> str:
    """Modal's own reason: its `Error:` line, else the last thing it printed."""
    text = [line.strip().strip("│┃|╭╰─").strip() for line in lines if line.strip()]
    text = [line for line in text if line]
    for line in reversed(text):
        if line.lower().startswith("error"):
            return line
    return text[-1] if text else "no output"
