"""`make lock`: resolve the image lock from the tested environment.

Every package a built module's image installs is pinned to the version the test suite
ran against: the direct ones in `plan.py`, and everything they pull in, found here by
walking the installed distributions' requirements as they resolve in a Modal image
(Linux, x86_64, CPython `PYTHON_VERSION`). The result is `endpointgen/runtime/lock.py`,
which built modules read at deploy time (`runtime.locked`), and which the Makefile turns
into pip constraints, so the test environment is the lock and the lock is the test
environment. `tests/test_lock.py` fails when the two drift apart.

    python -m endpointgen.compiler.lock            # rewrite endpointgen/runtime/lock.py
"""

from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from endpointgen.compiler.plan import EXTRA_PACKAGES, MODEL_PACKAGES, PYTHON_VERSION, WEB_PACKAGES

ROOTS = (*WEB_PACKAGES, *MODEL_PACKAGES, *(p for ps in EXTRA_PACKAGES.values() for p in ps))
LOCK_FILE = Path(__file__).resolve().parent.parent / "runtime" / "lock.py"
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


class Unlockable(Exception):
    """A package the image installs is missing from the tested environment."""


def version(name: str) -> str:
    """The installed version, without a local label (`2.13.0+cpu` -> `2.13.0`)."""
    try:
        return metadata.version(name).split("+", 1)[0]
    except metadata.PackageNotFoundError:
        raise Unlockable(f"{name} is not installed here; install it, then lock") from None


def walk(roots: Iterable[str]) -> dict[str, tuple[str, set[str], set[str]]]:
    """name -> (version, requirements, top-level modules) for every distribution the
    roots pull in under the image's markers, extras followed."""
    found: dict[str, tuple[str, set[str], set[str]]] = {}
    extras: dict[str, set[str]] = {}
    todo = [Requirement(root) for root in roots]
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        wanted = extras.setdefault(name, set())
        if name in found and requirement.extras <= wanted:
            continue
        wanted |= requirement.extras
        pinned = version(name)  # Unlockable when the tested environment lacks it
        dist = metadata.distribution(name)
        requires: set[str] = set()
        for line in dist.requires or []:
            needed = Requirement(line)
            marker = needed.marker
            if marker is not None and not any(
                marker.evaluate({**IMAGE, "extra": extra}) for extra in wanted or {""}
            ):
                continue
            requires.add(canonicalize_name(needed.name))
            todo.append(needed)
        found[name] = (pinned, requires, modules(dist))
    return found


def modules(dist: metadata.Distribution) -> set[str]:
    """The top-level names a distribution makes importable."""
    listed = dist.read_text("top_level.txt")
    if listed:
        return {line.strip() for line in listed.splitlines() if line.strip()}
    names = set()
    for file in dist.files or []:
        top = file.parts[0]
        if top.endswith((".dist-info", ".data")) or top in ("..", "__pycache__"):
            continue
        if len(file.parts) > 1 or top.endswith(".py"):
            names.add(re.sub(r"\.py$", "", top))
    return {name for name in names if name.isidentifier()}


def render(roots: Iterable[str] = ROOTS) -> str:
    image = walk(roots)
    container = walk(["modal"])  # Modal installs its own client in every container
    names = sorted(
        {m for _, _, mods in image.values() for m in mods}
        | {m for _, _, mods in container.values() for m in mods}
    )
    pins = "".join(f"    {q(name)}: {q(image[name][0])},\n" for name in sorted(image))
    requires = "".join(
        entry(name, sorted(image[name][1])) for name in sorted(image) if image[name][1]
    )
    imported = "".join(f"        {q(name)},\n" for name in names)
    return f'''"""The image lock, written by `make lock` from the tested environment: edit plan.py's
pins, install them, then run `make lock`. `tests/test_lock.py` checks it is current.

`PINS`: every package a built module's image installs, at the version the tests ran.
`REQUIRES`: what each pulls in, in a Modal image (Linux, CPython {PYTHON_VERSION}).
`MODULES`: every top-level module those packages and Modal's own client make importable.
"""

PINS: dict[str, str] = {{
{pins}}}

REQUIRES: dict[str, tuple[str, ...]] = {{
{requires}}}

MODULES: frozenset[str] = frozenset(
    {{
{imported}    }}
)
'''


def q(text: str) -> str:
    return json.dumps(text)


def entry(name: str, items: list[str]) -> str:
    """One `REQUIRES` line, laid out as `ruff format` does at width 100."""
    inner = ", ".join(map(q, items)) + ("," if len(items) == 1 else "")
    line = f"    {q(name)}: ({inner}),\n"
    if len(line) <= 101:
        return line
    return f"    {q(name)}: (\n" + "".join(f"        {q(i)},\n" for i in items) + "    ),\n"


def main() -> int:
    try:
        text = render()
    except Unlockable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    LOCK_FILE.write_text(text)
    print(f"wrote {LOCK_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
