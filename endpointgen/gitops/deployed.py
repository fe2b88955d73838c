"""What an environment runs: the commit last deployed there in full (a git tag, the
record), and, when Modal can be reached, the apps it lists.

The workflow moves the tag `<record>/<env>` to the commit it deployed once every app of
that commit deployed and every removed app stopped. The next run compares with the tag,
not with the push before it, so a failed, cancelled or skipped run is retried.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from endpointgen.errors import UsageError
from endpointgen.gitops.config import GitOpsConfig
from endpointgen.gitops.gitref import Repo, repo_of

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's tree of nothing


@dataclass(frozen=True)
class Record:
    """The base to compare with: the recorded commit, or the empty tree when nothing was
    recorded yet (every spec is then new)."""

    tag: str
    base: str
    found: bool

    @property
    def label(self) -> str:
        return self.tag if self.found else f"{self.tag} (none yet: every spec is new)"


def record(where: Path, settings: GitOpsConfig, env: str | None) -> Record:
    """The record of `env` in the repository holding `where`."""
    if not env:
        raise UsageError("--against-deployed needs --env: each environment has its own record")
    repo = repo_of(where)
    if repo is None:
        raise UsageError(f"{where} is not in a git repository, where deploys are recorded")
    tag = settings.record_tag(env)
    try:
        return Record(tag, repo.commit(f"refs/tags/{tag}"), True)
    except UsageError:
        return Record(tag, EMPTY_TREE, False)


@dataclass(frozen=True)
class ModalApps:
    """`modal app list --json` in one environment: app name -> state, or why not."""

    states: dict[str, str]
    error: str | None = None


def modal_apps(modal_env: str | None) -> ModalApps:
    from endpointgen.gitops.deploy import modal_cli

    cmd = [*modal_cli(), "app", "list", "--json"]
    if modal_env:
        cmd += ["--env", modal_env]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return ModalApps({}, f"`modal app list` did not run: {exc}")
    if done.returncode != 0:
        lines = [line.strip(" │┃|╭╰─") for line in (done.stderr or done.stdout).splitlines()]
        said = [line for line in lines if line.strip()]
        return ModalApps({}, said[-1] if said else f"`modal app list` exited {done.returncode}")
    try:
        rows = json.loads(done.stdout)
        states: dict[str, str] = {}
        for row in rows:  # newest first is not promised: a deployed row wins
            name, state = str(row["description"]), str(row["state"])
            if states.get(name) != "deployed":
                states[name] = state
    except (ValueError, KeyError, TypeError):
        return ModalApps({}, "`modal app list --json` printed something else than its table")
    return ModalApps(states)


def drift(apps_now: dict[str, str], apps_recorded: set[str], seen: ModalApps) -> list[str]:
    """What Modal runs that differs from the specs: `apps_now` (app -> spec) not deployed
    there, and apps the record's specs named that still run without a spec."""
    out = []
    for app, spec in sorted(apps_now.items()):
        state = seen.states.get(app)
        if state != "deployed":
            out.append(
                f"DRIFT: {spec} names app '{app}', which Modal lists as {state or 'not deployed'}"
            )
    for app in sorted(apps_recorded - set(apps_now)):
        if seen.states.get(app) == "deployed":
            out.append(f"DRIFT: app '{app}' is deployed on Modal, and no spec names it now")
    return out


def names_at(repo: Repo, commit: str, folder: Path) -> set[str]:
    """The app names the specs under `folder` declared at `commit`."""
    from endpointgen.gitops.gitref import declared_name

    prefix = repo.relative(folder)
    names = {declared_name(repo.show(commit, rel) or "") for rel in repo.specs_at(commit, prefix)}
    return {n for n in names if n}
