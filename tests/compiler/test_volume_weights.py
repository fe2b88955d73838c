"""`model: {volume, path}`: weights on a Modal Volume, mounted read-only where the model
runs, never served over HTTP; `endpointgen serve --volume NAME=DIR` serves them here."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import modal
import pytest
import yaml
from conftest import SPECS, build_and_import, write_spec
from fastapi.testclient import TestClient
from servers import Server

from endpointgen.compiler import pipeline
from endpointgen.local.serve import load_app

AUTH = {"Authorization": "Bearer key-one"}


def on_volume(**model: Any) -> dict[str, Any]:
    """specs/gpt2.yaml with its weights on the Volume `weights`, under `gpt2/v1`."""
    spec: dict[str, Any] = yaml.safe_load((SPECS / "gpt2.yaml").read_text())
    spec["model"] = {
        "id": "gpt2-finetune",
        "task": "text-generation",
        "volume": "weights",
        "path": "gpt2/v1",
        **model,
    }
    spec.pop("rate_limit")
    return spec


def test_the_model_class_mounts_the_volume_read_only_and_loads_from_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Model (`volume`, `path`): the Volume is mounted read-only where the
    model runs, the model loads from its folder there, and no Hub cache is mounted."""
    seen: list[dict[str, Any]] = []
    real = modal.App.cls

    def spy(self: modal.App, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(modal.App, "cls", spy)
    module = build_and_import(write_spec(tmp_path, on_volume()), tmp_path / "out")
    (settings,) = seen
    volume = settings["volumes"]["/volumes/weights"]
    assert isinstance(volume, modal.Volume)
    from modal._utils.async_utils import synchronizer

    assert synchronizer._translate_in(volume)._mount_options.read_only  # as Modal mounts it
    assert "/hf-cache" not in settings["volumes"]
    assert str(module.model.path) == "/volumes/weights/gpt2/v1"
    assert module.model.name == "gpt2-finetune"
    source = (tmp_path / "out" / "gpt2.py").read_text()
    assert 'modal.Volume.from_name("weights").with_mount_options(read_only=True)' in source


def test_serve_loads_volume_weights_from_a_local_copy(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Model (`volume`): `serve --volume NAME=DIR` loads the weights from
    DIR; without it the load fails saying how to get them, with no traceback."""
    module = build_and_import(write_spec(tmp_path, on_volume()), tmp_path / "out")
    missing = TestClient(load_app(module, say=lambda _: None)).get("/health")
    assert missing.status_code == 503
    assert "copy it (`modal volume get weights / DIR`)" in missing.json()["error"]
    copy = tmp_path / "volume-copy"
    shutil.copytree(tiny_gpt2, copy / "gpt2" / "v1")
    monkeypatch.setenv("ENDPOINTGEN_VOLUME_weights", str(copy))
    module = build_and_import(write_spec(tmp_path, on_volume()), tmp_path / "out2")
    client = TestClient(load_app(module, say=lambda _: None))
    assert client.get("/health").json()["model"] == "gpt2-finetune"
    r = client.post("/generate", json={"prompt": "Hello", "max_tokens": 3}, headers=AUTH)
    assert r.status_code == 200 and r.json()["tokens_generated"] == 3


def test_the_serve_flag_reaches_a_real_server(tmp_path: Path, tiny_gpt2: Path) -> None:
    """`endpointgen serve SPEC --volume weights=DIR`, as a user runs it."""
    copy = tmp_path / "volume-copy"
    shutil.copytree(tiny_gpt2, copy / "gpt2" / "v1")
    server = Server(write_spec(tmp_path, on_volume()), args=["--volume", f"weights={copy}"])
    try:
        server.wait_ready()
        import httpx

        r = httpx.post(
            server.url + "/generate", json={"prompt": "Hi", "max_tokens": 2}, headers=AUTH
        )
        assert r.status_code == 200, server.output
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ({"volume": None}, "model.path: `path` is a folder inside `volume`: set `volume` too"),
        ({"path": "../escape"}, "model.path: a folder inside the Volume: relative"),
        ({"path": "a/./b"}, "model.path: a folder inside the Volume: relative"),
    ],
    ids=["path-without-volume", "dot-dot", "dot"],
)
def test_mistakes_are_refused_at_their_place(
    tmp_path: Path, model: dict[str, Any], expected: str
) -> None:
    spec = on_volume(**model)
    spec["model"] = {k: v for k, v in spec["model"].items() if v is not None}
    found = [str(p) for p in pipeline.validate(write_spec(tmp_path, spec))]
    assert len(found) == 1 and expected in found[0], found


def test_a_local_directory_and_a_volume_are_one_too_many(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    spec = on_volume(id="./weights")
    (found,) = [str(p) for p in pipeline.validate(write_spec(tmp_path, spec))]
    assert "model.volume: `id` ./weights is a local directory" in found


def test_serve_maps_a_file_routes_volume_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Routes (`file`): under `serve --volume reports=DIR`, a route serving
    the Volume `reports` serves DIR's files."""
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "q3.csv").write_text("a,b\n1,2\n")
    monkeypatch.setenv("ENDPOINTGEN_VOLUME_reports", str(tmp_path / "copy"))
    spec = {
        "name": "reports",
        "routes": [{"path": "/reports/{name:path}", "action": "file", "volume": "reports"}],
    }
    module = build_and_import(write_spec(tmp_path, spec), tmp_path / "out")
    client = TestClient(load_app(module, say=lambda _: None))
    assert client.get("/reports/q3.csv").text == "a,b\n1,2\n"
    assert client.get("/reports/../copy/q3.csv").status_code == 404


def test_a_volume_model_is_named_by_its_id_and_takes_no_revision(
    tmp_path: Path, tiny_gpt2: Path, env_keys: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Model (`volume`): `id` names the model in `/health` whole (`org/name`
    too); no Hub revision is asked for (no warning) and one given is refused."""
    from endpointgen.compiler import pipeline

    spec = on_volume(id="acme/gpt2-finetune")
    path = write_spec(tmp_path, spec)
    assert pipeline.validate(path) == [] and pipeline.warnings(path) == []
    copy = tmp_path / "volume-copy"
    shutil.copytree(tiny_gpt2, copy / "gpt2" / "v1")
    monkeypatch.setenv("ENDPOINTGEN_VOLUME_weights", str(copy))
    module = build_and_import(path, tmp_path / "out")
    health = TestClient(load_app(module, say=lambda _: None)).get("/health").json()
    assert health["model"] == "acme/gpt2-finetune" and health["status"] == "ok"
    pinned = write_spec(tmp_path / "pinned", on_volume(id="acme/gpt2-finetune", revision="v2"))
    (problem,) = pipeline.validate(pinned)
    assert problem.loc == ("model", "revision")
    assert "with `volume` the weights are the Volume's" in problem.message
