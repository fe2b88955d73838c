"""What `init --gitops` pins in requirements-endpointgen.txt: something pip on a clean
runner installs as it is, decided from how the running endpointgen was installed (real
distributions on disk, real git repositories, real pip)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from conftest import ROOT
from packaging.requirements import Requirement

import endpointgen
from endpointgen import __version__
from endpointgen.errors import UsageError
from endpointgen.gitops import install, scaffold

PIP = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps"]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
WHEEL = f"./.endpointgen/endpointgen-{__version__}-py3-none-any.whl"
GIT = [
    "git",
    "-c",
    "user.name=t",
    "-c",
    "user.email=t@example.com",
    "-c",
    "init.defaultBranch=main",
]


def installed(
    tmp_path: Path,
    direct_url: Mapping[str, object] | None = None,
    version: str = __version__,
    installer: str = "pip",
) -> metadata.Distribution:
    """An installed endpointgen's .dist-info, as pip leaves it."""
    site = Path(tempfile.mkdtemp(prefix="site", dir=tmp_path))
    info = site / f"endpointgen-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.3\nName: endpointgen\n"
        f"Version: {version}\nRequires-Python: >=3.11\n"
        "Requires-Dist: pyyaml>=6.0\n"
        "Requires-Dist: torch>=2.4; extra == 'models'\n"
        "Provides-Extra: models\n"
    )
    (info / "INSTALLER").write_text(f"{installer}\n")
    (info / "entry_points.txt").write_text(
        "[console_scripts]\nendpointgen = endpointgen.console:main\n"
    )
    if direct_url is not None:
        (info / "direct_url.json").write_text(json.dumps(direct_url))
    return metadata.PathDistribution(info)


