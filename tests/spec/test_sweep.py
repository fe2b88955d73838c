"""Nothing is silently ignored (docs/spec.md, "Spec files"): every key of the schema, set
on each kind of app, changes the built module, or is refused with its position, or is
warned about at its position. A key that validates and then changes nothing is a spec
that lies to its reader.

`KEYS` gives each key path a value to set (and the parent it needs); the test fails when
the schema gains a key `KEYS` does not name, so a new key is swept from its first day.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from endpointgen.compiler import pipeline
from endpointgen.errors import Problem, SpecError
from endpointgen.spec import Auth, Batching, Cors, Model, RateLimit, Resources, Scaling, Spec
from endpointgen.spec.models import (
    ROUTE_CLASSES,
    Callbacks,
    Example,
    Image,
    Job,
    Jobs,
    Metrics,
    NamedModel,
    RouteBase,
    Signature,
    Socket,
    Tracing,
    Vllm,
)
from endpointgen.spec.shapes import ErrorMapping, FieldSpec, Param

Path_ = tuple[str, ...]  # a key path; "*" stands for any name in a mapping or list

# Where each model of the schema sits.
SECTIONS: dict[Path_, type[BaseModel]] = {
    (): Spec,
    ("model",): Model,
    ("models", "*"): NamedModel,
    ("resources",): Resources,
    ("scaling",): Scaling,
    ("batching",): Batching,
    ("models", "*", "resources"): Resources,
    ("models", "*", "scaling"): Scaling,
    ("models", "*", "batching"): Batching,
    ("model", "vllm"): Vllm,
    ("models", "*", "vllm"): Vllm,
    ("auth",): Auth,
    ("cors",): Cors,
    ("rate_limit",): RateLimit,
    ("metrics",): Metrics,
    ("tracing",): Tracing,
    ("jobs",): Jobs,
    ("jobs", "callbacks"): Callbacks,
    ("image",): Image,
    ("errors", "*"): ErrorMapping,
    ("routes", "*"): RouteBase,  # and each action's own keys: schema_keys
    ("routes", "*", "rate_limit"): RateLimit,
    ("routes", "*", "signature"): Signature,
    ("routes", "*", "job"): Job,
    ("routes", "*", "websocket"): Socket,
    ("routes", "*", "params", "*"): Param,
    ("routes", "*", "request", "*"): FieldSpec,
    ("routes", "*", "examples", "*"): Example,
}
# Keys that cannot be swept by building, and why.
NOT_BUILT = {
    ("version",): "its one allowed value is the default",
    ("routes",): "every base has routes; each route key is swept",
    ("environments",): "swept by building with --env (test_an_environment_changes_its_build)",
    ("routes", "*", "examples"): (
        "read by `endpointgen test`, not the module: tests/local/test_contract.py"
    ),
    # Param shares FieldSpec's keys; a parameter is never a list, so these are refused
    # with their position wherever they are set (tests/spec/test_shape_errors.py).
    ("routes", "*", "params", "*", "min_items"): "a parameter is never a list",
    ("routes", "*", "params", "*", "max_items"): "a parameter is never a list",
}
MODEL = {"id": "gpt2", "task": "text-generation", "revision": "main"}
ON_VOLUME = {"id": "gpt2", "task": "text-generation"}  # a Volume's weights: no Hub revision
EMBEDDER = {
    "id": "sentence-transformers/all-MiniLM-L6-v2",
    "task": "embeddings",
    "revision": "main",
}
# key path -> the value to set, and the parent to add first when the base lacks it.
KEYS: dict[Path_, tuple[Any, Any]] = {
    ("name",): ("another-name", None),
    ("description",): ("Something else", None),
    ("model",): (MODEL, None),
    ("models",): ({"extra": EMBEDDER}, None),
    ("shape",): ("split", None),
    ("region",): ("eu", None),
    ("snapshot",): ("memory", None),
    ("gpu",): ("T4", None),
    ("resources",): ({"cpu": 2}, None),
    ("scaling",): ({"max_containers": 3}, None),
    ("batching",): ({}, None),
    ("secrets",): (["extra-secret"], None),
    ("packages",): (["pandas==2.2.3"], None),
    ("env",): ({"MODE": "fast"}, None),
    ("auth",): ({"mode": "bearer", "secret": "sweep-keys"}, None),
    ("cors",): ({"origins": ["https://a.example.com"]}, None),
    ("rate_limit",): ({"limit": "10/minute"}, None),
    ("metrics",): ({"enabled": True}, None),
    ("docs",): ("off", None),
    ("tracing",): ({"enabled": True}, None),
    ("image",): ({"system_packages": ["ffmpeg"]}, None),
    ("image", "python"): ("3.12", {}),
    ("image", "system_packages"): (["ffmpeg"], {}),
    ("image", "commands"): (["echo built"], {}),
    ("tracing", "enabled"): (True, {}),
    ("jobs",): ({"timeout": 60}, None),
    ("jobs", "timeout"): (60, {}),
    ("jobs", "concurrency"): (2, {}),
    ("jobs", "queue"): (16, {}),
    ("jobs", "queue_mib"): (32, {}),
    ("jobs", "callbacks"): ({"hosts": ["hooks.example.com"]}, {}),
    ("jobs", "callbacks", "hosts"): (["other.example.com"], {"hosts": ["hooks.example.com"]}),
    ("jobs", "callbacks", "secret"): ("callback-keys", {"hosts": ["hooks.example.com"]}),
    ("jobs", "callbacks", "env"): ("OTHER_KEY", {"hosts": ["hooks.example.com"]}),
    ("jobs", "callbacks", "private"): (True, {"hosts": ["hooks.example.com"]}),
    ("routes", "*", "job"): (True, None),
    ("routes", "*", "job", "ttl"): (60, {}),
    ("routes", "*", "websocket"): (True, None),
    ("routes", "*", "websocket", "idle_timeout"): (60, {}),
    ("routes", "*", "websocket", "max_lifetime"): (120, {}),
    ("errors",): ({"ValueError": {"status": 400, "message": "bad value"}}, None),
    ("model", "id"): ("distilgpt2", None),
    ("model", "task"): ("embeddings", None),
    ("model", "revision"): ("v2", None),
    ("model", "dtype"): ("float16", None),
    ("model", "variant"): ("fp16", None),
    ("model", "loader"): ("loader.py:load", None),
    ("model", "engine"): ("transformers", None),
    ("model", "volume"): ("tuned", None),
    ("model", "path"): ("gpt2/v1", {"volume": "weights"}),
    ("model", "vllm"): ({"max_model_len": 2048}, None),
    ("resources", "cpu"): (2.0, {}),
    ("resources", "memory"): (4096, {}),
    ("resources", "timeout"): (60, {}),
    ("resources", "startup_timeout"): (900, {}),
    ("scaling", "min_containers"): (1, {}),
    ("scaling", "max_containers"): (3, {}),
    ("scaling", "buffer_containers"): (1, {}),
    ("scaling", "scaledown_window"): (60, {}),
    ("scaling", "max_inputs"): (3, {}),
    ("scaling", "target_inputs"): (2, {"max_inputs": 8}),
    ("batching", "max_batch_size"): (4, {}),
    ("batching", "wait_ms"): (2, {}),
    ("auth", "mode"): ("api_key", {"secret": "sweep-keys"}),
    ("auth", "secret"): ("other-keys", {}),
    ("auth", "header"): ("X-Key", {}),
    ("auth", "env"): ("MY_KEYS", {}),
    ("auth", "algorithm"): ("RS256", {}),
    ("auth", "audience"): ("aud", {}),
    ("auth", "issuer"): ("iss", {}),
    ("auth", "leeway"): (5, {}),
    ("cors", "origins"): (["https://b.example.com"], {"origins": ["https://a.example.com"]}),
    ("cors", "methods"): (["GET", "POST", "PATCH"], {"origins": ["https://a.example.com"]}),
    ("cors", "headers"): (["X-Extra"], {"origins": ["https://a.example.com"]}),
    ("cors", "credentials"): (True, {"origins": ["https://a.example.com"]}),
    ("cors", "max_age"): (60, {"origins": ["https://a.example.com"]}),
    ("rate_limit", "limit"): ("20/minute", {"limit": "10/minute"}),
    ("rate_limit", "key"): ("api_key", {"limit": "10/minute"}),
    ("rate_limit", "storage"): ("redis", {"limit": "10/minute"}),
    ("rate_limit", "url_env"): ("OTHER_URL", {"limit": "10/minute", "storage": "redis"}),
    ("rate_limit", "secret"): ("redis-creds", {"limit": "10/minute", "storage": "redis"}),
    ("metrics", "enabled"): (True, {}),
    ("metrics", "public"): (True, {"enabled": True}),
    ("errors", "*", "status"): (404, {"status": 400, "message": "bad value"}),
    ("errors", "*", "message"): ("other words", {"status": 400, "message": "bad value"}),
    ("routes", "*", "path"): ("/elsewhere", None),
    ("routes", "*", "method"): ("PUT", None),
    ("routes", "*", "action"): ("health", None),
    ("routes", "*", "summary"): ("A summary", None),
    ("routes", "*", "stream"): (True, None),
    ("routes", "*", "auth"): ("none", None),
    ("routes", "*", "public"): (True, None),
    ("routes", "*", "rate_limit"): ({"limit": "5/minute"}, None),
    ("routes", "*", "max_tokens"): (64, None),
    ("routes", "*", "max_chars"): (500, None),
    ("routes", "*", "max_items"): (4, None),
    ("routes", "*", "max_bytes"): (2048, None),
    ("routes", "*", "provider"): ("stripe", None),
    ("routes", "*", "secret"): ("other-hook", None),
    ("routes", "*", "env"): ("OTHER_HOOK", None),
    ("routes", "*", "signature"): ({"header": "X-Other-Sig"}, None),
    ("routes", "*", "tolerance"): (60, None),
    ("routes", "*", "model"): ("writer", None),
    ("routes", "*", "params"): ({"q": {"type": "str", "default": "a"}}, None),
    ("routes", "*", "request"): ({"x": "int"}, None),
    ("routes", "*", "response"): ({"other": True}, None),
    ("routes", "*", "response_type"): ("text", None),
    ("routes", "*", "status"): (201, None),
    ("routes", "*", "handler"): ("handlers.py:other", None),
    ("routes", "*", "processor"): ("csv", None),
    ("routes", "*", "content_types"): (["text/plain"], None),
    ("routes", "*", "max_rows"): (10, None),
    ("routes", "*", "max_pixels"): (1000, None),
    ("routes", "*", "max_image_pixels"): (8192, None),
    ("routes", "*", "max_upload_pixels"): (1000, None),
    ("routes", "*", "max_steps"): (20, None),
    ("routes", "*", "folder"): ("other", None),
    ("routes", "*", "volume"): ("other-reports", None),
    ("routes", "*", "download_name"): ("report.txt", None),
    ("routes", "*", "media_type"): ("text/plain", None),
    ("routes", "*", "rate_limit", "limit"): ("20/minute", {"limit": "10/minute"}),
    ("routes", "*", "rate_limit", "key"): ("api_key", {"limit": "10/minute"}),
    ("routes", "*", "rate_limit", "storage"): ("modal-dict", {"limit": "10/minute"}),
    ("routes", "*", "rate_limit", "url_env"): (
        "OTHER_URL",
        {"limit": "10/minute", "storage": "redis"},
    ),
    ("routes", "*", "rate_limit", "secret"): (
        "redis-creds",
        {"limit": "10/minute", "storage": "redis"},
    ),
    ("routes", "*", "signature", "header"): ("X-Other", {"header": "X-Sig"}),
    ("routes", "*", "signature", "algorithm"): ("sha1", {"header": "X-Sig"}),
    ("routes", "*", "signature", "encoding"): ("base64", {"header": "X-Sig"}),
    ("routes", "*", "signature", "prefix"): ("v1=", {"header": "X-Sig"}),
    ("routes", "*", "signature", "timestamp_header"): ("X-Time", {"header": "X-Sig"}),
}
PARAM = {"type": "int", "default": 1}
TEXT = {"type": "str", "default": "a"}
ITEMS = {"type": "list[str]", "default": ["a", "b"]}
for section, parent in (
    (("routes", "*", "params", "*"), PARAM),
    (("routes", "*", "request", "*"), PARAM),
):
    KEYS |= {
        (*section, "type"): ("float", parent),
        (*section, "description"): ("what it is", parent),
        (*section, "default"): (2, parent),
        (*section, "min"): (0, parent),
        (*section, "max"): (10, parent),
        (*section, "min_length"): (1, TEXT),
        (*section, "max_length"): (10, TEXT),
        (*section, "enum"): ([1, 2], parent),
    }
    if section[2] == "request":
        KEYS |= {(*section, "min_items"): (1, ITEMS), (*section, "max_items"): (3, ITEMS)}
KEYS[("routes", "*", "params", "*", "in")] = ("header", PARAM)
# A named model takes what `model` and the app's sections take.
for key, (value, parent) in list(KEYS.items()):
    if key[0] == "model" and len(key) == 2:
        KEYS[("models", "*", key[1])] = (value, EMBEDDER)
    if key[0] in ("resources", "scaling", "batching"):
        KEYS[("models", "*", *key)] = (value, parent)
VLLM_OPTIONS = {
    "max_model_len": 2048,
    "gpu_memory_utilization": 0.8,
    "tensor_parallel_size": 1,
    "quantization": "awq",
    "enforce_eager": False,  # on by default for a model that scales to zero
}
for name, value in VLLM_OPTIONS.items():
    KEYS[("model", "vllm", name)] = (value, {})
    KEYS[("models", "*", "vllm", name)] = (value, {})
KEYS[("models", "*", "gpu")] = ("T4", EMBEDDER)
KEYS[("models", "*", "snapshot")] = ("memory", EMBEDDER)
KEYS[("models", "*", "task")] = ("text-classification", EMBEDDER)

RESPOND = {"path": "/r", "method": "POST", "action": "respond", "response": {"ok": True}}
HEALTH = {"path": "/health", "action": "health"}
# The kinds of app each key is set on; route keys go on each base's first route.
BASES: dict[str, dict[str, Any]] = {
    "respond": {"name": "sweep", "routes": [RESPOND]},
    "api-key": {
        "name": "sweep",
        "auth": {"mode": "api_key", "secret": "sweep-keys"},
        "routes": [RESPOND],
    },
    "own-limits": {  # every route sets its own limit, or none
        "name": "sweep",
        "routes": [
            {**RESPOND, "rate_limit": {"limit": "5/minute"}},
            {**HEALTH, "rate_limit": "none"},
        ],
    },
    "jwt": {"name": "sweep", "auth": {"mode": "jwt", "secret": "sweep-keys"}, "routes": [RESPOND]},
    "generate": {
        "name": "sweep",
        "model": MODEL,
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [{"path": "/generate", "method": "POST", "action": "generate"}, HEALTH],
    },
    "vllm": {
        "name": "sweep",
        "model": {**MODEL, "engine": "vllm"},
        "gpu": "H100",
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [{"path": "/generate", "method": "POST", "action": "generate"}, HEALTH],
    },
    "volume-model": {
        "name": "sweep",
        "model": {**ON_VOLUME, "volume": "weights"},
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [{"path": "/generate", "method": "POST", "action": "generate"}, HEALTH],
    },
    "models-vllm": {
        "name": "sweep",
        "models": {"writer": {**ON_VOLUME, "engine": "vllm", "gpu": "L4", "volume": "weights"}},
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [{"path": "/v1", "action": "openai", "model": "writer"}],
    },
    "painter": {
        "name": "sweep",
        "model": {"id": "stabilityai/sd-turbo", "task": "text-to-image"},
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [{"path": "/draw", "method": "POST", "action": "generate"}, HEALTH],
    },
    "embed": {
        "name": "sweep",
        "model": EMBEDDER,
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [{"path": "/embed", "method": "POST", "action": "embed"}, HEALTH],
    },
    "openai": {
        "name": "sweep",
        "model": MODEL,
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [{"path": "/v1", "action": "openai"}],
    },
    "open-model": {  # refused until its route says `public: true`
        "name": "sweep",
        "model": MODEL,
        "routes": [{"path": "/generate", "method": "POST", "action": "generate"}],
    },
    "handler-model": {
        "name": "sweep",
        "model": MODEL,
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [
            {"path": "/h", "method": "POST", "action": "handler", "handler": "handlers.py:run"}
        ],
    },
    "models": {
        "name": "sweep",
        "models": {"extra": EMBEDDER, "writer": MODEL},
        "auth": {"mode": "bearer", "secret": "sweep-keys"},
        "routes": [
            {
                "path": "/h",
                "method": "POST",
                "action": "handler",
                "handler": "handlers.py:run",
                "model": "extra",
            },
            {"path": "/generate", "method": "POST", "action": "generate", "model": "writer"},
        ],
    },
    "webhook": {
        "name": "sweep",
        "routes": [
            {
                "path": "/hook",
                "method": "POST",
                "action": "webhook",
                "provider": "github",
                "secret": "hook",
                "env": "HOOK_SECRET",
            }
        ],
    },
    "webhook-generic": {
        "name": "sweep",
        "routes": [
            {
                "path": "/hook",
                "method": "POST",
                "action": "webhook",
                "provider": "generic",
                "signature": {"header": "X-Sig"},
                "secret": "hook",
                "env": "HOOK_SECRET",
            }
        ],
    },
    "csv": {
        "name": "sweep",
        "routes": [{"path": "/csv", "method": "POST", "action": "upload", "processor": "csv"}],
    },
    "image": {
        "name": "sweep",
        "model": {"id": "google/vit-base-patch16-224", "task": "image-classification"},
        "auth": {"mode": "api_key", "secret": "sweep-keys"},
        "routes": [
            {
                "path": "/image",
                "method": "POST",
                "action": "upload",
                "processor": "image-classification",
            }
        ],
    },
    "handler": {
        "name": "sweep",
        "routes": [
            {"path": "/h", "method": "POST", "action": "handler", "handler": "handlers.py:run"}
        ],
    },
    "job": {
        "name": "sweep",
        "auth": {"mode": "api_key", "secret": "sweep-keys"},
        "routes": [
            {
                "path": "/h",
                "method": "POST",
                "action": "handler",
                "handler": "handlers.py:run",
                "job": {"ttl": 3600},
            }
        ],
    },
    "file": {
        "name": "sweep",
        "routes": [{"path": "/files/{name:path}", "action": "file", "folder": "files"}],
    },
    "socket-handler": {  # a GET handler whose function can serve a WebSocket
        "name": "sweep",
        "auth": {"mode": "api_key", "secret": "sweep-keys"},
        "routes": [{"path": "/talk", "action": "handler", "handler": "handlers.py:talk"}],
    },
    "volume": {
        "name": "sweep",
        "routes": [{"path": "/files/{name:path}", "action": "file", "volume": "reports"}],
    },
}


def app_auth(spec: dict[str, Any]) -> str:
    return str(spec.get("auth", {}).get("mode", "none"))


def open_route(spec: dict[str, Any]) -> bool:
    route = spec["routes"][0]
    return app_auth(spec) == "none" or route["action"] in ("health", "webhook")


# Keys whose value, on some apps, says what the app does anyway: not ignored, restated.
RESTATES: dict[Path_, Any] = {
    ("metrics", "public"): lambda spec: app_auth(spec) == "none",  # /metrics is open already
    ("routes", "*", "auth"): open_route,  # `auth: none` on a route that has none
    ("routes", "*", "public"): open_route,  # `public: true` on a route that is open
    # `job: true` on a route that is a job with the default ttl already
    ("routes", "*", "job"): lambda spec: spec["routes"][0].get("job") == {"ttl": 3600},
    # `engine: transformers` on a model without `engine`: the default, restated.
    ("model", "engine"): lambda spec: "engine" not in spec.get("model", {}),
    ("models", "*", "engine"): lambda spec: "engine" not in first_model(spec),
}


def first_model(spec: dict[str, Any]) -> dict[str, Any]:
    models = spec.get("models") or {"extra": {}}
    model: dict[str, Any] = next(iter(models.values()))
    return model


def schema_keys() -> set[Path_]:
    found = set()
    for section, model in SECTIONS.items():
        models = ROUTE_CLASSES.values() if model is RouteBase else [model]
        for name, info in {k: v for m in models for k, v in m.model_fields.items()}.items():
            found.add((*section, info.alias or name))
    return found


def test_every_key_of_the_schema_is_swept() -> None:
    """A key the schema gains without an entry here fails, so it is swept too."""
    sections = set(SECTIONS) - {()}
    wanted = schema_keys() - set(NOT_BUILT) - {s for s in sections if s[-1] == "*"}
    examples = {k for k in wanted if k[:3] == ("routes", "*", "examples")}
    assert wanted - examples - set(KEYS) == set()
    assert set(KEYS) - wanted == set()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the bases and keys name: handlers, a loader, served folders."""
    root = tmp_path_factory.mktemp("sweep")
    (root / "handlers.py").write_text(
        "def run(data):\n    return data\n\n\ndef other(data):\n    return {}\n\n\n"
        "async def talk(messages):\n    async for message in messages:\n        yield message\n"
    )
    (root / "loader.py").write_text("def load(where):\n    return where\n")
    for name in ("files", "other"):
        (root / name).mkdir()
        (root / name / "a.txt").write_text("a\n")
    return root


