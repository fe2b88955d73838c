"""`make lock`: resolve the image lock from the tested environment.

Every package a built module's image installs is pinned to the version the test suite
ran against: the direct ones in `plan.py`, and everything they pull in, found here by
walking the installed distributions' requirements as they resolve in a Modal image
(Linux, x86_64, CPython `PYTHON_VERSION`). The result is
`endpointgen/runtime/locks/tested.json`, which built modules read at deploy time
(`runtime.locked`), and which the Makefile turns into pip constraints, so the test
environment is the lock and the lock is the test environment. `tests/compiler/test_lock.py` fails
when the two drift apart.

vLLM needs a GPU, so no test environment holds it: the vLLM image's lock,
`endpointgen/runtime/locks/vllm.json` (`runtime.locked(..., lock="vllm")`), is pip's own
resolution of `VLLM_ROOTS` from PyPI (`make lock-vllm`, which needs the network), run
without installing anything (`pip install --dry-run --report`) for the image: manylinux
x86_64 wheels for CPython `PYTHON_VERSION`. pip reads each wheel's metadata, and this
module each wheel's file listing, by HTTP ranges, never the wheels themselves: vLLM's
torch and CUDA wheels are gigabytes.

    python -m endpointgen.compiler.lock        # rewrite endpointgen/runtime/locks/tested.json
    python -m endpointgen.compiler.lock vllm   # rewrite endpointgen/runtime/locks/vllm.json

A lock file is JSON, its keys sorted and one entry a line, so a diff shows each package
that moved: `about` (where it comes from, for which image, how to rewrite it), `pins`,
`requires` and `modules` (`runtime.ImageLock`).
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from endpointgen.compiler.plan import (
    EXTRA_PACKAGES,
    MODEL_PACKAGES,
    PYTHON_VERSION,
    VLLM_PACKAGES,
    VLLM_WEB_PACKAGES,
    WEB_PACKAGES,
)

EXTRAS = tuple(sorted({p for ps in EXTRA_PACKAGES.values() for p in ps}))
ROOTS = (*WEB_PACKAGES, *MODEL_PACKAGES, *(p for ps in EXTRA_PACKAGES.values() for p in ps))
# The vLLM image: vLLM, the web packages it allows, and every extra a spec may add. A vLLM
# app's own features bring redis, pyjwt, prometheus-client and OpenTelemetry; an app that
# also serves transformers models has their tasks' extras in the same image.
VLLM_ROOTS = (*VLLM_WEB_PACKAGES, *VLLM_PACKAGES, *EXTRAS)
LOCKS = Path(__file__).resolve().parent.parent / "runtime" / "locks"
LOCK_FILE = LOCKS / "tested.json"
VLLM_LOCK_FILE = LOCKS / "vllm.json"
# Where a built module runs: the markers its image's requirements are resolved with.
IMAGE = {
    "python_version": PYTHON_VERSION,
    # Modal's builds are recent patch releases; the tested interpreter stands in for them.
    "python_full_version": platform.python_version(),
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
}
INDEX_URL = "https://pypi.org/simple"
# The image's glibc: Modal's debian_slim is Debian bookworm (2.36) or, on newer image
# builders, trixie (2.41); wheels for 2.36 and older install on both.
GLIBC_MINOR = 36
PLATFORMS = (
    *(f"manylinux_2_{minor}_x86_64" for minor in range(GLIBC_MINOR, 4, -1)),
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
)
# pip's scratch space past this means it is fetching whole wheels, not their metadata.
SCRATCH_LIMIT = 256 * 1024 * 1024


class Unlockable(Exception):
    """A package the image installs is missing from the tested environment."""


class Unresolvable(Exception):
    """pip cannot resolve the vLLM image here, or would have to download its wheels to."""


def version(name: str) -> str:
    """The installed version, without a local label (`2.13.0+cpu` -> `2.13.0`)."""
    try:
        return metadata.version(name).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        raise Unlockable(f"{name} is not installed here; install it, then lock") from None


def installed(name: str) -> tuple[str, list[str]]:
    """An installed distribution's version and requirement lines."""
    pinned = version(name)  # Unlockable when the tested environment lacks it
    return pinned, metadata.distribution(name).requires or []


