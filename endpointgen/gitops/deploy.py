"""Hand built modules to `modal deploy`, and make its failures one clear line.

Every spec is built (and every problem reported) before anything deploys; then the apps
deploy in the order given, and the first failure stops the rest, saying which went out
(with `keep_going`, each app deploys on its own). Apps whose spec was removed, and the
old names of renamed apps, are stopped after the deploys, so a rename never leaves a gap.
"""

from __future__ import annotations

import os
import re
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

    def __init__(
        self,
        reason: str,
        deployed: list[str],
        failed: str,
        skipped: list[str],
        kept_going: bool = False,
    ) -> None:
        self.reason = reason
        self.deployed = deployed
        self.failed = failed
        self.skipped = skipped
        self.kept_going = kept_going
        super().__init__(reason)

    @property
    def summary(self) -> list[str]:
        done = ", ".join(self.deployed) if self.deployed else "none"
        left = ", ".join([f"{self.failed} (failed)", *self.skipped])
        if self.kept_going:  # every app was tried: some after the failure went out too
            return [f"deployed: {done}", f"not deployed: {left}"]
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
    """`modal app stop NAME --yes`: without `--yes` it asks, and aborts on a runner."""
    cmd = [*modal_cli(), "app", "stop", app_name, "--yes"]
    if modal_env:
        cmd += ["--env", modal_env]
    return cmd


@dataclass(frozen=True)
class Removed:
    """An app this repository deployed from a spec that is gone since `base`, or the
    old name of an app renamed since."""

    spec: str  # its path at base
    app: str
    successor: str | None = None  # the app's new name, when it was renamed

    @property
    def reason(self) -> str:
        if self.successor is None:
            return f"its spec {self.spec} was removed"
        return f"{self.spec} renamed it to {self.successor}"


def removed_apps(
    folders: Sequence[Path], base: str, env: str | None = None, known: Sequence[str] = ()
) -> list[Removed]:
    """Apps whose spec was under one of `folders` at `base` and is not now (the removed
    specs of `plan`, which pairs a spec moved under the same app name with its move), and
    the names at `base` of the apps renamed since.

    Only apps named by a spec this repository held (and that built there) are returned,
    and never one that a spec names now: nothing else is ever stopped.
    """
    from endpointgen.gitops import gitplan, workspace
    from endpointgen.gitops.gitref import declared_name

    named_now = {
        declared_name(spec.read_text(encoding="utf-8", errors="replace"))
        for folder in folders
        for spec in workspace.find_specs(folder)
    }
    found: dict[str, Removed] = {}
    for folder in folders:
        for plan in gitplan.plan_folder(folder, base, env, known):
            if plan.status == "removed" and plan.cost_before is not None:  # built at base
                found.setdefault(plan.app, Removed(plan.file, plan.app))
            elif plan.renamed and plan.app_before is not None:
                gone = Removed(plan.file, plan.app_before, plan.app)
                found.setdefault(plan.app_before, gone)
    return [gone for name, gone in found.items() if name not in named_now]


# What `modal app stop` says of an app that is not running: stopping it is already done
# (a run retried after a partial failure stops what the last one stopped).
_ALREADY_STOPPED = re.compile(r"App is already stopped|No App with name '[^']*' found")


def named_apps(
    specs: Sequence[Path], env: str | None, changed_since: str | None = None
) -> dict[str, Path]:
    """App name -> spec, for spec files and folders of specs (only those that change
    against `changed_since`, when given): what `endpointgen stop` may stop."""
    from endpointgen.gitops import gitplan, workspace

    files = [f for s in specs for f in (workspace.find_specs(s) if s.is_dir() else [s])]
    if changed_since is not None:
        moving = {Path(p.file).resolve() for p in gitplan.plan_paths(list(specs), changed_since)}
        files = [f for f in files if f.resolve() in moving]
    return {pipeline.load_spec(f, env, base_if_missing=True)[1].name: f for f in files}


