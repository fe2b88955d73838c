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
    commands skip data files, handler config and other tools' YAML kept beside the specs.

    A spec is a mapping with `routes:` (every spec has them), or with `name:` and one of
    `version:`, `model:` or `models:`. Tags YAML does not define (`!Ref`, `!include`,
    `!!python/...`) are read as plain values for this look. A stream of several
    documents (`---` between them, as Kubernetes manifests) is a spec only when one of
    its documents looks like one, and a file with a YAML syntax error counts as a spec:
    either way `validate` then says what is wrong with it rather than skipping it.
    """
    docs = _documents(text)
    if docs is None:
        return True
    return any(_looks_like_spec(doc) for doc in docs)


def _looks_like_spec(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    return "routes" in data or ("name" in data and bool({"version", "model", "models"} & set(data)))


def declared_name(text: str) -> str | None:
    """The `name:` a spec's text gives, read without validating the rest (None if none)."""
    docs = _documents(text) or []
    data = next((d for d in docs if isinstance(d, dict)), None)
    name = data.get("name") if data is not None else None
    return name if isinstance(name, str) else None


def _documents(text: str) -> list[Any] | None:
    """What each YAML document in `text` holds, other tools' tags read as plain values;
    None when `text` is not YAML. A quick look: positions are not kept."""
    import yaml

    try:
        return list(yaml.load_all(text, Loader=_lenient_loader()))
    except (yaml.YAMLError, TypeError, ValueError):
        return None


@functools.cache
def _lenient_loader() -> Any:
    """YAML's safe loader, reading a tag it does not know as the plain value it tags."""
    import yaml

    def plain(loader: Any, _suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_scalar(node)

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    lenient: Any = type("LenientLoader", (base,), {})
    lenient.add_multi_constructor("", plain)
    return lenient


def in_hidden_folder(path: Path) -> bool:
    """Whether `path` lies in a hidden folder (`.github/`, `.venv/`), as folder commands
    see it: an absolute path is read relative to the working directory (one outside it
    is not hidden)."""
    parts = path.parts
    if path.is_absolute():
        try:
            parts = path.relative_to(Path.cwd()).parts
        except ValueError:
            parts = ()
    return any(p.startswith(".") and p not in (".", "..") for p in parts[:-1])


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
        """Spec files (YAML that `is_spec`, not in a hidden folder) under `folder` at
        `commit`."""
        done = _git(self.root, "ls-tree", "-r", "-z", "--name-only", commit, "--", folder)
        found = {p for p in done.stdout.split("\0") if _listed(folder, p)}
        return {p for p in found if is_spec(self.show(commit, p) or "")}

    def specs_now(self, folder: str) -> set[str]:
        """Spec files under `folder` in the working tree: tracked or new, not ignored,
        not in a hidden folder."""
        done = _git(
            self.root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", folder
        )
        return {
            p
            for p in done.stdout.split("\0")
            if _listed(folder, p)
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


def _listed(folder: str, rel: str) -> bool:
    """Whether `rel` (from the repository root) may be a spec of `folder`: a YAML file
    not in a hidden folder below `folder`, as `check` finds them."""
    if not rel.endswith(SPEC_SUFFIXES):
        return False
    inner = PurePosixPath(rel)
    if folder != "." and inner.is_relative_to(folder):
        inner = inner.relative_to(folder)
    return not any(part.startswith(".") for part in inner.parts[:-1])


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