NEW_NAMES = {"models": "extra", "errors": "ValueError"}  # a first name in an empty mapping


def place(spec: dict[str, Any], path: Path_, value: Any) -> None:
    """Set `path` in `spec`: "*" is the first route, or the mapping's first name."""
    where: Any = spec
    for i, part in enumerate(path):
        last = i == len(path) - 1
        if part == "*":
            if isinstance(where, list):
                key: Any = 0
            else:
                key = next(iter(where), NEW_NAMES.get(path[i - 1], "x"))
        else:
            key = part
        if last:
            where[key] = copy.deepcopy(value)
        else:
            if isinstance(where, dict) and key not in where:
                where[key] = {}
            where = where[key]


def present(spec: dict[str, Any], path: Path_) -> bool:
    where: Any = spec
    for part in path:
        if part == "*":
            if not where:
                return False
            where = where[0] if isinstance(where, list) else next(iter(where.values()))
        elif isinstance(where, dict) and part in where:
            where = where[part]
        else:
            return False
    return True


class Outcome:
    REFUSED, CHANGED, WARNED, RESTATED = "refused", "changed", "warned", "restated"
    IGNORED, NO_CONTEXT = "IGNORED", "-"


@cache
def built(folder: Path, text: str) -> tuple[tuple[Problem, ...], str | None, tuple[str, ...]]:
    """(problems, module, warnings) of a spec given as YAML text."""
    path = folder / f"spec-{abs(hash(text))}.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        problems = pipeline.validate(path)
        if problems:
            return tuple(problems), None, ()
        source = pipeline.build(path, folder / "out").source
        warned = tuple(p.message for p in pipeline.warnings(path))
        return (), source.replace(path.name, "spec.yaml"), warned
    except SpecError as exc:
        return tuple(exc.problems), None, ()
    finally:
        path.unlink()


