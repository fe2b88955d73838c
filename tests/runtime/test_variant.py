"""`model.variant`: a weights variant (`fp16`: model.fp16.safetensors) loaded instead of
the plain weights, by every engine that loads weights through the runtime."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import build_and_import, gpt2_spec, write_spec
from fastapi.testclient import TestClient

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app

pytestmark = pytest.mark.slow
AUTH = {"Authorization": "Bearer key-one"}


@pytest.fixture(scope="module")
def fp16_only(tiny_gpt2: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GPT-2 with its weights saved as the `fp16` variant, and no plain ones."""
    from transformers import AutoModelForCausalLM

    folder = tmp_path_factory.mktemp("variant") / "gpt2-fp16"
    shutil.copytree(tiny_gpt2, folder)
    for plain in folder.glob("model*.safetensors"):
        plain.unlink()
    AutoModelForCausalLM.from_pretrained(tiny_gpt2).save_pretrained(folder, variant="fp16")
    assert [p.name for p in folder.glob("*.safetensors")] == ["model.fp16.safetensors"]
    return folder


def test_the_variant_is_what_loads(tmp_path: Path, fp16_only: Path, env_keys: list[str]) -> None:
    """docs/spec.md, Model (`variant`): with `variant: fp16` the model loads from its
    fp16 files and serves; without it the same folder has no weights to load (503)."""
    spec = gpt2_spec(fp16_only, rate_limit=None)
    spec["model"]["variant"] = "fp16"
    module = build_and_import(write_spec(tmp_path / "with", spec), tmp_path / "out")
    assert 'variant="fp16"' in (tmp_path / "out" / "gpt2.py").read_text()
    client = TestClient(load_app(module, say=lambda _: None))
    assert client.get("/health").json()["status"] == "ok"
    answer = client.post("/generate", json={"prompt": "Hello", "max_tokens": 3}, headers=AUTH)
    assert answer.status_code == 200 and answer.json()["tokens_generated"] == 3
    spec["model"].pop("variant")
    plain = build_and_import(write_spec(tmp_path / "without", spec), tmp_path / "out2")
    health = TestClient(load_app(plain, say=lambda _: None)).get("/health")
    assert health.status_code == 503


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"engine": "vllm", "variant": "fp16"},
            "model.variant: vLLM loads the weights itself, so `variant` would change nothing",
        ),
        ({"variant": "fp 16"}, "model.variant: 'fp 16' does not match the pattern"),
    ],
)
def test_a_variant_that_would_change_nothing_is_refused(
    tmp_path: Path, fp16_only: Path, model: dict[str, str], message: str
) -> None:
    spec = gpt2_spec(fp16_only)
    spec["model"].update(model)
    if model.get("engine") == "vllm":
        spec.pop("batching", None)
    problems = [str(p) for p in pipeline.validate(write_spec(tmp_path, spec))]
    assert any(message in p for p in problems), problems
