"""The image lock: what a built module's image installs is what the tests ran against.

Issue "Modal fidelity", item 8: transitive packages are pinned too, from a lock resolved
from the tested environment (`make lock`, `endpointgen/runtime/locks/tested.json`). Round
3, item 9: the vLLM image has its own lock, resolved by pip from PyPI (`make lock-vllm`,
`endpointgen/runtime/locks/vllm.json`), since vLLM is not installed where the tests run.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
import urllib.request
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any

import modal
import pytest
import yaml
from conftest import SPECS, build_and_import, write_spec

from endpointgen import runtime
from endpointgen.compiler import lock
from endpointgen.compiler.pipeline import load_spec
from endpointgen.compiler.plan import (
    MODEL_PACKAGES,
    PYTHON_VERSION,
    VLLM_PACKAGES,
    VLLM_WEB_PACKAGES,
    WEB_PACKAGES,
    make_plan,
)

tested_lock = runtime.image_lock("tested")
vllm_lock = runtime.image_lock("vllm")


def test_the_lock_is_resolved_from_this_environment() -> None:
    """The lock equals a fresh resolve of the environment the tests run in; after a pin
    changes in plan.py, `make lock` rewrites it (and the Makefile installs under it)."""
    assert lock.LOCK_FILE.read_text() == lock.render(), "the image lock is stale: `make lock`"


@pytest.mark.parametrize(
    ("file", "about"),
    [(lock.LOCK_FILE, lock.TESTED_ABOUT), (lock.VLLM_LOCK_FILE, lock.VLLM_ABOUT)],
    ids=["tested", "vllm"],
)
def test_a_lock_file_is_json_one_entry_a_line(file: Path, about: dict[str, str]) -> None:
    """Each lock is a JSON file, keys sorted, one package a line, so a diff names each
    package that moved; `about` says for which image it holds and how to rewrite it. The
    vLLM lock, which needs the network to resolve, is at least in the writer's layout."""
    text = file.read_text()
    data = json.loads(text)
    assert list(data) == ["about", "modules", "pins", "requires"]
    assert data["about"] == about
    assert {"platform", "python", "regenerate"} <= set(about)
    assert data["about"]["python"] == f"CPython {PYTHON_VERSION}"
    assert "make lock" in data["about"]["regenerate"]
    image = {
        name: (version, set(data["requires"].get(name, ())))
        for name, version in data["pins"].items()
    }
    assert text == lock.lock_json(about, image, set(data["modules"]))
    assert f'\n    "torch": "{data["pins"]["torch"]}",\n' in text
    assert len(text.splitlines()) == 10 + sum(len(data[key]) for key in data)


def test_every_locked_version_is_the_installed_one() -> None:
    for name, version in tested_lock.pins.items():
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


def pinned(requirement: str) -> tuple[str, str]:
    """`pyjwt[crypto]==2.15.1` -> (`pyjwt`, `2.15.1`)."""
    return runtime.canonical(requirement), requirement.rpartition("==")[2]


def reached(roots: list[str], requires: dict[str, tuple[str, ...]]) -> set[str]:
    seen = {runtime.canonical(root) for root in roots}
    todo = list(seen)
    while todo:
        for needed in requires.get(todo.pop(), ()):
            if needed not in seen:
                seen.add(needed)
                todo.append(needed)
    return seen


def test_the_vllm_lock_pins_what_plan_py_names_for_the_vllm_image() -> None:
    """vLLM, its web packages and every extra a spec may add, each at plan.py's pin: a pin
    changed in plan.py without `make lock-vllm` fails here, offline."""
    assert {"vllm==0.33.0", "fastapi[standard]==0.136.3", "redis==8.1.0"} <= set(lock.VLLM_ROOTS)
    assert not set(MODEL_PACKAGES) & set(lock.VLLM_ROOTS)  # vLLM brings torch, transformers
    for root in lock.VLLM_ROOTS:
        name, version = pinned(root)
        assert vllm_lock.pins.get(name) == version, f"{root}: the vLLM lock is stale"
    for root in VLLM_WEB_PACKAGES:
        name, version = pinned(root)
        assert vllm_lock.pins[name] == version