def closure(
    roots: Iterable[str], lookup: Callable[[str], tuple[str, list[str]]]
) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, requirements) for every distribution the roots pull in under the
    image's markers, extras followed; `lookup` gives a name's version and requirement
    lines."""
    found: dict[str, tuple[str, set[str]]] = {}
    extras: dict[str, set[str]] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        wanted = extras.setdefault(name, set())
        if name in found and requirement.extras <= wanted:
            continue
        wanted |= requirement.extras
        pinned, lines = lookup(name)
        requires: set[str] = set()
        for line in lines:
            needed = Requirement(line)
            marker = needed.marker
            if marker is not None and not any(
                marker.evaluate({**IMAGE, "extra": extra}) for extra in wanted or {""}
            ):
                continue
            requires.add(canonicalize_name(needed.name))
            todo.append(needed)
        found[name] = (pinned, requires)
    return found


def walk(roots: Iterable[str]) -> dict[str, tuple[str, set[str], set[str]]]:
    """name -> (version, requirements, top-level modules) for every installed distribution
    the roots pull in under the image's markers, extras followed."""
    return {
        name: (pinned, requires, modules(metadata.distribution(name)))
        for name, (pinned, requires) in closure(roots, installed).items()
    }


def modules(dist: metadata.Distribution) -> set[str]:
    """The top-level names a distribution makes importable."""
    return top_level(dist.read_text("top_level.txt"), (file.parts for file in dist.files or []))


def top_level(listed: str | None, paths: Iterable[Sequence[str]]) -> set[str]:
    """The top-level names a distribution's `top_level.txt`, else its files, make
    importable."""
    if listed:  # a package in a folder is listed by its path: `nvidia/cusparselt`
        return {line.strip().split("/")[0] for line in listed.splitlines() if line.strip()}
    names = set()
    for parts in paths:
        top = parts[0]
        if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
            continue
        if len(parts) > 1 or top.endswith(".py"):
            names.add(re.sub(r"\.py$", "", top))
    return {name for name in names if name.isidentifier()}


# What each lock file says of itself, under `about`.
TESTED_ABOUT = {
    "source": "the tested environment: each package at the version the tests ran",
    "regenerate": "edit plan.py's pins, install them, then run `make lock`",
    "checked_by": "tests/compiler/test_lock.py: it fails when this lock is not current",
    "platform": "Linux x86_64",
    "python": f"CPython {PYTHON_VERSION}",
    "pins": "every package a built module's image installs, at the version the tests ran",
    "requires": "what each pulls in, in a Modal image (the platform and Python above)",
    "modules": "every top-level module those packages and Modal's own client make importable",
}
# vLLM needs a GPU, so no test environment holds it.
VLLM_ABOUT = {
    "source": "PyPI, by pip's own resolver run without installing anything "
    "(`pip install --dry-run --report`): plan.py's vLLM pins and every extra a spec may add",
    "regenerate": "edit plan.py's pins, then run `make lock-vllm` (needs the network)",
    "checked_by": "tests/compiler/test_lock.py: it fails when plan.py's pins are not in this lock",
    "platform": f"Linux x86_64, manylinux wheels up to glibc 2.{GLIBC_MINOR}",
    "python": f"CPython {PYTHON_VERSION}",
    "pins": "every package the vLLM image may install, at the version pip resolved",
    "requires": "what each pulls in, in a Modal image (the platform and Python above)",
    "modules": "every top-level module those packages' wheels and Modal's own client make "
    "importable",
}


def render(roots: Iterable[str] = ROOTS) -> str:
    """tested.json: the tested environment's resolution of the image."""
    image = walk(roots)
    container = walk(["modal"])  # Modal installs its own client in every container
    names = {m for _, _, mods in image.values() for m in mods}
    names |= {m for _, _, mods in container.values() for m in mods}
    pinned = {name: (pins, requires) for name, (pins, requires, _) in image.items()}
    return lock_json(TESTED_ABOUT, pinned, names)


