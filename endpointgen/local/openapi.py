"""The OpenAPI document of a spec's app, without deploying it or loading its model."""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from endpointgen.compiler.pipeline import build


def document(spec: str | Path, env: str | None = None) -> dict[str, Any]:
    """Build into a temporary folder, import the module, and ask its FastAPI app.

    The app is made around models that are not loaded (`tasks.Model`), so this needs
    neither torch nor the weights: FastAPI's document depends only on the routes.
    """
    from endpointgen.local.serve import import_module, load_app
    from endpointgen.runtime import http

    # No request is served: an unset API_KEYS or JWT_SECRET is no news here.
    level = http.log.level
    http.log.setLevel(logging.ERROR)
    try:
        return _document(spec, env, import_module, load_app)
    finally:
        http.log.setLevel(level)


def _document(
    spec: str | Path, env: str | None, import_module: Any, load_app: Any
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="endpointgen-openapi-") as folder:
        built = build(spec, folder, env)
        built.path.write_text(built.source, encoding="utf-8")
        name = built.path.stem
        before = sys.modules.get(name)
        try:
            module = import_module(built.path)
            app = load_app(module, load=False)
            doc: dict[str, Any] = app.openapi()
        finally:
            # import_module registers the module under its own name; a name like a real
            # package must not stay shadowed in this process.
            if before is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = before
    return doc