def requirement(text: str) -> str:
    """The one line that is not a comment."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, text
    return lines[0]


def assert_fetchable(line: str) -> Requirement:
    """A line pip fetches over https from the named host, with no credentials in it."""
    req = Requirement(line)
    assert req.name == "endpointgen"
    assert req.url is not None and req.url.startswith("git+https://"), line
    parts = urlsplit(req.url.removeprefix("git+"))
    assert parts.username is None and parts.password is None, line
    assert "@" not in parts.netloc, line
    return req


def test_an_index_release_is_pinned_by_version(tmp_path: Path) -> None:
    """docs/spec.md, GitOps: installed from an index (no direct_url.json): the version."""
    pinned = install.pin(tmp_path, installed(tmp_path))
    assert pinned.source == "index" and pinned.files == {}
    assert pinned.text.startswith("# endpointgen from the package index")
    req = Requirement(requirement(pinned.text))
    assert (req.name, str(req.specifier), req.url) == ("endpointgen", f"=={__version__}", None)


def test_a_copy_no_index_installed_is_never_named_bare(tmp_path: Path) -> None:
    """A distribution another tool put there (conda, a distro) is vendored, never
    `endpointgen==VERSION`: whoever took that name on PyPI would run in the job."""
    pinned = install.pin(tmp_path, installed(tmp_path, installer="conda"))
    assert pinned.source == "wheel"
    assert requirement(pinned.text) == WHEEL
    assert "endpointgen==" not in requirement(pinned.text)


@pytest.mark.parametrize(
    ("url", "https"),
    [
        ("git@github.com:acme/endpointgen.git", "https://github.com/acme/endpointgen.git"),
        ("ssh://git@github.com/acme/endpointgen", "https://github.com/acme/endpointgen"),
        (
            "git+ssh://git@git.example.com:2222/acme/endpointgen.git",
            "https://git.example.com/acme/endpointgen.git",
        ),
        (
            "https://someone:ghp_secret@github.com/acme/endpointgen.git",
            "https://github.com/acme/endpointgen.git",
        ),
        ("https://github.com/acme/endpointgen.git", "https://github.com/acme/endpointgen.git"),
    ],
)
def test_a_git_install_is_pinned_to_its_commit_over_https(
    tmp_path: Path, url: str, https: str
) -> None:
    """From a git URL: `endpointgen @ git+https://...@COMMIT`; SSH forms (which a runner
    has no key for, and `git+git@...`, which pip refuses) made https, tokens dropped."""
    origin = {"url": url, "vcs_info": {"vcs": "git", "commit_id": COMMIT}}
    pinned = install.pin(tmp_path, installed(tmp_path, origin))
    assert pinned.source == "git" and pinned.files == {}
    line = requirement(pinned.text)
    assert line == f"endpointgen @ git+{https}@{COMMIT}"
    assert_fetchable(line)
    assert "secret" not in pinned.text
    assert pinned.text.startswith("# endpointgen from its git repository")


def test_a_git_install_from_a_subdirectory_keeps_it(tmp_path: Path) -> None:
    origin = {
        "url": "https://github.com/acme/tools.git",
        "vcs_info": {"vcs": "git", "commit_id": COMMIT},
        "subdirectory": "python/endpointgen",
    }
    line = requirement(install.pin(tmp_path, installed(tmp_path, origin)).text)
    assert line.endswith(f"@{COMMIT}#subdirectory=python/endpointgen")
    assert_fetchable(line)


@pytest.mark.parametrize(
    "origin",
    [
        {"url": "file:///srv/git/endpointgen", "vcs_info": {"vcs": "git", "commit_id": COMMIT}},
        {"url": "http://git.example.com/e.git", "vcs_info": {"vcs": "git", "commit_id": COMMIT}},
        {"url": "https://hg.example.com/e", "vcs_info": {"vcs": "hg", "commit_id": COMMIT}},
        {"url": "https://github.com/acme/e.git", "vcs_info": {"vcs": "git"}},  # no commit
        {"url": "file:///tmp/endpointgen-0.2.0-py3-none-any.whl", "archive_info": {}},
        {"url": "https://files.example.com/endpointgen.tar.gz", "archive_info": {}},
    ],
)
def test_a_source_a_runner_cannot_fetch_as_is_is_vendored(
    tmp_path: Path, origin: dict[str, object]
) -> None:
    """A local or plain-http repository, another VCS, a wheel or archive file: the wheel."""
    pinned = install.pin(tmp_path, installed(tmp_path, origin))
    assert pinned.source == "wheel"
    assert requirement(pinned.text) == WHEEL
    assert list(pinned.files) == [WHEEL.removeprefix("./")]


def git(folder: Path, *args: str) -> str:
    done = subprocess.run([*GIT, *args], cwd=folder, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout of endpointgen's sources (as they run here), pushed to a bare `origin`."""
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(endpointgen.__file__).parent, src / "endpointgen", ignore=ignore)
    if not (src / "endpointgen" / "templates").is_dir():
        shutil.copytree(ROOT / "templates", src / "templates", ignore=ignore)
    (src / "README.md").write_text("endpointgen\n")
    bare = tmp_path / "origin.git"
    subprocess.run([*GIT, "init", "-q", "--bare", str(bare)], check=True)
    git(src.parent, "init", "-q", str(src))
    git(src, "add", "-A")
    git(src, "commit", "-qm", "sources")
    git(src, "remote", "add", "origin", str(bare))
    git(src, "push", "-q", "-u", "origin", "main")
    return src


def from_folder(tmp_path: Path, folder: Path) -> metadata.Distribution:
    return installed(tmp_path, {"url": folder.as_uri(), "dir_info": {"editable": True}})


def on_github(checkout: Path) -> None:
    """origin fetched from GitHub over SSH; pushes still go to the local bare repository."""
    bare = git(checkout, "remote", "get-url", "origin")
    git(checkout, "config", "remote.origin.pushurl", bare)
    git(checkout, "config", "remote.origin.url", "git@github.com:acme/endpointgen.git")


def test_a_pushed_clean_checkout_is_pinned_to_its_commit(tmp_path: Path, checkout: Path) -> None:
    """From a local checkout, unedited, its commit on a branch of origin: that commit."""
    on_github(checkout)
    pinned = install.pin(tmp_path, from_folder(tmp_path, checkout))
    head = git(checkout, "rev-parse", "HEAD")
    line = requirement(pinned.text)
    assert line == f"endpointgen @ git+https://github.com/acme/endpointgen.git@{head}"
    assert_fetchable(line)
    assert pinned.source == "git" and pinned.files == {}


