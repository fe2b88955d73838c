"""Shared fixtures: tiny real models, and helpers to write, build and import specs."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from models import (
    make_tiny_bert_classifier,
    make_tiny_cross_encoder,
    make_tiny_ctc_asr,
    make_tiny_detector,
    make_tiny_diffusion,
    make_tiny_gpt2,
    make_tiny_ner,
    make_tiny_nli,
    make_tiny_vit,
    minilm_dir,
)

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert_classifier(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_vit(tmp_path_factory.mktemp("models") / "tiny-vit")


@pytest.fixture(scope="session")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("models") / "tiny-reranker")


@pytest.fixture(scope="session")
def tiny_nli(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_nli(tmp_path_factory.mktemp("models") / "tiny-nli")


@pytest.fixture(scope="session")
def tiny_ner(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_ner(tmp_path_factory.mktemp("models") / "tiny-ner")


@pytest.fixture(scope="session")
def tiny_detector(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_detector(tmp_path_factory.mktemp("models") / "tiny-detector")


@pytest.fixture(scope="session")
def tiny_asr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_ctc_asr(tmp_path_factory.mktemp("models") / "tiny-asr")


@pytest.fixture(scope="session")
def tiny_diffusion(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_diffusion(tmp_path_factory.mktemp("models") / "tiny-diffusion")


@pytest.fixture(scope="session")
def minilm() -> Path:
    return minilm_dir()


# A fixture named tiny_* makes a real model (those above, and those of single test files),
# and `minilm` loads one. A test that uses one, directly or through another fixture, is
# marked `slow` here, so `make test-fast` leaves it out even where the test lacks the mark.
# Tests that start a server carry the mark in their own file.
def makes_a_model(fixture: str) -> bool:
    return fixture.startswith("tiny_") or fixture == "minilm"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(makes_a_model(name) for name in getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def write_spec(folder: Path, spec: dict[str, Any] | str, name: str = "spec.yaml") -> Path:
    """Write a spec (a dict, or YAML text) to `folder/name`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    text = spec if isinstance(spec, str) else yaml.safe_dump(spec, sort_keys=False)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def import_file(path: Path) -> ModuleType:
    """Import a built module under a fresh name, so tests never share one."""
    name = f"{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def build_and_import(spec_path: Path, out: Path, env: str | None = None) -> ModuleType:
    from endpointgen.compiler import pipeline

    built = pipeline.build(spec_path, out, env)
    out.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    return import_file(built.path)


def gpt2_spec(model_dir: Path, **overrides: Any) -> dict[str, Any]:
    """specs/gpt2.yaml, pointed at a local model directory."""
    spec = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["model"]["id"] = str(model_dir)
    spec.update(overrides)
    return spec


@pytest.fixture
def env_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    keys = ["key-one", "key-two"]
    monkeypatch.setenv("API_KEYS", ",".join(keys))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield keys