def render_vllm(roots: Iterable[str] = VLLM_ROOTS) -> str:
    """vllm.json: pip's resolution of the vLLM image, read from PyPI."""
    roots = sorted(set(roots))
    report = resolve(roots)
    wheels: dict[str, tuple[str, list[str], str]] = {
        canonicalize_name(item["metadata"]["name"]): (
            item["metadata"]["version"],
            item["metadata"].get("requires_dist", []),
            item["download_info"]["url"],
        )
        for item in report["install"]
    }

    def resolved(name: str) -> tuple[str, list[str]]:
        if name not in wheels:
            raise Unresolvable(f"the image needs {name}, which pip did not resolve")
        return wheels[name][:2]

    image = closure(roots, resolved)
    if set(image) != set(wheels):
        differ = sorted(set(image) ^ set(wheels))
        raise Unresolvable(f"pip's resolution and the image's markers disagree on {differ}")
    with ThreadPoolExecutor(max_workers=8) as pool:
        listed = pool.map(wheel_modules, (wheels[name][2] for name in sorted(wheels)))
        names = set().union(*listed)
    names |= {m for _, _, mods in walk(["modal"]).values() for m in mods}
    return lock_json(VLLM_ABOUT, image, names)


def lock_json(
    about: Mapping[str, str], image: Mapping[str, tuple[str, set[str]]], imported: set[str]
) -> str:
    """A lock file: `about`, then `modules`, `pins` and `requires` (a package that pulls
    in nothing is left out of it); keys sorted, one entry a line."""
    requires = {name: sorted(image[name][1]) for name in image if image[name][1]}
    return (
        "{\n"
        + ",\n".join(
            f"  {q(key)}: {value}"
            for key, value in [
                ("about", block(about)),
                ("modules", block(sorted(imported))),
                ("pins", block({name: version for name, (version, _) in image.items()})),
                ("requires", block(requires)),
            ]
        )
        + "\n}\n"
    )


def block(value: Mapping[str, object] | list[str]) -> str:
    """A JSON object (keys sorted) or array, one entry a line, nested two spaces in."""
    if isinstance(value, list):
        lines = [json.dumps(item) for item in value]
        opening, closing = "[", "]"
    else:
        lines = [f"{q(key)}: {json.dumps(value[key])}" for key in sorted(value)]
        opening, closing = "{", "}"
    if not lines:
        return opening + closing
    return opening + "\n" + ",\n".join(f"    {line}" for line in lines) + "\n  " + closing


def resolve(
    roots: Sequence[str], constraints: Sequence[str] = (), timeout: float = 1800
) -> dict[str, Any]:
    """pip's installation report for `roots` (under `constraints`) in the image, from PyPI:
    nothing is installed, and no wheel is downloaded whole.

    pip evaluates requirement markers for the interpreter it runs on, so this runs only on
    one like the image's. The machine's own pip settings (other indexes, local wheels,
    constraints) are left out: the image sees PyPI alone.
    """
    host = {key: str(value) for key, value in default_environment().items()}
    for key in ("python_version", "implementation_name", "sys_platform", "platform_machine"):
        if host[key] != IMAGE[key]:
            raise Unresolvable(
                f"pip resolves markers for the interpreter it runs on: this one has "
                f"{key} {host[key]!r}, the image {IMAGE[key]!r}; "
                f"run this on Linux x86_64 with CPython {PYTHON_VERSION}"
            )
    with tempfile.TemporaryDirectory(prefix="endpointgen-lock-") as folder:
        scratch = Path(folder)
        (scratch / "tmp").mkdir()
        (scratch / "constraints.txt").write_text("".join(f"{c}\n" for c in constraints))
        command = [
            *(sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"),
            *("--quiet", "--no-input", "--disable-pip-version-check", "--no-cache-dir"),
            # Each wheel's metadata by HTTP ranges: PyPI does not serve every wheel's apart.
            "--use-feature=fast-deps",
            *("--report", str(scratch / "report.json"), "--index-url", INDEX_URL),
            *("--only-binary=:all:", "--implementation", "cp"),
            *("--python-version", PYTHON_VERSION),
            *("--abi", "cp" + PYTHON_VERSION.replace(".", "")),
            *(option for name in PLATFORMS for option in ("--platform", name)),
            *("--constraint", str(scratch / "constraints.txt")),
            *roots,
        ]
        env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
        env |= {"PIP_CONFIG_FILE": os.devnull, "TMPDIR": str(scratch / "tmp")}
        with (
            open(scratch / "pip.log", "w+b") as log,
            subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT) as pip,
        ):
            deadline = time.monotonic() + timeout
            while pip.poll() is None:
                why = None
                if disk_use(scratch) > SCRATCH_LIMIT:
                    why = "pip is downloading whole wheels (the index serves no HTTP ranges)"
                elif time.monotonic() > deadline:
                    why = f"pip did not resolve the image in {timeout:.0f}s"
                if why:
                    pip.kill()
                    pip.wait()
                    raise Unresolvable(why)
                time.sleep(0.5)
            log.seek(0)
            said = log.read().decode(errors="replace").strip()
        if pip.returncode != 0:
            raise Unresolvable(f"pip could not resolve the image:\n{said}")
        report: dict[str, Any] = json.loads((scratch / "report.json").read_text())
    return report


