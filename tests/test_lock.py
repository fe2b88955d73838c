"""The image lock: what a built module's image installs is what the tests ran against.

Issue "Modal fidelity", item 8: transitive packages are pinned too, from a lock resolved
from the tested environment (`make lock`, `endpointgen/runtime/lock.py`).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path
from typing import Any

import modal
import pytest
import yaml
from conftest import SPECS, build_and_import, write_spec

from endpointgen import runtime
from endpointgen.compiler import lock
from endpointgen.compiler.plan import MODEL_PACKAGES, WEB_PACKAGES
from endpointgen.runtime import lock as image_lock


def test_the_lock_is_resolved_from_this_environment() -> None:
    """The lock equals a fresh resolve of the environment the tests run in; after a pin
    changes in plan.py, `make lock` rewrites it (and the Makefile installs under it)."""
    assert lock.LOCK_FILE.read_text() == lock.render(), "the image lock is stale: `make lock`"


def test_every_locked_version_is_the_installed_one() -> None:
    for name, version in image_lock.PINS.items():
        assert metadata.version(name).split("+")[0] == version, name


def requirements_of(pins: list[str]) -> dict[str, str]:
    out = {}
    for pin in pins:
        name, _, version = pin.partition("==")
        out[runtime.canonical(name)] = version
    return out


def test_a_model_image_pins_everything_it_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gpt2's image: the four direct pins, then every package under them at the version
    installed here, and nothing it does not need (no redis, no pillow)."""
    asked: list[tuple[Any, ...]] = []
    real = modal.Image.uv_pip_install

    def spy(self: Any, *packages: Any, **options: Any) -> Any:
        asked.append(packages)
        return real(self, *packages, **options)

    monkeypatch.setattr(modal.Image, "uv_pip_install", spy)
    build_and_import(SPECS / "gpt2.yaml", tmp_path)
    ((installed,),) = asked  # one step: the image's whole list, as Modal gets it
    direct = [*WEB_PACKAGES, *MODEL_PACKAGES]
    assert installed[: len(direct)] == sorted(direct)
    pins = requirements_of(installed)
    needed = lock.walk(direct)
    assert set(pins) == set(needed)
    for name, (version, _, _) in needed.items():
        assert pins[name] == version, name
    assert {"numpy", "tokenizers", "starlette", "pydantic-core", "sympy"} <= set(pins)
    assert not {"redis", "pillow", "accelerate", "modal"} & set(pins)


def test_the_web_tier_image_has_no_model_stack() -> None:
    pins = requirements_of(runtime.locked(*WEB_PACKAGES))
    assert not {"torch", "transformers", "numpy", "tokenizers", "sympy"} & set(pins)
    assert {"fastapi", "starlette", "uvicorn", "pydantic-core"} <= set(pins)


def test_a_package_the_spec_names_keeps_its_own_pin(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`packages`): the spec's extra pip requirements go into the image,
    each with the spec's own pin."""
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["packages"] = ["numpy==2.3.0", "scipy>=1.14"]
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    source = Path(module.__file__ or "").read_text()
    assert re.search(r'"numpy==2\.3\.0",\n\s+"pydantic==', source)
    given = ["fastapi[standard]==0.165.0", "numpy==2.3.0", "scipy>=1.14", "torch==2.13.0"]
    pinned = runtime.locked(*given)
    assert pinned[: len(given)] == given
    assert [p for p in pinned if p.startswith(("numpy", "scipy"))] == given[1:3]


def test_requirement_names_are_normalized() -> None:
    assert runtime.canonical("Foo_Bar.baz[x]>=1") == "foo-bar-baz"
    assert runtime.canonical("pyjwt[crypto]==2.15.1") == "pyjwt"
