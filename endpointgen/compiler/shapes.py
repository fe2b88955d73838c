"""Plan pieces for parameters, request bodies, handlers, uploads and files.

Everything here becomes data in the built module; the module's runtime turns it into
FastAPI parameters and pydantic models, so no spec string ever becomes code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from endpointgen.compiler.resolved import (
    ErrorPlan,
    FieldPlan,
    FileSettings,
    HandlerRef,
    Shipped,
    UploadSettings,
    VolumeMount,
)
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


def _field(name: str, spec: FieldSpec, where: str | None = None) -> FieldPlan:
    return FieldPlan(
        name=name,
        type=spec.type,
        required=spec.required,
        default=None if spec.required else spec.default,
        where=where,
        ge=spec.min,
        le=spec.max,
        min_length=spec.min_length if spec.min_length is not None else spec.min_items,
        max_length=spec.max_length if spec.max_length is not None else spec.max_items,
        enum=list(spec.enum) if spec.enum is not None else None,
        description=spec.description,
    )


def params(route: Route) -> list[FieldPlan]:
    declared: dict[str, Param] = dict(route.params) if isinstance(route, SHAPED_ROUTES) else {}
    in_path = path_params(route.path)
    out = []
    for name in sorted(set(declared) | set(in_path)):
        param = declared.get(name, Param())
        where = param.where or ("path" if name in in_path else "query")
        out.append(_field(name, param, where))
    return out


def request(route: Route) -> list[FieldPlan] | None:
    if not isinstance(route, RespondRoute | HandlerRoute) or route.request is None:
        return None
    return [_field(name, spec) for name, spec in sorted(route.request.items())]


class ShippedFiles:
    """Local files and folders the image must carry, each with its place in the container."""

    def __init__(self, spec_dir: Path, out_dir: Path) -> None:
        self.spec_dir = spec_dir
        self.out_dir = out_dir
        self.files: list[Shipped] = []
        self.dirs: list[Shipped] = []

    def handler(self, ref: str) -> HandlerRef:
        file, function = ref.rsplit(":", 1)
        local = relative(self.spec_dir / file, self.out_dir)
        for shipped in self.files:
            if shipped.local == local:
                break
        else:
            index = len(self.files)
            remote = f"{HANDLERS_DIR}/h{index}_{PurePosixPath(file).name}"
            shipped = Shipped(local, remote, f"endpointgen_handler_{index}")
            self.files.append(shipped)
        assert shipped.module is not None
        return HandlerRef(shipped.local, shipped.remote, shipped.module, function, file)

    def folder(self, folder: str) -> Shipped:
        local = relative(self.spec_dir / folder, self.out_dir)
        for shipped in self.dirs:
            if shipped.local == local:
                return shipped
        shipped = Shipped(local, f"{FILES_DIR}/d{len(self.dirs)}")
        self.dirs.append(shipped)
        return shipped


def upload_settings(route: UploadRoute) -> UploadSettings:
    return UploadSettings(
        processor=route.processor,
        content_types=sorted(route.content_types or []),
        max_rows=route.max_rows or DEFAULT_MAX_ROWS,
        max_upload_pixels=route.upload_pixels,
    )


def file_settings(route: FileRoute, shipped: ShippedFiles) -> FileSettings:
    volume = None if route.folder else route.volume
    return FileSettings(
        folder=shipped.folder(route.folder) if route.folder else None,
        volume=VolumeMount(volume, f"{VOLUMES_DIR}/{volume}") if volume else None,
        param=next(iter(path_params(route.path))),
        download_name=route.download_name,
        media_type=route.media_type,
    )


def volumes(spec: Spec) -> list[VolumeMount]:
    names = sorted({r.volume for r in spec.routes if isinstance(r, FileRoute) and r.volume})
    return [VolumeMount(name, f"{VOLUMES_DIR}/{name}") for name in names]


def errors(spec: Spec) -> dict[str, ErrorPlan]:
    return {name: ErrorPlan(m.status, m.message) for name, m in sorted(spec.errors.items())}