def stop_all(
    removed: Sequence[Removed],
    modal_env: str | None,
    say: Callable[[str], None] = print,
    why: str | None = None,
) -> list[str]:
    """`modal app stop` each; every one is tried, and one that is already stopped (or
    was never deployed there) counts as stopped. Returns those that could not be stopped."""
    failed = []
    for gone in removed:
        cmd = stop_command(gone.app, modal_env)
        say(f"running: {shlex.join(cmd)}  ({why or gone.reason})")
        try:
            run(cmd, say, what="modal app stop")
        except DeployError as exc:
            printed = " ".join(getattr(exc, "output", [str(exc)]))
            if _ALREADY_STOPPED.search(" ".join(printed.split())):
                say(f"{gone.app} is not running (already stopped)")
                continue
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
    known: Sequence[str] = (),
    suffix: str = "",
) -> list[Target]:
    """Build every spec into `out` (nothing written with `write=False`: a dry run); a
    SpecError with all their problems before any deploys. `pin`: Hub models without a
    `revision` load the commit their `main` is now (`revisions.resolve`). `known`: the
    environments that exist though no spec given has an overlay for them. `suffix` is
    added to each app's name (previews)."""
    from endpointgen.compiler import revisions

    if specs:
        pipeline.environment_used(list(specs), env, known)
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
                spec,
                out,
                env,
                base_if_missing=True,
                pin=pinned if pin else None,
                suffix=suffix,
                deploying=True,
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


SUFFIX = re.compile(r"-[a-z0-9][a-z0-9-]{0,19}")


def summary_markdown(targets: Sequence[Target], deployed: dict[str, list[str]]) -> str:
    """The deployed apps and the URLs Modal gave them, for a pull request's comment."""
    lines = ["| app | spec | URLs |", "| --- | --- | --- |"]
    for target in targets:
        if target.app in deployed:
            urls = "<br>".join(deployed[target.app]) or "(no web endpoint)"
        else:
            urls = "**not deployed** (see the job log)"
        lines.append(f"| `{target.app}` | `{target.spec.as_posix()}` | {urls} |")
    if not targets:
        return "No app changed: nothing was deployed.\n"
    return "\n".join(lines) + "\n"


# The web endpoints `modal deploy` prints: `Created web function web => https://...`.
_URL = re.compile(r"https://[\w.-]+\.modal\.run[^\s\x1b]*")


def deploy_all(
    targets: Sequence[Target], say: Callable[[str], None] = print, keep_going: bool = False
) -> dict[str, list[str]]:
    """Deploy in order; StoppedDeploy at the first failure, or, with `keep_going`, after
    trying every app (each on its own). Returns the apps deployed, in order, each with the
    web URLs Modal printed for it."""
    done: dict[str, list[str]] = {}
    failed: list[tuple[str, str]] = []
    for i, target in enumerate(targets):
        say(f"running: {target.shell}")
        try:
            lines = run(target.command, say)
        except DeployError as exc:
            if not keep_going:
                rest = [t.app for t in targets[i + 1 :]]
                raise StoppedDeploy(str(exc), list(done), target.app, rest) from None
            say(f"{target.app}: {exc}")
            failed.append((target.app, str(exc)))
            continue
        done[target.app] = list(dict.fromkeys(u for line in lines for u in _URL.findall(line)))
        say(f"deployed {target.app}")
    if failed:
        others = [f"{app} (failed)" for app, _ in failed[1:]]
        raise StoppedDeploy(failed[0][1], list(done), failed[0][0], others, kept_going=True)
    return done


def run(
    cmd: list[str], say: Callable[[str], None] = print, what: str = "modal deploy"
) -> list[str]:
    """Run a `modal` command, echoing its output as it comes; DeployError when it fails.
    Returns the lines it printed."""
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
        raise CommandFailed(f"{what} failed: {_reason(lines)}", lines)
    return lines


class CommandFailed(DeployError):
    """A `modal` command exited non-zero; `output` is everything it printed."""

    def __init__(self, reason: str, output: list[str]) -> None:
        super().__init__(reason)
        self.output = output


def _reason(lines: list[str]) -> str:
    """Modal's own reason: its `Error:` line, else the last thing it printed."""
    text = [line.strip().strip("│┃|╭╰─").strip() for line in lines if line.strip()]
    text = [line for line in text if line]
    for line in reversed(text):
        if line.lower().startswith("error"):
            return line
    return text[-1] if text else "no output"
