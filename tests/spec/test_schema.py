"""The published JSON Schema of the spec, as an editor uses it, and route keys by action."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.compiler import pipeline
from endpointgen.errors import SpecError
from endpointgen.spec.models import ROUTE_CLASSES, Action

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schema" / "endpointgen.schema.json").read_text())


def editor_errors(spec: dict[str, Any]) -> list[str]:
    """What an editor that reads the checked-in schema (yaml-language-server) flags."""
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [error.message for error in validator.iter_errors(spec)]


def test_a_route_is_one_shape_per_action_chosen_by_its_action() -> None:
    """docs/spec.md, Routes: the schema's route is a `oneOf` with a `discriminator` on
    `action`, one shape per action, each with exactly the keys that action takes, so an
    editor completes the keys of the route's own action."""
    routes = SCHEMA["properties"]["routes"]["items"]
    assert routes["discriminator"]["propertyName"] == "action"
    mapping = routes["discriminator"]["mapping"]
    assert set(mapping) == set(ROUTE_CLASSES) == set(get_args(Action))
    assert [r["$ref"] for r in routes["oneOf"]] == [mapping[a] for a in ROUTE_CLASSES]
    for action, cls in ROUTE_CLASSES.items():
        shape = SCHEMA["$defs"][mapping[action].rsplit("/", 1)[1]]
        assert shape["properties"]["action"]["const"] == action
        assert shape["additionalProperties"] is False
        assert set(shape["properties"]) == set(cls.model_fields)
    embed = SCHEMA["$defs"][mapping["embed"].rsplit("/", 1)[1]]["properties"]
    assert "max_items" in embed and "processor" not in embed and "stream" not in embed


SPEC = {
    "name": "demo",
    "model": {"id": "sentence-transformers/all-MiniLM-L6-v2", "task": "embeddings"},
    "auth": {"mode": "bearer", "secret": "demo-keys"},
    "routes": [{"path": "/embed", "method": "POST", "action": "embed", "max_items": 8}],
}


@pytest.mark.parametrize(
    ("extra", "refused"),
    [
        ({}, False),
        ({"processor": "csv"}, True),  # an upload's key
        ({"stream": True}, True),  # a generate route's key
        ({"max_itemz": 8}, True),  # no route's key
        ({"action": "upload", "processor": "csv"}, True),  # keeps the embed's max_items
        ({"action": "upload", "processor": "csv", "max_items": None}, False),
        ({"action": "embedd"}, True),
    ],
    ids=["embed", "processor", "stream", "misspelt", "max-items-on-upload", "upload", "action"],
)
def test_the_editor_checks_the_keys_of_the_routes_action(
    extra: dict[str, Any], refused: bool
) -> None:
    """docs/spec.md, Routes: against the published schema, a route takes the keys of its
    own action only: `processor` is refused on an `embed` route and accepted on an
    `upload` one, as `endpointgen validate` refuses and accepts them."""
    route = {k: v for k, v in {**SPEC["routes"][0], **extra}.items() if v is not None}
    spec = {**SPEC, "routes": [route]}
    assert bool(editor_errors(spec)) is refused


def test_the_schema_is_what_the_checked_in_specs_follow() -> None:
    """Every spec in specs/ passes the published schema, as an editor would check it."""
    for path in sorted((ROOT / "specs").glob("*.yaml")):
        assert editor_errors(yaml.safe_load(path.read_text())) == [], path.name


def _write(folder: Path, routes: list[dict[str, Any]], model: dict[str, str]) -> Path:
    spec = {
        "name": "pixels",
        "model": model,
        "auth": {"mode": "bearer", "secret": "k"},
        "routes": routes,
    }
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


PAINTER = {"id": "stabilityai/sd-turbo", "task": "text-to-image", "revision": "main"}
EYES = {"id": "google/vit-base-patch16-224", "task": "image-classification", "revision": "main"}
DRAW = {"path": "/draw", "method": "POST", "action": "generate"}
SEE = {"path": "/see", "method": "POST", "action": "upload", "processor": "image-classification"}


@pytest.mark.parametrize(
    ("model", "route", "new"),
    [(PAINTER, DRAW, "max_image_pixels"), (EYES, SEE, "max_upload_pixels")],
    ids=["generate", "upload"],
)
def test_each_pixel_cap_has_its_own_name_and_the_old_one_still_reads(
    tmp_path: Path, model: dict[str, str], route: dict[str, Any], new: str
) -> None:
    """docs/spec.md, Routes (`max_image_pixels`, `max_upload_pixels`): a text-to-image
    generate route bounds the image asked for with `max_image_pixels`, an image upload what
    its header declares with `max_upload_pixels`. `max_pixels`, their old name, builds the
    same module, and `endpointgen validate` warns at its line; both names at once are
    refused."""
    path = _write(tmp_path, [{**route, new: 250_000}], model)
    assert pipeline.validate(path) == [] and pipeline.warnings(path) == []
    built = pipeline.build(path, tmp_path / "out").source
    assert "max_pixels=250000" in built
    old = _write(tmp_path, [{**route, "max_pixels": 250_000}], model)
    assert pipeline.build(old, tmp_path / "out").source == built
    result = CliRunner().invoke(app, ["validate", str(old)])
    assert result.exit_code == 0
    line = old.read_text().splitlines().index("  max_pixels: 250000") + 1
    assert (
        f"{old}:{line}:3: routes[0].max_pixels: warning: `max_pixels` is the old name of "
        f"`{new}` on {route['action']} routes; rename it"
    ) in result.output
    both = _write(tmp_path, [{**route, new: 250_000, "max_pixels": 250_000}], model)
    with pytest.raises(SpecError) as caught:
        pipeline.build(both, tmp_path / "out")
    assert f"routes[0].max_pixels: `max_pixels` is the old name of `{new}`: keep `{new}` only" in (
        str(caught.value)
    )
    other = "max_upload_pixels" if new == "max_image_pixels" else "max_image_pixels"
    wrong = _write(tmp_path, [{**route, other: 250_000}], model)
    (problem,) = pipeline.validate(wrong)
    assert problem.message.startswith(f"`{other}` applies to ")
    assert problem.message.endswith(f" routes, not {route['action']}")
