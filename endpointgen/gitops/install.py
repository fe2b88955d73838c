"""What `init --gitops` writes for the workflow to install: exactly the running endpointgen.

The workflow runs `pip install -r requirements-endpointgen.txt` on a clean runner that holds
the Modal token, so the file must name something pip finds there and nothing else can stand
in for. How the running endpointgen was installed (its `direct_url.json`, PEP 610) decides:

- a release from a package index: `endpointgen==VERSION`;
- a git URL, or a local checkout whose commit is pushed and whose package files are that
  commit's: `endpointgen @ git+https://HOST/PATH@COMMIT` (SSH forms made https, user names
  and tokens dropped);
- anything else (a folder that is no checkout, local edits, a commit not pushed, a wheel
  file): a wheel of the running package, built here and written to `.endpointgen/`, which
  the repository then holds.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import subprocess
import tomllib
import zipfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import endpointgen
from endpointgen import __version__
from endpointgen.compiler.render import templates_dir

NAME = "endpointgen"
VENDOR_DIR = ".endpointgen"
# Installers that take a bare name from a package index (and write direct_url.json for
# anything else); a distribution put there by another tool (conda, a distro) is vendored.
_INDEX_INSTALLERS = frozenset({"pip", "uv", "poetry", "pdm"})
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip holds: every build the same
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?")
_PATH = re.compile(r"/[A-Za-z0-9._/-]*[A-Za-z0-9._-]")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@dataclass(frozen=True)
class Pinned:
    """The requirements file's text, and the files it refers to (path relative to the
    repository root -> bytes). `source` says which form it is: index, git or wheel."""

    text: str
    source: str
    files: dict[str, bytes] = field(default_factory=dict)


def pin(root: Path, dist: metadata.Distribution | None = None) -> Pinned:
    """The requirement that installs the running endpointgen on a clean runner.

    `root` is the repository the files go to: the workflow runs pip there, so the paths
    in `Pinned.files` and the requirement are relative to it. `dist` is the installed
    distribution to read (default: the running endpointgen's own).
    """
    del root  # the paths in Pinned are relative to it; which form does not depend on it
    dist = _running(dist)
    origin = _direct_url(dist) if dist is not None else None
    if dist is not None and origin is None and _installer(dist) in _INDEX_INSTALLERS:
        return Pinned(
            "# endpointgen from the package index it was installed from. To upgrade, change\n"
            "# the version here and rebuild build/ with it. If that index is a private one,\n"
            "# add its --index-url line above, so pip looks nowhere else for the name.\n"
            f"{NAME}=={dist.version}\n",
            "index",
        )
    if origin is not None and (git := _git_requirement(origin)):
        return Pinned(
            "# endpointgen from its git repository, at the commit installed where `init` ran.\n"
            "# To upgrade, put the new commit here (or a release: endpointgen==VERSION) and\n"
            "# rebuild build/ with it.\n"
            f"{git}\n",
            "git",
        )
    name, wheel = _wheel(dist)
    path = f"{VENDOR_DIR}/{name}"
    return Pinned(
        f"# endpointgen {_version(dist)} as built where `init` ran. No index holds this copy,\n"
        f"# so the repository does: commit {path} with this file\n"
        "# (the path is from the repository root, where the workflow runs pip).\n"
        "# When you upgrade endpointgen, replace this wheel with the new one, or point this\n"
        "# line at a release (endpointgen==VERSION) or a pushed commit\n"
        "# (endpointgen @ git+https://HOST/OWNER/REPO.git@COMMIT).\n"
        f"./{path}\n",
        "wheel",
        {path: wheel},
    )


def build_wheel(dist: metadata.Distribution | None = None) -> tuple[str, bytes]:
    """(file name, bytes) of a py3-none-any wheel of the running endpointgen: every file of
    its package (no bytecode), the templates as `endpointgen/templates/`, and `dist`'s
    metadata. No network, no build backend; the same code makes the same bytes."""
    return _wheel(_running(dist))


def _wheel(dist: metadata.Distribution | None) -> tuple[str, bytes]:
    version = _version(dist)
    files = package_files()
    info = f"{NAME}-{_escape(version)}.dist-info"
    name = f"{NAME}-{_escape(version)}-py3-none-any.whl"
    files[f"{info}/METADATA"] = _metadata_file(dist, version).encode()
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\n"
        f"Generator: endpointgen {__version__}\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    ).encode()
    files[f"{info}/entry_points.txt"] = _entry_points(dist).encode()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        writer.writerow([path, f"sha256={digest.decode()}", len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    files[f"{info}/RECORD"] = record.getvalue().encode()

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as wheel:
        for path, data in files.items():
            entry = zipfile.ZipInfo(path, date_time=_EPOCH)
            entry.create_system = 3  # unix, whatever builds it
            entry.external_attr = 0o100644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(entry, data, compresslevel=9)
    return name, buffer.getvalue()


def package_files() -> dict[str, bytes]:
    """The running endpointgen's files as a wheel holds them (path -> bytes, sorted): its
    package folder without bytecode, and the templates under `endpointgen/templates/`."""
    package = Path(endpointgen.__file__).parent
    files = {f"{NAME}/{rel}": data for rel, data in _tree(package)}
    if not (package / "templates").is_dir():  # a checkout keeps them at the top
        files.update((f"{NAME}/templates/{rel}", data) for rel, data in _tree(templates_dir()))
    return dict(sorted(files.items()))


def _tree(folder: Path) -> list[tuple[str, bytes]]:
    found = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo") or not path.is_file():
            continue
        found.append((rel.as_posix(), path.read_bytes()))
    return found


def _running(dist: metadata.Distribution | None) -> metadata.Distribution | None:
    """`dist`, or the installed endpointgen; None when that is not the code running here
    (no distribution, or another version: a checkout on PYTHONPATH)."""
    if dist is None:
        try:
            dist = metadata.distribution(NAME)
        except metadata.PackageNotFoundError:
            return None
    return dist if dist.version == __version__ else None


def _version(dist: metadata.Distribution | None) -> str:
    return dist.version if dist is not None else __version__


def _installer(dist: metadata.Distribution) -> str:
    return (dist.read_text("INSTALLER") or "").strip().lower()


def _direct_url(dist: metadata.Distribution) -> dict[str, object] | None:
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    try:
        origin = json.loads(text)
    except ValueError:
        return {}  # unreadable: neither an index release nor a known source
    return origin if isinstance(origin, dict) else {}


def _git_requirement(origin: dict[str, object]) -> str | None:
    """`endpointgen @ git+https://...@COMMIT` for a git install or a pushed, unedited
    checkout; None for anything pip on a clean runner could not fetch as it is here."""
    url, vcs = origin.get("url"), origin.get("vcs_info")
    if not isinstance(url, str):
        return None
    subdirectory = origin.get("subdirectory")
    if isinstance(vcs, dict):
        commit = vcs.get("commit_id")
        if vcs.get("vcs") != "git" or not isinstance(commit, str):
            return None
        https = _https(url)
    elif url.startswith("file://") and not url.lower().endswith(".whl"):
        found = _checkout(Path(unquote(urlsplit(url).path)))
        if found is None:
            return None
        https, commit, subdirectory = found
    else:
        return None
    if https is None or not _COMMIT.fullmatch(commit):
        return None
    pinned = f"{NAME} @ git+{https}@{commit}"
    if subdirectory:
        if not isinstance(subdirectory, str) or not _PATH.fullmatch(f"/{subdirectory}"):
            return None
        pinned += f"#subdirectory={subdirectory}"
    return pinned


def _https(url: str) -> str | None:
    """An https URL for a git remote (user names and tokens dropped), or None for one a
    runner cannot fetch that way (a local path, http, git://)."""
    url = url.strip().removeprefix("git+").rstrip("/")
    scp = re.fullmatch(r"(?:[^@/:]+@)?([^@/:]+):(?!//)(.+)", url)
    if scp:  # git@host:owner/repo.git
        host, path = scp.group(1), "/" + scp.group(2).lstrip("/")
    else:
        parts = urlsplit(url)
        if parts.scheme not in ("https", "ssh") or parts.query or parts.fragment:
            return None
        host = parts.hostname or ""
        if parts.scheme == "https" and parts.port is not None:
            host += f":{parts.port}"  # an ssh port says nothing about the https one
        path = parts.path
    if not _HOST.fullmatch(host) or not _PATH.fullmatch(path):
        return None
    return f"https://{host}{path}"


def _checkout(folder: Path) -> tuple[str, str, str | None] | None:
    """(https origin, HEAD, subdirectory) when `folder` is a git checkout whose HEAD is
    on a branch of `origin`, with no tracked file edited, and whose package files are the
    running ones (what pip on a runner would build from that commit)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=60
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout if done.returncode == 0 else None

    prefix = git("rev-parse", "--show-prefix")
    remote = git("remote", "get-url", "origin")
    commit = git("rev-parse", "--verify", "HEAD")
    if prefix is None or remote is None or commit is None:
        return None
    https = _https(remote)
    if https is None:
        return None
    if git("status", "--porcelain", "--untracked-files=no", "--", ".") != "":
        return None  # edited tracked files (or git failed)
    if not (git("branch", "-r", "--list", "origin/*", "--contains", "HEAD") or "").strip():
        return None  # the commit is on no branch of origin: the runner cannot fetch it
    running = {_source_path(folder, path): data for path, data in package_files().items()}
    listed = git("ls-files", "-z", "--", NAME, "templates")
    if listed is None or set(filter(None, listed.split("\0"))) != set(running):
        return None  # a file the commit lacks (not added), or one the running copy lacks
    for path, data in running.items():
        try:
            if (folder / path).read_bytes() != data:
                return None  # installed from here before the last commits
        except OSError:
            return None
    subdirectory = prefix.strip().rstrip("/") or None
    return https, commit.strip(), subdirectory


def _source_path(folder: Path, path: str) -> str:
    """Where a wheel path sits in a checkout: pyproject moves top-level templates/ in."""
    templates = f"{NAME}/templates/"
    if path.startswith(templates) and not (folder / NAME / "templates").is_dir():
        return path[len(NAME) + 1 :]
    return path


def _metadata_file(dist: metadata.Distribution | None, version: str) -> str:
    if dist is not None:
        meta = dist.metadata

        def first(key: str) -> str | None:
            return next(iter(meta.get_all(key) or []), None)

        summary, python, license_ = first("Summary"), first("Requires-Python"), first("License")
        extras = list(meta.get_all("Provides-Extra") or [])
        requires = list(dist.requires or [])
    else:
        summary, python, license_, extras, requires = _pyproject_metadata()
    lines = ["Metadata-Version: 2.1", f"Name: {NAME}", f"Version: {version}"]
    if summary:
        lines.append(f"Summary: {summary}")
    if license_ and "\n" not in license_:
        lines.append(f"License: {license_}")
    if python:
        lines.append(f"Requires-Python: {python}")
    lines += [f"Requires-Dist: {r}" for r in requires]
    lines += [f"Provides-Extra: {e}" for e in extras]
    return "\n".join(lines) + "\n"


def _entry_points(dist: metadata.Distribution | None) -> str:
    if dist is not None:
        groups: dict[str, dict[str, str]] = {}
        for entry in dist.entry_points:
            groups.setdefault(entry.group, {})[entry.name] = entry.value
    else:
        scripts = _pyproject().get("scripts")
        groups = (
            {"console_scripts": {str(k): str(v) for k, v in scripts.items()}}
            if (isinstance(scripts, dict) and scripts)
            else {}
        )
    return "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(entries.items())) + "\n"
        for group, entries in sorted(groups.items())
    )


def _pyproject() -> dict[str, object]:
    """The project table of the checkout endpointgen runs from, when no installed
    distribution describes it."""
    path = Path(endpointgen.__file__).parent.parent / "pyproject.toml"
    try:
        project = tomllib.loads(path.read_text(encoding="utf-8")).get("project")
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    return project if isinstance(project, dict) and project.get("name") == NAME else {}


def _pyproject_metadata() -> tuple[str | None, str | None, str | None, list[str], list[str]]:
    project = _pyproject()
    optional = project.get("optional-dependencies")
    optional = optional if isinstance(optional, dict) else {}
    requires = [str(r) for r in _list(project.get("dependencies"))]
    for extra, deps in sorted(optional.items()):
        for dep in _list(deps):
            spec, _, marker = dep.partition(";")
            condition = (
                f'({marker.strip()}) and extra == "{extra}"'
                if marker.strip()
                else (f'extra == "{extra}"')
            )
            requires.append(f"{spec.strip()}; {condition}")
    license_ = project.get("license")
    text = license_.get("text") if isinstance(license_, dict) else license_
    summary, python = project.get("description"), project.get("requires-python")
    return (
        summary if isinstance(summary, str) else None,
        python if isinstance(python, str) else None,
        text if isinstance(text, str) else None,
        sorted(optional),
        requires,
    )


def _list(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _escape(version: str) -> str:
    """A version as a wheel's file name spells it (PEP 427)."""
    return re.sub(r"[^\w\d.+]+", "_", version)
