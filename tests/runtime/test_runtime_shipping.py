"""The runtime ships with the module: the image carries the `endpointgen` package that
built it, a container serves from those files alone, and a module refuses a runtime of
another version. Read with the real `modal` SDK, offline."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath

import pytest
from conftest import SPECS, import_file
from modal._utils.async_utils import synchronizer
from modal.mount import _Mount, _MountedPythonModule

import endpointgen
from endpointgen import __version__, runtime
from endpointgen.compiler import pipeline

PACKAGE = Path(endpointgen.__file__).parent


def shipped_python(image: object) -> dict[PurePosixPath, Path]:
    """Remote path -> local file, for each Python source the image adds."""
    found: dict[PurePosixPath, Path] = {}
    seen: set[int] = set()

    def walk(obj: object) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, _Mount):
            for entry in obj.entries:
                if isinstance(entry, _MountedPythonModule):
                    pairs = entry.get_files_to_upload()
                    found.update({PurePosixPath(remote): Path(local) for local, remote in pairs})
        for dep in obj._deps() if getattr(obj, "_deps", None) else []:  # type: ignore[attr-defined]
            walk(dep)

    walk(synchronizer._translate_in(image))
    return found


def built(spec: Path, out: Path) -> Path:
    made = pipeline.build(spec, out)
    out.mkdir(parents=True, exist_ok=True)
    made.path.write_text(made.source, encoding="utf-8")
    return made.path


@pytest.mark.parametrize("name", ["hello", "gpt2", "multi"])
def test_the_image_carries_the_runtime_that_built_the_module(name: str, tmp_path: Path) -> None:
    """Read by Modal's own mount code: the image adds every file of the runtime, the
    image locks `runtime.locked` reads when the module is imported in the container, the
    package's `__init__.py` (the version `require` checks), and nothing else of
    endpointgen: not the compiler, gitops, the CLI, templates or caches."""
    module = import_file(built(SPECS / f"{name}.yaml", tmp_path))
    images = [module.image, *([module.web_image] if hasattr(module, "web_image") else [])]
    sources = sorted((PACKAGE / "runtime").rglob("*.py"))  # its packages too
    locks = sorted((PACKAGE / "runtime" / "locks").glob("*.json"))
    assert [p.name for p in locks] == ["tested.json", "vllm.json"]
    for image in images:
        files = shipped_python(image)
        for source in [*sources, *locks]:
            remote = PurePosixPath("/root/endpointgen") / source.relative_to(PACKAGE).as_posix()
            assert files.get(remote) == source, f"{remote} is not shipped from {source}"
        assert files[PurePosixPath("/root/endpointgen/__init__.py")] == PACKAGE / "__init__.py"
        ours = [r for r in files if r.parts[:3] == ("/", "root", "endpointgen")]
        others = [
            r.as_posix()
            for r in ours
            if r.as_posix() != "/root/endpointgen/__init__.py"
            and r.parent != PurePosixPath("/root/endpointgen/runtime/locks")
            and (r.parts[3] != "runtime" or r.suffix != ".py" or "__pycache__" in r.parts)
        ]
        assert not others, f"the image ships more than the runtime: {others[:5]}"
        assert len(ours) == 1 + len(sources) + len(locks)


@pytest.mark.slow
def test_a_container_serves_from_the_shipped_files_alone(tmp_path: Path) -> None:
    """The files the image adds, laid out as a container's /root, serve the app: the
    runtime imported is that copy, and nothing of the compiler comes with it."""
    path = built(SPECS / "hello.yaml", tmp_path / "build")
    module = import_file(path)
    root = tmp_path / "root"
    for remote, local in shipped_python(module.image).items():
        target = root / remote.relative_to("/root")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
    shutil.copyfile(path, root / "hello.py")
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(root)!r})
        import hello, endpointgen
        from fastapi.testclient import TestClient
        assert endpointgen.__file__.startswith({str(root)!r}), endpointgen.__file__
        answer = TestClient(hello.create_app()).get("/greet", params={{"name": "Ada"}})
        assert answer.status_code == 200 and answer.text == "Hello, Ada!", answer.text
        heavy = ("jinja2", "typer", "yaml", "torch", "transformers")
        loaded = [m for m in heavy if m in sys.modules]
        ours = ("endpointgen.compiler", "endpointgen.cli")
        loaded += [m for m in sys.modules if m.startswith(ours)]
        assert not loaded, loaded
        print("served")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "served"


def test_a_module_refuses_a_runtime_of_another_version(tmp_path: Path) -> None:
    path = built(SPECS / "hello.yaml", tmp_path)
    source = path.read_text()
    assert f'runtime.require("{__version__}")' in source
    path.write_text(source.replace(f'runtime.require("{__version__}")', 'runtime.require("0.0.1")'))
    with pytest.raises(runtime.RuntimeMismatch) as refused:
        import_file(path)
    message = str(refused.value)
    assert f"built by endpointgen 0.0.1, but endpointgen {__version__} is installed" in message
    assert "rebuild it" in message and "pip install endpointgen==0.0.1" in message


@pytest.mark.slow
def test_the_runtime_imports_nothing_of_the_compiler() -> None:
    found = (PACKAGE / "runtime").rglob("*.py")  # its packages (http/) and their modules
    modules = sorted(
        ".".join(p.relative_to(PACKAGE / "runtime").with_suffix("").parts) for p in found
    )
    modules = [m.removesuffix(".__init__") for m in modules if m != "__init__"]
    code = (
        "import sys\n"
        + "".join(f"import endpointgen.runtime.{m}\n" for m in modules)
        + "bad = [m for m in sys.modules if m.split('.')[0] in ('jinja2', 'typer', 'yaml',"
        " 'torch', 'transformers') or m.startswith(('endpointgen.compiler', 'endpointgen.cli',"
        " 'endpointgen.gitops', 'endpointgen.local', 'endpointgen.spec'))]\n"
        "print(bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
