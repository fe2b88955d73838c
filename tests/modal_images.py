"""What a built module's Modal images hold, read offline: the Dockerfile lines Modal's
builder gets, and the packages a module's image definitions list."""

from __future__ import annotations

import ast
from typing import Any

import modal


def dockerfile(image: modal.Image) -> list[str]:
    """The Dockerfile lines Modal's builder gets for `image`, layer by layer, as the SDK
    writes them (offline: each layer's own `dockerfile_function`)."""
    import inspect

    from modal import _image
    from modal._utils.async_utils import synchronizer

    def layers(layer: Any) -> Any:
        found = inspect.getclosurevars(layer._load).nonlocals
        if "base_image" in found:  # a layer of local files: the image under it
            yield from layers(found["base_image"])
            return
        for base in (found.get("base_images") or {}).values():
            yield from layers(base)
        if found.get("dockerfile_function"):
            yield found["dockerfile_function"]

    version = _image.LATEST_IMAGE_BUILDER_VERSION
    out: list[str] = []
    for build in layers(synchronizer._translate_in(image)):
        out += build(version).commands
    return out


def packages_of(source: str, name: str) -> list[str]:
    """The string constants in the module-level assignments `name = ...` (its packages)."""
    values = [
        node.value
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]
    ]
    assert values, f"no `{name} = ...` in the module"
    return [
        n.value
        for value in values
        for n in ast.walk(value)
        if isinstance(n, ast.Constant) and type(n.value) is str
    ]