def test_a_checkout_in_a_subdirectory_names_it(tmp_path: Path, checkout: Path) -> None:
    """A checkout whose package sits below the repository root: `#subdirectory=`."""
    repo = tmp_path / "tools"
    repo.mkdir()
    shutil.move(checkout / ".git", repo / ".git")
    shutil.move(checkout, repo / "python")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "moved")
    on_github(repo)
    git(repo, "push", "-q", "origin", "main")
    line = requirement(install.pin(tmp_path, from_folder(tmp_path, repo / "python")).text)
    assert line.endswith(f"@{git(repo, 'rev-parse', 'HEAD')}#subdirectory=python")
    assert_fetchable(line)


@pytest.mark.slow
def test_a_checkout_pip_could_not_fetch_as_it_runs_is_vendored(
    tmp_path: Path, checkout: Path
) -> None:
    """An origin that is a local path, a tracked file edited, a commit not pushed, a
    package changed since it was installed, or no checkout at all: the wheel."""

    def pinned() -> str:
        return install.pin(tmp_path, from_folder(tmp_path, checkout)).source

    assert pinned() == "wheel", "origin is a path on this machine"
    on_github(checkout)
    assert pinned() == "git"

    readme = checkout / "README.md"
    readme.write_text("edited\n")
    assert pinned() == "wheel", "a tracked file edited"
    git(checkout, "commit", "-qam", "not pushed")
    assert pinned() == "wheel", "a commit not on any branch of origin"
    git(checkout, "push", "-q", "origin", "main")
    assert pinned() == "git"

    (checkout / "endpointgen" / "new.py").write_text("X = 1\n")
    git(checkout, "add", "-A")
    git(checkout, "commit", "-qm", "a module the running copy lacks")
    git(checkout, "push", "-q", "origin", "main")
    assert pinned() == "wheel", "the checkout moved on since this copy was installed"

    shutil.rmtree(checkout / ".git")
    assert pinned() == "wheel", "not a checkout"


def test_an_untracked_module_of_the_running_package_is_vendored(
    tmp_path: Path, checkout: Path
) -> None:
    """A module that runs here but was never added: the commit lacks it, so the wheel."""
    on_github(checkout)
    module = checkout / "endpointgen" / "cli.py"
    git(checkout, "rm", "-q", "--cached", str(module))
    git(checkout, "commit", "-qm", "cli.py no longer tracked")
    git(checkout, "push", "-q", "origin", "main")
    assert module.is_file()
    assert install.pin(tmp_path, from_folder(tmp_path, checkout)).source == "wheel"


def test_another_version_installed_than_the_one_running_is_vendored(tmp_path: Path) -> None:
    """A checkout run from PYTHONPATH over an older install: the running code is what the
    wheel holds, with its own version and the checkout's requirements."""
    pinned = install.pin(tmp_path, installed(tmp_path, version="0.0.1"))
    assert requirement(pinned.text) == WHEEL
    if not (ROOT / "pyproject.toml").is_file():
        return
    (data,) = pinned.files.values()
    with zipfile.ZipFile(io.BytesIO(data)) as wheel:
        meta = wheel.read(f"endpointgen-{__version__}.dist-info/METADATA").decode()
    assert f"Version: {__version__}\n" in meta
    assert "Requires-Dist: modal>=1.0\n" in meta
    assert 'Requires-Dist: torch>=2.4; extra == "models"\n' in meta