def disk_use(folder: Path) -> int:
    """Bytes on disk under `folder`: pip's range-read wheels are sparse files."""
    used = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                used += os.stat(os.path.join(root, name)).st_blocks * 512
            except OSError:  # pip removed it meanwhile
                pass
    return used


def wheel_modules(url: str) -> set[str]:
    """The top-level names a wheel makes importable, from its listing read by ranges."""
    with zipfile.ZipFile(RemoteFile(url)) as wheel:
        return archived_modules(wheel)


def archived_modules(wheel: zipfile.ZipFile) -> set[str]:
    """The top-level names a wheel makes importable, once installed."""
    files = wheel.namelist()
    listed = [f for f in files if re.fullmatch(r"[^/]+\.dist-info/top_level\.txt", f)]
    top_level_txt = wheel.read(listed[0]).decode() if listed else None
    paths = []
    for file in files:
        parts = file.split("/")
        if parts[0].endswith(".data") and parts[1:2] in (["purelib"], ["platlib"]):
            parts = parts[2:]  # installed beside the rest, in site-packages
        paths.append(parts)
    return top_level(top_level_txt, paths)


class RemoteFile(io.RawIOBase):
    """A file on an HTTP server, read by ranges, for `zipfile`: a wheel's listing without
    the wheel."""

    BLOCK = 256 * 1024

    def __init__(self, url: str, timeout: float = 60) -> None:
        super().__init__()
        self.url, self.timeout, self.position = url, timeout, 0
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            self.size = int(answer.headers["Content-Length"])
        self.cached = (0, b"")

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        start = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, start + offset)
        return self.position

    def readinto(self, buffer: Any) -> int:
        want = min(len(buffer), self.size - self.position)
        if want <= 0:
            return 0
        start, data = self.cached
        if not start <= self.position <= self.position + want <= start + len(data):
            start = self.position
            end = min(self.size, start + max(want, self.BLOCK)) - 1
            headers = {"Range": f"bytes={start}-{end}"}
            request = urllib.request.Request(self.url, headers=headers)
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                if answer.status != 206:
                    raise Unresolvable(f"{self.url} is served whole, not by ranges")
                data = answer.read()
            self.cached = (start, data)
        chunk = data[self.position - start : self.position - start + want]
        buffer[: len(chunk)] = chunk
        self.position += len(chunk)
        return len(chunk)


def q(text: str) -> str:
    return json.dumps(text)


def main(argv: Sequence[str] = sys.argv[1:]) -> int:
    vllm = list(argv) == ["vllm"]
    if argv and not vllm:
        print("usage: python -m endpointgen.compiler.lock [vllm]", file=sys.stderr)
        return 2
    try:
        written, file = (render_vllm(), VLLM_LOCK_FILE) if vllm else (render(), LOCK_FILE)
    except (Unlockable, Unresolvable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(written)
    print(f"wrote {file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
