"""`model.engine: vllm`: what `validate` refuses, what the built module asks Modal for
(read back offline with the real SDK), and the same app under `endpointgen serve` where
there is no GPU. vLLM itself runs in tests/runtime/test_engine_contract.py on a GPU machine."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import SPECS, build_and_import, write_spec
from fastapi.testclient import TestClient
from modal_images import dockerfile

from endpointgen.compiler import pipeline
from endpointgen.compiler.plan import CUDA_IMAGE, VLLM_PACKAGES, VLLM_WEB_PACKAGES
from endpointgen.local.serve import load_app
from endpointgen.runtime import image_lock


def spec(**model: Any) -> dict[str, Any]:
    """specs/vllm.yaml, with changes to its model."""
    data: dict[str, Any] = yaml.safe_load((SPECS / "vllm.yaml").read_text())
    data["model"].update(model)
    return data


def problems(tmp_path: Path, data: dict[str, Any]) -> list[str]:
    return [str(p) for p in pipeline.validate(write_spec(tmp_path, data))]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"gpu": None},
            "model.engine: vLLM runs on CUDA GPUs only, and this model has no `gpu`",
        ),
        (
            {"model": {"task": "embeddings"}},
            "model.engine: vLLM serves text generation; `task: embeddings` runs on the "
            "transformers engine",
        ),
        (
            {"batching": {"max_batch_size": 8}},
            "batching: vLLM batches generations itself (continuous batching); remove `batching`",
        ),
        (
            {"gpu": "h100:2", "model": {"vllm": {"tensor_parallel_size": 4}}},
            "model.vllm.tensor_parallel_size: tensor_parallel_size 4 must equal the GPUs "
            "the model gets (2, from `gpu`)",
        ),
        (
            {"model": {"engine": "transformers"}},
            "model.vllm: `vllm` options apply with `engine: vllm`",
        ),
        (
            {"model": {"vllm": {"gpu_memory_utilization": 1.5}}},
            "model.vllm.gpu_memory_utilization: must be at most 1",
        ),
    ],
    ids=["no-gpu", "not-generation", "batching", "tensor-parallel", "options-alone", "memory"],
)
def test_validate_refuses_what_vllm_cannot_do(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    """docs/spec.md, Model (`engine`): vLLM needs a GPU and a text-generation task, does its
    own batching, and spans exactly the GPUs it gets; each mistake is refused with its
    place and what to do."""
    data = spec(**change.pop("model", {}))
    for key, value in change.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    found = [p for p in problems(tmp_path, data) if expected in p]
    assert len(found) == 1, problems(tmp_path, data)
    assert re.match(r".*spec\.yaml:\d+:\d+: ", found[0])


def test_several_models_share_one_engine(tmp_path: Path) -> None:
    """docs/spec.md, Model (`engine`): the model classes share one image, so one app
    does not mix vLLM and transformers."""
    data = yaml.safe_load((SPECS / "multi.yaml").read_text())
    writer = data["models"]["writer"]
    writer["engine"] = "vllm"
    writer["gpu"] = writer.get("gpu") or "L4"
    (found,) = problems(tmp_path, data)
    assert "vLLM and the transformers engine need different torch builds" in found


def test_the_built_module_asks_modal_for_vllm_on_its_gpu(tmp_path: Path) -> None:
    """docs/spec.md, Model (`engine`, `vllm`): the module imports offline; Modal reads back
    the GPU and a container that takes 64 requests at once; the image installs vllm at
    its pin with the web packages vLLM allows, on NVIDIA's CUDA image, with everything
    they pull in pinned from vLLM's own lock, not the transformers lock."""
    module = build_and_import(SPECS / "vllm.yaml", tmp_path)
    info = module.Server._get_class_service_function().info()
    assert info.gpus == [("L40S", 1)]
    assert info.concurrency_info is not None
    assert (info.concurrency_info.max_inputs, info.concurrency_info.target_inputs) == (64, None)
    options = vars(module.model.vllm)
    assert options["max_model_len"] == 8192 and options["gpu_memory_utilization"] == 0.9
    installs = [line for line in dockerfile(module.image) if "uv pip install" in line]
    assert len(installs) == 1
    for pin in (*VLLM_PACKAGES, *VLLM_WEB_PACKAGES):
        assert pin in installs[0]
    assert f'modal.Image.from_registry("{CUDA_IMAGE}"' in Path(module.__file__).read_text()
    vllm, tested = image_lock("vllm").pins, image_lock("tested").pins
    assert f"torch=={vllm['torch']}" in installs[0]
    assert f"transformers=={vllm['transformers']}" in installs[0]
    assert f"torch=={tested['torch']}" not in installs[0]


def test_unset_scaling_takes_vllms_batch(tmp_path: Path) -> None:
    """docs/spec.md, Top level (`scaling`): a vLLM model without `max_inputs` takes 64
    requests per container, so its scheduler has something to batch."""
    data = spec()
    del data["scaling"]["max_inputs"]
    module = build_and_import(write_spec(tmp_path, data), tmp_path / "out")
    info = module.Server._get_class_service_function().info()
    assert info.concurrency_info is not None and info.concurrency_info.max_inputs == 64


def test_serve_without_a_gpu_runs_the_same_routes_on_transformers(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """docs/spec.md, Model (`engine`): `endpointgen serve` on a machine without a CUDA GPU
    serves a vLLM spec on transformers (batched), says so, and answers the same routes."""
    data = spec(id=str(tiny_gpt2))
    data.pop("rate_limit")
    module = build_and_import(write_spec(tmp_path, data), tmp_path / "out")
    with caplog.at_level(logging.WARNING, logger="endpointgen"):
        client = TestClient(load_app(module, say=lambda _: None))
    assert "vLLM needs a CUDA GPU: serving tiny-gpt2 on transformers here" in caplog.text
    assert module.model.engine.batcher is not None
    auth = {"Authorization": "Bearer key-one"}
    r = client.post("/generate", json={"prompt": "Hello", "max_tokens": 5}, headers=auth)
    assert r.status_code == 200 and r.json()["tokens_generated"] == 5
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    r = client.post("/v1/chat/completions", json=chat, headers=auth)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["role"] == "assistant"