def test_the_vllm_lock_is_closed_and_holds_nothing_else() -> None:
    """Every requirement in the vLLM lock is pinned in it, and every pin is reached from
    the image's packages: no package comes unpinned, none is pinned for nothing."""
    for name, needed in vllm_lock.requires.items():
        assert name in vllm_lock.pins
        assert set(needed) <= set(vllm_lock.pins), name
    assert reached(list(lock.VLLM_ROOTS), vllm_lock.requires) == set(vllm_lock.pins)
    for name, version in vllm_lock.pins.items():
        assert re.fullmatch(r"[0-9][0-9A-Za-z.!]*", version), (name, version)
    assert {"vllm", "torch", "triton", "nvidia-nccl-cu13"} <= set(vllm_lock.pins)
    assert {"vllm", "torch", "transformers", "fastapi", "PIL", "jwt"} <= vllm_lock.modules


def test_a_vllm_image_pins_everything_it_installs(tmp_path: Path) -> None:
    """specs/vllm.yaml with every feature that adds a package: `locked(..., lock="vllm")`
    keeps the image's own pins, then pins all they pull in, vLLM's torch and transformers
    included; the transformers lock knows nothing of vLLM and pins none of it."""
    spec = yaml.safe_load((SPECS / "vllm.yaml").read_text())
    spec |= {"auth": {"mode": "jwt"}, "metrics": {"enabled": True}, "tracing": {"enabled": True}}
    spec["rate_limit"]["storage"] = "redis"
    doc, loaded = load_spec(write_spec(tmp_path, spec))
    packages = make_plan(loaded, doc.file, tmp_path / "out").packages
    assert {*VLLM_PACKAGES, *VLLM_WEB_PACKAGES, "redis==8.1.0"} <= set(packages)

    installed = runtime.locked(*packages, lock="vllm")
    assert installed[: len(packages)] == packages
    pins = requirements_of(installed)
    assert pins["vllm"] == "0.33.0"
    assert pins["torch"] == vllm_lock.pins["torch"]
    assert pins["transformers"] == vllm_lock.pins["transformers"]
    for name in pins:  # every package's own requirements come pinned with it
        assert set(vllm_lock.requires.get(name, ())) <= set(pins), name
    extra = set(requirements_of(installed[len(packages) :]))
    assert {"torch", "transformers", "triton", "starlette", "cryptography", "numpy"} <= extra
    assert not {"diffusers", "scipy", "accelerate", "soundfile"} & set(pins)

    # The transformers lock: vLLM's requirements unknown, so pinned to nothing.
    assert runtime.locked(*VLLM_PACKAGES) == list(VLLM_PACKAGES)


def test_the_vllm_lock_is_vllms_not_the_tested_one() -> None:
    """vLLM pins torch and transformers itself, to other versions than the tests run; the
    two locks give different pins for the same packages."""
    vllm_image = requirements_of(runtime.locked(*VLLM_PACKAGES, lock="vllm"))
    tested = requirements_of(runtime.locked(*MODEL_PACKAGES))
    assert vllm_image["torch"] == vllm_lock.pins["torch"] != tested_lock.pins["torch"]
    assert tested["torch"] == tested_lock.pins["torch"]
    assert vllm_lock.pins["fastapi"] != tested_lock.pins["fastapi"]
    assert runtime.locked(*WEB_PACKAGES) == runtime.locked(*WEB_PACKAGES, lock="tested")


def test_the_resolver_follows_extras_and_the_images_markers() -> None:
    """The vLLM lock's requires come from pip's report the way the tested lock's come from the
    installed metadata: extras followed, other platforms' requirements dropped."""
    table = {
        "app": ("1.0", ["lib[fast]>=1", 'winonly; sys_platform == "win32"', "opt; extra == 'x'"]),
        "lib": ("2.0", ["base", "speedup; extra == 'fast'", 'old; python_version < "3.8"']),
        "base": ("3.0", []),
        "speedup": ("4.0", ["base"]),
    }
    found = lock.closure(["app==1.0"], lambda name: table[name])
    assert found == {
        "app": ("1.0", {"lib"}),
        "lib": ("2.0", {"base", "speedup"}),
        "base": ("3.0", set()),
        "speedup": ("4.0", {"base"}),
    }