def sweep(folder: Path, base: dict[str, Any], key: Path_, value: Any, parent: Any) -> str:
    start = copy.deepcopy(base)
    if parent is not None and not present(start, key[:-1]):
        place(start, key[:-1], parent)
    if key[-1] != "*" and present(start, key) and _get(start, key) == value:
        return Outcome.NO_CONTEXT
    refused, before, warned_before = built(folder, yaml.safe_dump(start, sort_keys=False))
    changed = copy.deepcopy(start)
    place(changed, key, value)
    problems, after, warned = built(folder, yaml.safe_dump(changed, sort_keys=False))
    if refused:  # no context for this key, unless the key is what the spec lacked
        return Outcome.NO_CONTEXT if problems else Outcome.CHANGED
    if problems:
        # Refused at a line and column: the key's own, or the one it conflicts with.
        assert all(p.line >= 1 and p.col >= 1 and p.loc for p in problems), problems
        return Outcome.REFUSED
    if after != before:
        return Outcome.CHANGED
    if set(warned) - set(warned_before):
        return Outcome.WARNED
    if key in RESTATES and RESTATES[key](start):
        return Outcome.RESTATED
    return Outcome.IGNORED


def _get(spec: dict[str, Any], path: Path_) -> Any:
    where: Any = spec
    for part in path:
        if part == "*":
            where = where[0] if isinstance(where, list) else next(iter(where.values()))
        else:
            where = where[part]
    return where