def test_the_wheel_is_the_same_bytes_every_time_and_complete(tmp_path: Path) -> None:
    """The vendored wheel: reproducible, a valid zip, every package file and template in
    it with a RECORD that hashes each one, and the installed distribution's metadata."""
    dist = installed(tmp_path)
    name, data = install.build_wheel(dist)
    assert name == f"endpointgen-{__version__}-py3-none-any.whl"
    assert install.build_wheel(dist) == (name, data)
    path = tmp_path / name
    path.write_bytes(data)
    listed = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(path)], capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert "endpointgen/__init__.py" in listed.stdout

    info = f"endpointgen-{__version__}.dist-info"
    with zipfile.ZipFile(path) as wheel:
        assert wheel.testzip() is None
        members = {i.filename: wheel.read(i) for i in wheel.infolist()}
        record = list(csv.reader(io.StringIO(members[f"{info}/RECORD"].decode())))
    assert {row[0] for row in record} == set(members)
    for path_, digest, size in record:
        if path_ == f"{info}/RECORD":
            assert digest == size == ""
            continue
        raw = hashlib.sha256(members[path_]).digest()
        assert digest == "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        assert int(size) == len(members[path_])

    package = Path(endpointgen.__file__).parent
    for source in package.rglob("*.py"):
        if "__pycache__" not in source.parts:
            rel = source.relative_to(package).as_posix()
            assert members[f"endpointgen/{rel}"] == source.read_bytes()
    for name in ("tested", "vllm"):  # the image locks `runtime.locked` reads
        lock = package / "runtime" / "locks" / f"{name}.json"
        assert members[f"endpointgen/runtime/locks/{name}.json"] == lock.read_bytes()
    for template in ("module.py.jinja", "module/routes.py.jinja", "module/modal.py.jinja"):
        assert f"endpointgen/templates/{template}" in members
    assert "endpointgen/templates/init/workflow.yml.jinja" in members
    assert not [m for m in members if m.endswith(".pyc") or "__pycache__" in m]

    meta = members[f"{info}/METADATA"].decode()
    assert meta.startswith("Metadata-Version: 2.1\nName: endpointgen\n")
    assert f"Version: {__version__}\n" in meta and "Requires-Python: >=3.11\n" in meta
    assert "Requires-Dist: pyyaml>=6.0\n" in meta
    assert "Requires-Dist: torch>=2.4; extra == 'models'\n" in meta
    assert "Provides-Extra: models\n" in meta
    wheel_file = members[f"{info}/WHEEL"].decode()
    assert "Root-Is-Purelib: true\n" in wheel_file and "Tag: py3-none-any\n" in wheel_file
    entry_points = members[f"{info}/entry_points.txt"].decode()
    assert "[console_scripts]\nendpointgen = endpointgen.console:main\n" in entry_points


def test_init_never_overwrites_a_vendored_wheel(tmp_path: Path) -> None:
    """A different file where the wheel goes stays as it was, and `init` says so."""
    if install.pin(tmp_path).source != "wheel":
        pytest.skip("this endpointgen is pinned by version or commit: no wheel to write")
    theirs = tmp_path / WHEEL
    theirs.parent.mkdir()
    theirs.write_bytes(b"theirs")
    with pytest.raises(UsageError, match="will not overwrite"):
        scaffold.init("demo", gitops=True, root=tmp_path)
    assert theirs.read_bytes() == b"theirs"


@pytest.mark.slow
def test_init_gitops_requirements_install_on_a_clean_runner(tmp_path: Path) -> None:
    """docs/spec.md, GitOps: what `init --gitops` writes installs with pip from the
    repository alone (no index), and that copy builds what this one builds."""
    repo, target = tmp_path / "repo", tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "endpointgen", "init", "demo", "--gitops", "--dir", str(repo)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    text = (repo / "requirements-endpointgen.txt").read_text()
    expected = install.pin(repo)
    assert text == expected.text
    if expected.source != "wheel":  # a checkout pushed as it is: pinned to its commit
        assert_fetchable(requirement(text))
        return
    # This checkout is editable and has no pushed, unedited commit: the wheel, vendored.
    assert requirement(text) == WHEEL
    assert (repo / WHEEL).read_bytes() == expected.files[WHEEL.removeprefix("./")]
    assert f"wrote {repo / WHEEL.removeprefix('./')}" in done.stdout

    pip = subprocess.run(
        [*PIP, "--target", str(target), "-r", "requirements-endpointgen.txt"],
        capture_output=True,
        text=True,
        cwd=repo,
        env=env,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args,
            capture_output=True,
            text=True,
            cwd=repo,  # not the checkout: only the installed copy can be imported
            env={**env, "PYTHONPATH": str(target)},
            timeout=120,
        )

    where = run(sys.executable, "-c", "import endpointgen; print(endpointgen.__file__)")
    assert Path(where.stdout.strip()).is_relative_to(target), where.stdout + where.stderr
    version = run(sys.executable, "-m", "endpointgen", "--version")
    assert version.stdout.strip() == f"endpointgen {__version__}", version.stderr
    built = run(sys.executable, "-m", "endpointgen", "build", "specs/demo.yaml", "-o", "out")
    assert built.returncode == 0, built.stderr
    assert (repo / "out" / "demo.py").read_text() == (repo / "build" / "demo.py").read_text()
    script = run(str(target / "bin" / "endpointgen"), "--version")  # the console script
    assert script.stdout.strip() == f"endpointgen {__version__}", script.stderr
