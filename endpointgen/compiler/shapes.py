"""Plan pieces for parameters, request bodies, handlers, uploads and files.

Everything here becomes data in the built module; the module's runtime turns it into
FastAPI parameters and pydantic models, so no spec string ever becomes code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

from endpointgen.spec import FileRoute, HandlerRoute, RespondRoute, Route, Spec, UploadRoute
from endpointgen.spec.models import SHAPED_ROUTES
from endpointgen.spec.shapes import FieldSpec, Param

_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(:path)?\}")
HANDLERS_DIR = "/root/endpointgen_handlers"
FILES_DIR = "/root/endpointgen_files"
VOLUMES_DIR = "/volumes"
DEFAULT_MAX_ROWS = 1_000_000


def relative(target: Path, out_dir: Path) -> str:
    """`target` relative to `out_dir`, POSIX-style: the same bytes on every machine."""
    rel = os.path.relpath(target.resolve(), out_dir.resolve())
    return str(PurePosixPath(*Path(rel).parts))


def path_params(path: str) -> dict[str, bool]:
    """`/files/{name:path}` -> {"name": True}: the names in a route path, and which take `/`."""
    return {m.group(1): bool(m.group(2)) for m in _PATH_PARAM.finditer(path)}


def _constraints(spec: FieldSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"type": spec.type, "required": spec.required}
    if not spec.required:
        out["default"] = spec.default
    pairs = (
        ("ge", spec.min),
        ("le", spec.max),
        ("min_length", spec.min_length if spec.min_length is not None else spec.min_items),
        ("max_length", spec.max_length if spec.max_length is not None else spec.max_items),
        ("enum", spec.enum),
        ("description", spec.description),
    )
    out.update({k: v for k, v in pairs if v is not None})
    return out


def params(route: Route) -> list[dict[str, Any]]:
    declared: dict[str, Param] = dict(route.params) if isinstance(route, SHAPED_ROUTES) else {}
    in_path = path_params(route.path)
    out = []
    for name in sorted(set(declared) | set(in_path)):
        param = declared.get(name, Param())
        where = param.where or ("path" if name in in_path else "query")
        out.append({"name": name, "in": where, **_constraints(param)})
    return out


def request(route: Route) -> list[dict[str, Any]] | None:
    if not isinstance(route, RespondRoute | HandlerRoute) or route.request is None:
        return None
    return [{"name": name, **_constraints(spec)} for name, spec in sorted(route.request.items())]


class Shipped:
    """Local files and folders the image must carry, each with its place in the container."""

    def __init__(self, spec_dir: Path, out_dir: Path) -> None:
        self.spec_dir = spec_dir
        self.out_dir = out_dir
        self.files: list[dict[str, str]] = []
        self.dirs: list[dict[str, str]] = []

    def handler(self, ref: str) -> dict[str, str]:
        file, function = ref.rsplit(":", 1)
        local = relative(self.spec_dir / file, self.out_dir)
        for shipped in self.files:
            if shipped["local"] == local:
                break
        else:
            index = len(self.files)
            remote = f"{HANDLERS_DIR}/h{index}_{PurePosixPath(file).name}"
            shipped = {"local": local, "remote": remote, "module": f"endpointgen_handler_{index}"}
            self.files.append(shipped)
        return {**shipped, "function": function, "shown": file}

    def folder(self, folder: str) -> dict[str, str]:
        local = relative(self.spec_dir / folder, self.out_dir)
        for shipped in self.dirs:
            if shipped["local"] == local:
                return shipped
        shipped = {"local": local, "remote": f"{FILES_DIR}/d{len(self.dirs)}"}
        self.dirs.append(shipped)
        return shipped


def route_extras(route: Route, shipped: Shipped) -> dict[str, Any]:
    """The keys of a route that only some actions read."""
    out: dict[str, Any] = {"params": params(route), "request": request(route)}
    if isinstance(route, RespondRoute | HandlerRoute):
        out["response_type"] = route.response_type or "json"
    if isinstance(route, RespondRoute):
        out["response"] = route.response
        out["status"] = route.status or 200
    if isinstance(route, HandlerRoute | UploadRoute) and route.handler:
        out["handler"] = shipped.handler(route.handler)
    if isinstance(route, HandlerRoute) and route.response_type == "binary":
        out["media_type"] = route.media_type or "application/octet-stream"
    if isinstance(route, UploadRoute):
        out["upload"] = {
            "processor": route.processor,
            "content_types": sorted(route.content_types or []),
            "max_rows": route.max_rows or DEFAULT_MAX_ROWS,
            "max_upload_pixels": route.upload_pixels,
        }
    if isinstance(route, FileRoute):
        source = (
            {"folder": shipped.folder(route.folder)}
            if route.folder
            else {"volume": {"name": route.volume, "mount": f"{VOLUMES_DIR}/{route.volume}"}}
        )
        param = next(iter(path_params(route.path)))
        out["file"] = {
            **source,
            "param": param,
            "download_name": route.download_name,
            "media_type": route.media_type,
        }
    return out


def volumes(spec: Spec) -> list[dict[str, str]]:
    names = sorted({r.volume for r in spec.routes if isinstance(r, FileRoute) and r.volume})
    return [{"name": name, "mount": f"{VOLUMES_DIR}/{name}"} for name in names]


def errors(spec: Spec) -> dict[str, dict[str, Any]]:
    return {
        name: {"status": m.status, "message": m.message} for name, m in sorted(spec.errors.items())
    }
