"""Read a spec as it was at a git ref, from the repository that holds it.

Only `git` itself is used (`rev-parse`, `show`, `ls-tree`, `ls-files`), run in the
spec's own repository, so `plan` works the same from any working directory.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from endpointgen.errors import UsageError

SPEC_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class Repo:
    root: Path

    def relative(self, path: Path) -> str:
        """`path` as git names it: POSIX, relative to the repository root."""
        try:
            rel = path.resolve().relative_to(self.root)
        except ValueError:
            raise UsageError(f"{path} is outside the git repository at {self.root}") from None
        return str(PurePosixPath(*rel.parts)) if rel.parts else "."

    def commit(self, ref: str) -> str:
        """The commit `ref` names; UsageError when it names none."""
        if not ref or ref.startswith("-"):
            raise UsageError(f"'{ref}' is not a git ref")
        done = _git(
            self.root, "rev-parse", "--verify", "--quiet", "--end-of-options", ref + "^{commit}"
        )
        if done.returncode != 0:
            raise UsageError(f"'{ref}' names no commit in the repository at {self.root}")
        return done.stdout.strip()

    def show(self, commit: str, path: str) -> str | None:
        """The text of `path` at `commit`, or None when it did not exist there."""
        done = _git(self.root, "show", f"{commit}:{path}")
        if done.returncode != 0:
            return None
        return done.stdout

    def specs_at(self, commit: str, folder: str) -> set[str]:
        """Spec files (YAML) under `folder` at `commit`."""
        done = _git(self.root, "ls-tree", "-r", "-z", "--name-only", commit, "--", folder)
        return {p for p in done.stdout.split("\0") if p.endswith(SPEC_SUFFIXES)}

    def specs_now(self, folder: str) -> set[str]:
        """Spec files under `folder` in the working tree: tracked or new, not ignored."""
        done = _git(
            self.root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", folder
        )
        return {
            p
            for p in done.stdout.split("\0")
            if p.endswith(SPEC_SUFFIXES) and (self.root / p).is_file()
        }


def repo_of(path: Path) -> Repo | None:
    """The git repository holding `path`, or None when there is none (or no git)."""
    folder = path if path.is_dir() else path.parent
    folder = folder.resolve()
    while not folder.exists():  # a deleted spec: ask from the nearest folder that exists
        folder = folder.parent
    try:
        done = _git(folder, "rev-parse", "--show-toplevel")
    except UsageError:
        return None
    if done.returncode != 0:
        return None
    return Repo(Path(done.stdout.strip()).resolve())


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", "-c", "core.quotepath=off", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=60,
        )
    except FileNotFoundError:
        raise UsageError("`git` is not installed; `plan` reads the old spec with git") from None