@pytest.mark.parametrize("key", sorted(KEYS), ids=lambda k: ".".join(k).replace("*", "_"))
@pytest.mark.slow
def test_a_key_changes_the_build_or_is_refused(folder: Path, key: Path_) -> None:
    """docs/spec.md, its opening: nothing is silently ignored. On every kind of app, the
    key changes the built module or is refused (or warned about); and on some app it
    takes effect."""
    value, parent = KEYS[key]
    outcomes = {name: sweep(folder, base, key, value, parent) for name, base in BASES.items()}
    ignored = [name for name, outcome in outcomes.items() if outcome == Outcome.IGNORED]
    assert not ignored, f"{'.'.join(key)}: {value!r} validates and changes nothing on {ignored}"
    assert Outcome.CHANGED in outcomes.values(), f"{'.'.join(key)} never takes effect: {outcomes}"


def test_an_environment_changes_its_build(folder: Path) -> None:
    """`environments.NAME` is read by `--env NAME`: the overlay changes that build only."""
    spec = {**BASES["respond"], "environments": {"prod": {"description": "production"}}}
    path = folder / "env.yaml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    base = pipeline.build(path, folder / "out").source
    prod = pipeline.build(path, folder / "out", env="prod").source
    assert base != prod and 'DESCRIPTION = "production"' in prod
