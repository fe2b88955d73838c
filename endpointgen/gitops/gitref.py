"""Read a spec as it was at a git ref, from the repository that holds it.

Only `git` itself is used (`rev-parse`, `show`, `ls-tree`, `ls-files`), run in the
spec's own repository, so `plan` works the same from any working directory.
"""

from __future__ import annotations

import functools
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from endpointgen.errors import UsageError

SPEC_SUFFIXES = (".yaml", ".yml")


def is_spec(text: str) -> bool:
    """Whether a YAML file under a specs folder is an endpointgen spec, so folder
    commands skip data files and handler config kept beside the specs.

    A spec is a mapping with `routes:` (every spec has them), or with `name:` and one of
    `version:`, `model:` or `models:`. A file that is not valid YAML counts as a spec,
    so that `validate` shows what is wrong with it rather than skipping it.
    """
    parsed, data = _peek(text)
    if not parsed:
        return True
    if not isinstance(data, dict):
        return False
    return "routes" in data or ("name" in data and bool({"version", "model", "models"} & set(data)))


def declared_name(text: str) -> str | None:
    """The `name:` a spec's text gives, read without validating the rest (None if none)."""
    _, data = _peek(text)
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def _peek(text: str) -> tuple[bool, Any]:
    """(whether `text` is YAML, what it holds): a quick look, positions not kept."""
    import yaml

    try:
        return True, yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return False, None


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
        """The commit `ref` names (or a tree: the empty tree compares as "nothing yet");
        UsageError when it names neither."""
        if not ref or ref.startswith("-"):
            raise UsageError(f"'{ref}' is not a git ref")
        done = _git(
            self.root, "rev-parse", "--verify", "--quiet", "--end-of-options", ref + "^{commit}"
        )
        if done.returncode != 0:
            done = _git(
                self.root, "rev-parse", "--verify", "--quiet", "--end-of-options", ref + "^{tree}"
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

    def changed_since(self, commit: str, paths: list[str]) -> list[str]:
        """Which of `paths` (files or folders) differ in the working tree from `commit`:
        edited, added or deleted files, untracked new ones included."""
        if not paths:
            return []
        diff = _git(self.root, "diff", "--name-only", "-z", commit, "--", *paths)
        new = _git(self.root, "ls-files", "-z", "--others", "--exclude-standard", "--", *paths)
        found = {p for p in (diff.stdout + new.stdout).split("\0") if p}
        return sorted(found)

    def files_at(self, commit: str) -> list[str]:
        """Every file at `commit` (cached: a plan asks once per spec)."""
        return _files_at(self.root, commit)

    def specs_at(self, commit: str, folder: str) -> set[str]:
        """Spec files (YAML that `is_spec`) under `folder` at `commit`."""
        done = _git(self.root, "ls-tree", "-r", "-z", "--name-only", commit, "--", folder)
        found = {p for p in done.stdout.split("\0") if p.endswith(SPEC_SUFFIXES)}
        return {p for p in found if is_spec(self.show(commit, p) or "")}

    def specs_now(self, folder: str) -> set[str]:
        """Spec files under `folder` in the working tree: tracked or new, not ignored."""
        done = _git(
            self.root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", folder
        )
        return {
            p
            for p in done.stdout.split("\0")
            if p.endswith(SPEC_SUFFIXES)
            and (self.root / p).is_file()
            and is_spec((self.root / p).read_text(encoding="utf-8", errors="replace"))
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


@functools.cache
def _files_at(root: Path, commit: str) -> list[str]:
    done = _git(root, "ls-tree", "-r", "-z", "--name-only", commit)
    return [p for p in done.stdout.split("\0") if p]


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
