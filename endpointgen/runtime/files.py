"""Files: what the spec ships into the image, uploads, and downloads from a folder."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import UploadFile
from fastapi.responses import FileResponse
from starlette.exceptions import HTTPException

from endpointgen.runtime import http

__all__ = ["Folder", "Shipped", "Upload", "csv_summary", "read_upload"]


class Shipped:
    """A file or folder the spec names, which the image carries to `remote`.

    `local` is where it is on this machine (relative to the built module, so the module
    and its spec can move together); `path` is where the app finds it: there when running
    here, at `remote` in a Modal container.
    """

    def __init__(self, module_file: str, local: str, remote: str) -> None:
        self.local = (Path(module_file).parent / local).resolve()
        self.remote = remote

    @property
    def path(self) -> Path:
        import modal

        return self.local if modal.is_local() else Path(self.remote)


@dataclass(frozen=True)
class Upload:
    filename: str | None
    content_type: str
    content: bytes

    @property
    def info(self) -> dict[str, Any]:
        return {"filename": self.filename, "content_type": self.content_type}


async def read_upload(file: UploadFile, accepted: Sequence[str] = ()) -> Upload:
    """The uploaded file; 415 when its media type is not one of `accepted`.

    The body was already bounded by the route's max_bytes before it was parsed.
    """
    kind = (file.content_type or "").split(";")[0].strip().lower()
    if accepted and kind not in accepted:
        raise HTTPException(415, f"{kind or 'no type'} is not one of {', '.join(accepted)}")
    return Upload(file.filename, kind, await file.read())


MAX_COLUMNS = 1000
MAX_NAME = 200  # characters of a column name in the answer


async def csv_summary(
    content: bytes, max_rows: int, max_columns: int = MAX_COLUMNS
) -> dict[str, Any]:
    """Rows and column names of a UTF-8 CSV file; 413 past `max_rows` or `max_columns`,
    422 if unreadable. Parsed in a worker thread, so a large file never holds up the
    event loop; the answer is bounded (names cut at `MAX_NAME` characters)."""
    return await asyncio.to_thread(_csv_summary, content, max_rows, max_columns)


def _csv_summary(content: bytes, max_rows: int, max_columns: int) -> dict[str, Any]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise HTTPException(422, "the CSV file is not UTF-8 text") from None
    try:
        rows = csv.reader(io.StringIO(text))
        columns = next(rows, [])
        if len(columns) > max_columns:
            raise HTTPException(413, f"the CSV file has more than {max_columns} columns")
        columns = [c if len(c) <= MAX_NAME else c[: MAX_NAME - 1] + "…" for c in columns]
        count = 0
        for _ in rows:
            count += 1
            if count > max_rows:
                raise HTTPException(413, f"the CSV file has more than {max_rows} rows")
    except csv.Error as exc:
        raise HTTPException(422, f"not a readable CSV file: {exc}") from None
    return {"rows": count, "columns": columns}


UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    415: {"model": http.ErrorBody, "description": "A media type the route does not accept"},
}


class Folder:
    """Files under one folder, by the path a client asks for; a path can never leave it.

    A folder on a Modal Volume (`volume=` its name) sees files added after the container
    started: a miss reloads the Volume, at most once every `RELOAD_EVERY` seconds.
    """

    RELOAD_EVERY = 5.0

    def __init__(
        self,
        root: Path | str,
        media_type: str | None = None,
        download_name: str | None = None,
        volume: str | None = None,
    ) -> None:
        self.root = Path(http.on_this_machine(str(root)) if volume else root).resolve()
        self.media_type = media_type
        self.download_name = download_name
        self.volume = volume
        self.reloaded = -self.RELOAD_EVERY

    async def send(self, wanted: str) -> FileResponse:
        target = self.find(wanted)
        if target is None and await self.reload():
            target = self.find(wanted)
        if target is None:
            raise HTTPException(404, "no such file")
        name = self.download_name or target.name
        return FileResponse(target, media_type=self.media_type, filename=name)

    def find(self, wanted: str) -> Path | None:
        if "\x00" in wanted:
            return None
        target = (self.root / wanted).resolve()
        # resolve() follows `..` and symlinks; what lands outside the root is not there,
        # and neither are hidden files (`.env`, `.git/config`) inside it.
        if not target.is_relative_to(self.root) or not target.is_file():
            return None
        if any(part.startswith(".") for part in target.relative_to(self.root).parts):
            return None
        return target

    async def reload(self) -> bool:
        """Fetch the Volume's latest files, if this folder is one and it is time to."""
        import modal

        now = time.monotonic()
        if self.volume is None or modal.is_local() or now - self.reloaded < self.RELOAD_EVERY:
            return False
        self.reloaded = now
        try:
            volume: Any = modal.Volume.from_name(self.volume)
            await volume.reload.aio()
        except Exception as exc:  # a failed reload is a miss, not a 500
            http.log.warning("reloading Volume %s failed: %s", self.volume, exc)
            return False
        return True

    @property
    def responses(self) -> dict[int | str, dict[str, Any]]:
        """For the route's `responses=`: a binary 200, and 404."""
        binary = {"schema": {"type": "string", "format": "binary"}}
        return {
            200: {"content": {self.media_type or "application/octet-stream": binary}},
            404: {"model": http.ErrorBody, "description": "No such file in the folder"},
        }
