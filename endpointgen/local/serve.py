"""Serve a built module on this machine with uvicorn: the app Modal would run, minus Modal."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from endpointgen.compiler.pipeline import build
from endpointgen.errors import UsageError


def import_module(path: Path) -> ModuleType:
    """Import a built module from its file, under its own name."""
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def models_of(module: ModuleType) -> dict[str, Any]:
    """The module's models (`tasks.Model`), by the names `create_app` takes them under."""
    names = inspect.signature(module.create_app).parameters
    return {name: getattr(module, name) for name in names}


def load_app(module: ModuleType, say: Any = print, load: bool = True) -> Any:
    """The module's FastAPI app with its models loaded, as `@modal.enter` loads them.

    With several models, all load here, in this one process. With `load=False` the app
    is made around models that are not loaded (for its OpenAPI).
    """
    models = models_of(module)
    for model in models.values() if load else ():
        say(f"loading model {model.id} ({model.task}) ...")
        started = time.perf_counter()
        model.load()
        if model.status == "ready":
            say(f"model ready in {time.perf_counter() - started:.1f}s")
        else:
            say(f"model failed to load: {model.error}; its routes answer 503")
    return module.create_app(**models)


def serve(spec: str | Path, host: str, port: int, env: str | None = None, say: Any = print) -> None:
    """Build the spec into a temporary folder, load its model once, serve until Ctrl-C."""
    import uvicorn

    from endpointgen.runtime.handlers import HandlerError

    with tempfile.TemporaryDirectory(prefix="endpointgen-") as folder:
        built = build(spec, folder, env)
        if built.spec.all_models:
            missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
            if missing:
                raise UsageError(
                    f"serving a model needs {' and '.join(missing)}: "
                    "pip install 'endpointgen[models]'"
                )
        built.path.write_text(built.source, encoding="utf-8")
        module = import_module(built.path)
        try:
            app = load_app(module, say)
        except HandlerError as exc:
            raise UsageError(f"a handler cannot be imported: {exc}") from None
        say(f"serving {built.spec.name} on http://{host}:{port} (Ctrl-C stops)")
        # No proxy headers: X-Forwarded-For from a local client would otherwise be taken
        # as the client's address, and `key: ip` limits dodged with one header.
        uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False)
