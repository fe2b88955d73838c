"""`stream_options.include_usage` across the split shape's two containers
(tests/modal_container.py): the usage chunk the web tier sends when the generation runs
in the model class is the one a single process sends."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import gpt2_spec, import_file, write_spec
from fastapi.testclient import TestClient
from modal_container import Cloud

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app

pytestmark = pytest.mark.slow

AUTH = {"Authorization": "Bearer key-one"}
USAGE = {"stream": True, "stream_options": {"include_usage": True}, "temperature": 0}


def events(body: bytes) -> list[Any]:
    """A stream's `data:` events, `[DONE]` as the string."""
    found = []
    for line in body.decode().splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/completions", {"prompt": "Hello there", "max_tokens": 6, **USAGE}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}], **USAGE}),
    ],
)
def test_the_usage_chunk_from_the_model_class_is_the_one_process_ones(
    tmp_path: Path, tiny_gpt2: Path, monkeypatch: pytest.MonkeyPatch, path: str, body: Any
) -> None:
    """docs/spec.md, OpenAI-compatible routes (`stream_options`): with `shape: split` the
    generation's totals come back from the model class's stream, and its last chunk
    before `[DONE]` carries the same `usage` as in one process."""
    spec = gpt2_spec(tiny_gpt2, shape="split")
    spec["routes"].insert(-1, {"path": "/v1", "action": "openai"})
    built = pipeline.build(write_spec(tmp_path / "spec", spec), tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    monkeypatch.setenv("API_KEYS", "key-one")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cloud = Cloud(built.path, monkeypatch)
    web = cloud.start("web")

    async def go() -> Any:
        answer = await web.request("POST", path, json=body, headers=AUTH)
        await web.shutdown()
        return answer

    split = asyncio.run(go())
    assert split.status == 200, split.body
    assert ("Inference", "tokens") in cloud.log  # the model class's stream generated it
    here = TestClient(load_app(import_file(built.path), say=lambda _: None))
    alone = here.post(path, json=body, headers=AUTH)
    *chunks, last, done = events(split.body)
    *_, expected, _ = events(alone.content)
    assert done == "[DONE]" and last["choices"] == [] and last["usage"]["prompt_tokens"] > 0
    assert last["usage"] == expected["usage"]
    assert all(chunk["usage"] is None for chunk in chunks)
