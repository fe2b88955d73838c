"""The typed library that built modules import inside their Modal container.

Everything that is the same in every app lives here: request ids, JSON errors and body
limits (`http`), auth, rate limits (`limits`), signed webhooks, dynamic batching, the
model tasks and their engines, files and uploads, the OpenAI-compatible routes and the
CPU web tier that calls model classes (`remote`). A built module holds only what its spec
says and calls into these.

The runtime imports fastapi, pydantic and starlette, and torch and transformers only
inside a model's loader. It never imports the compiler (loader, plan, templates), typer
or jinja2: a container carries it as it is.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from pathlib import PurePath
from types import MappingProxyType
from typing import Literal, NamedTuple

__all__ = ["ImageLock", "RuntimeMismatch", "image_lock", "locked", "not_shipped", "require"]


class RuntimeMismatch(RuntimeError):
    """A module built by one endpointgen version, about to run on another runtime."""


def require(built_with: str) -> None:
    """Refuse to go on when the installed runtime is not the one that built the module.

    A module's image ships the `endpointgen` package installed where `modal deploy` runs,
    so an upgrade between `build` and `deploy` would otherwise run routes against a
    runtime they were not written for.
    """
    from endpointgen import __version__

    if __version__ != built_with:
        raise RuntimeMismatch(
            f"this module was built by endpointgen {built_with}, but endpointgen "
            f"{__version__} is installed: rebuild it (`endpointgen build`), or "
            f"`pip install endpointgen=={built_with}` to deploy it as it is"
        )


def not_shipped(path: PurePath) -> bool:
    """What a built module's image leaves out of the `endpointgen` package:
    `.add_local_python_source("endpointgen", ignore=runtime.not_shipped)` gets a path
    relative to the package, and the image carries only the runtime's Python files, the
    image locks `locked` reads (`runtime/locks/*.json`), and the package's `__init__.py`
    (which holds the version `require` checks). The compiler, gitops, the CLI and the
    templates stay where the module was built."""
    parts = path.parts
    if parts == ("__init__.py",):
        return False
    if not parts or parts[0] != "runtime" or "__pycache__" in parts:
        return True
    if parts[:2] == ("runtime", "locks") and len(parts) == 3 and path.suffix == ".json":
        return False  # the image locks `locked` reads: data, not source
    return path.suffix not in ("", ".py")  # a folder of the runtime, or a source file


class ImageLock(NamedTuple):
    """One image lock, as its file in `runtime/locks/` holds it (read-only: it is shared)."""

    pins: Mapping[str, str]
    """Every package the image installs -> the version it installs."""
    requires: Mapping[str, tuple[str, ...]]
    """Each package -> what it pulls in, in a Modal image (none: not listed)."""
    modules: frozenset[str]
    """Every top-level module those packages and Modal's own client make importable."""


@functools.cache
def image_lock(lock: Literal["tested", "vllm"] = "tested") -> ImageLock:
    """The image lock named `lock`, read once: `runtime/locks/tested.json` (written by
    `make lock` from the tested environment) or `runtime/locks/vllm.json` (`make
    lock-vllm`, resolved by pip from PyPI: vLLM needs a GPU, so no test environment holds
    it)."""
    file = resources.files(__name__).joinpath("locks").joinpath(f"{lock}.json")
    data = json.loads(file.read_text(encoding="utf-8"))
    return ImageLock(
        pins=MappingProxyType({str(name): str(v) for name, v in data["pins"].items()}),
        requires=MappingProxyType(
            {str(name): tuple(map(str, needs)) for name, needs in data["requires"].items()}
        ),
        modules=frozenset(map(str, data["modules"])),
    )


def locked(*packages: str, lock: Literal["tested", "vllm"] = "tested") -> list[str]:
    """`packages` as given, then every package they pull in, pinned to the version the
    tests ran against (`runtime/locks/tested.json`, written by `make lock`): the image
    installs what was tested, not whatever the index holds on the day of the deploy.

    `lock="vllm"` pins them from the vLLM image's lock instead (`runtime/locks/vllm.json`,
    written by `make lock-vllm`): vLLM needs a GPU, so pip resolves its image from PyPI.

    A package the caller names keeps the caller's pin; packages the lock does not know
    (a spec's own) bring their requirements unpinned.
    """
    pins, requires, _ = image_lock(lock)
    given = {canonical(package) for package in packages}
    seen: set[str] = set()
    todo = [name for name in given if name in pins]
    while todo:
        for needed in requires.get(todo.pop(), ()):
            if needed not in seen:
                seen.add(needed)
                todo.append(needed)
    return [*packages, *(f"{name}=={pins[name]}" for name in sorted(seen - given))]


def canonical(requirement: str) -> str:
    """The distribution a requirement names, normalized: `Foo_Bar[x]>=1` -> `foo-bar`."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    name = match.group(1) if match else requirement
    return re.sub(r"[-_.]+", "-", name).lower()