def test_a_wheels_modules_come_from_its_listing(tmp_path: Path) -> None:
    """The vLLM lock's modules are read from each wheel's file list: a package kept in the wheel's
    .data folder installs beside the rest; a top_level.txt may list a package by path."""
    with zipfile.ZipFile(tmp_path / "pkg.whl", "w") as wheel:
        for name in [
            "foo/__init__.py",
            "bar.py",
            "pkg-1.0.data/purelib/baz/__init__.py",
            "pkg-1.0.data/scripts/tool",
            "pkg-1.0.dist-info/METADATA",
        ]:
            wheel.writestr(name, "")
    with zipfile.ZipFile(tmp_path / "pkg.whl") as wheel:
        assert lock.archived_modules(wheel) == {"foo", "bar", "baz"}
    with zipfile.ZipFile(tmp_path / "pkg.whl", "a") as wheel:
        wheel.writestr("pkg-1.0.dist-info/top_level.txt", "nvidia/cusparselt\nnvidia\n")
    with zipfile.ZipFile(tmp_path / "pkg.whl") as wheel:
        assert lock.archived_modules(wheel) == {"nvidia"}


def fake_pip(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "python"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_the_resolver_stops_pip_when_it_downloads_wheels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM's torch and CUDA wheels are gigabytes: where the index serves neither their
    metadata nor ranges of them, pip would download them whole, and the resolver stops it."""
    env = tmp_path / "env.txt"
    pip = fake_pip(
        tmp_path,
        f'env > {env}; head -c 2000000 /dev/zero > "$TMPDIR/torch.whl"; sleep 60',
    )
    monkeypatch.setattr(lock.sys, "executable", str(pip))
    monkeypatch.setattr(lock, "SCRATCH_LIMIT", 1_000_000)
    monkeypatch.setenv("PIP_FIND_LINKS", "/opt/wheels")
    started = time.monotonic()
    with pytest.raises(lock.Unresolvable, match="downloading whole wheels"):
        lock.resolve(["vllm==0.33.0"])
    assert time.monotonic() - started < 30
    # The machine's own pip settings (other indexes, local wheels) stay out of it.
    seen = env.read_text()
    assert "PIP_FIND_LINKS" not in seen and f"PIP_CONFIG_FILE={os.devnull}" in seen


def test_the_resolver_refuses_an_interpreter_unlike_the_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pip evaluates markers for the interpreter it runs on: elsewhere it would resolve
    another platform's packages."""
    other = {**lock.default_environment(), "sys_platform": "darwin"}
    monkeypatch.setattr(lock, "default_environment", lambda: other)
    with pytest.raises(lock.Unresolvable, match="sys_platform 'darwin'"):
        lock.resolve(["vllm==0.33.0"])


def pypi_reachable() -> bool:
    try:
        with urllib.request.urlopen(f"{lock.INDEX_URL}/pip/", timeout=3):
            return True
    except OSError:  # unreachable, refused, timed out
        return False


@pytest.mark.slow
def test_pip_installs_the_vllm_lock_as_it_is() -> None:
    """With the network: pip, resolving the vLLM image under the lock's pins, finds every
    one for the image (Linux x86_64, CPython 3.11 wheels), consistent with each other, and
    installs nothing else. About a minute: pip reads each wheel's metadata from PyPI."""
    if not pypi_reachable():
        pytest.skip("PyPI is not reachable from here")
    constraints = [f"{name}=={version}" for name, version in vllm_lock.pins.items()]
    try:
        report = lock.resolve(lock.VLLM_ROOTS, constraints, timeout=600)
    except lock.Unresolvable as exc:
        if "interpreter it runs on" in str(exc):
            pytest.skip(str(exc))
        raise
    resolved = {
        runtime.canonical(item["metadata"]["name"]): item["metadata"]["version"]
        for item in report["install"]
    }
    assert resolved == vllm_lock.pins
