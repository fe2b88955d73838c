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

__all__ = ["Folder", "Shipped", "Upload", "VolumeFiles", "csv_summary", "read_upload"]


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


# How each image media type's files begin: an image upload must be what its type says,
# so that a route accepting PNG and JPEG never hands a TIFF (or any other format the
# image library would read) to the decoder.
IMAGE_SIGNATURES: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/jpg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/bmp": (b"BM",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}


# What clients send when they do not know a file's type.
UNTYPED = ("", "application/octet-stream", "binary/octet-stream")
# How other files an upload route may take begin: audio, each under the names clients use.
AUDIO_SIGNATURES: dict[bytes, tuple[str, ...]] = {
    b"fLaC": ("audio/flac", "audio/x-flac"),
    b"OggS": ("audio/ogg",),
    b"ID3": ("audio/mpeg", "audio/mp3"),
    b"\xff\xfb": ("audio/mpeg", "audio/mp3"),
    b"\xff\xf3": ("audio/mpeg", "audio/mp3"),
    b"\xff\xf2": ("audio/mpeg", "audio/mp3"),
}
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")


def identify(content: bytes) -> list[str]:
    """The media types whose files begin as `content` does (several names for one kind),
    from the signatures above; none for anything else."""
    if content[:4] == b"RIFF" and content[8:12] == b"WAVE":
        return list(WAV_TYPES)
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return ["image/webp"]
    found = [k for k, starts in IMAGE_SIGNATURES.items() if content.startswith(starts)]
    for start, kinds in AUDIO_SIGNATURES.items():
        if content.startswith(start):
            found += kinds
    return found


def is_declared_image(kind: str, content: bytes) -> bool:
    """Whether `content` is an image of the media type `kind`; True for a type with no
    known signature."""
    if kind == "image/webp":
        return content[:4] == b"RIFF" and content[8:12] == b"WEBP"
    if kind not in IMAGE_SIGNATURES:
        return True
    return content.startswith(IMAGE_SIGNATURES[kind])


async def read_upload(file: UploadFile, accepted: Sequence[str] = ()) -> Upload:
    """The uploaded file; 415 when its media type is not one of `accepted`, 422 when it
    is an image type (`IMAGE_SIGNATURES`, `image/webp`) the content is not.

    The body was already bounded by the route's max_bytes before it was parsed.
    """
    kind = (file.content_type or "").split(";")[0].strip().lower()
    content = b""
    if accepted and kind not in accepted and kind in UNTYPED:
        # `curl -F file=@a.wav` sends application/octet-stream: the content says what it is.
        content = await file.read()
        kind = next((k for k in identify(content) if k in accepted), kind)
    if accepted and kind not in accepted:
        raise HTTPException(415, f"{kind or 'no type'} is not one of {', '.join(accepted)}")
    content = content or await file.read()
    if not is_declared_image(kind, content):
        raise HTTPException(422, f"the file is not a readable image of type {kind}")
    return Upload(file.filename, kind, content)


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


class VolumeFiles:
    """The files of one Modal Volume that this container's file routes are sending.

    Modal's `Volume.reload()` fails while any file of the Volume is open in the container
    (a RuntimeError, "there are open files preventing the operation"). So a Volume is
    reloaded only while none of its files is being sent; a reload asked for meanwhile
    waits, and runs as the last of them closes. Files the app opens otherwise (a handler
    reading the Volume, a model's weights loaded from it) are not counted: while one of
    those is open a reload fails, is logged, and is tried again on a later miss.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.open = 0  # answers sending one of its files now
        self.wanted = False  # a reload waits for them to end
        self._running: asyncio.Task[bool] | None = None

    @staticmethod
    def of(name: str) -> VolumeFiles:
        """The one count of a Volume's open files, whichever routes serve it."""
        return OPEN_FILES.setdefault(name, VolumeFiles(name))

    async def reload(self) -> bool:
        """Fetch the Volume's latest files now, or wait for the reload under way: False
        if it failed (logged, never raised)."""
        return await asyncio.shield(self._start())

    def reloading(self) -> bool:
        """A reload is under way on this event loop."""
        running = self._running
        loop = asyncio.get_running_loop()
        return running is not None and not running.done() and running.get_loop() is loop

    def _start(self) -> asyncio.Task[bool]:
        if not self.reloading():
            self._running = asyncio.get_running_loop().create_task(self._reload())
        assert self._running is not None
        return self._running

    async def _reload(self) -> bool:
        import modal

        self.wanted = False
        try:
            volume: Any = modal.Volume.from_name(self.name)
            await volume.reload.aio()
        except Exception as exc:  # a failed reload is a miss, not a 500
            http.log.warning("reloading Volume %s failed: %s", self.name, exc)
            return False
        return True

    def opened(self) -> None:
        self.open += 1

    def closed(self) -> None:
        self.open -= 1
        if self.open == 0 and self.wanted:  # nothing holds it now: the reload asked for
            self._start()


OPEN_FILES: dict[str, VolumeFiles] = {}


class VolumeFile(FileResponse):
    """A file of a Volume, counted open while its answer is sent."""

    def __init__(self, path: Path, files: VolumeFiles, **options: Any) -> None:
        super().__init__(path, **options)
        self.files = files

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.files.opened()
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.files.closed()


class Folder:
    """Files under one folder, by the path a client asks for; a path can never leave it.

    A folder on a Modal Volume (`volume=` its name) sees files added after the container
    started: a miss reloads the Volume, at most once every `RELOAD_EVERY` seconds, and
    only while none of its files is open (`VolumeFiles`): else the miss answers 404 and
    the Volume reloads as the last open file closes, for the requests after it.
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
        if self.volume is not None:
            files = VolumeFiles.of(self.volume)
            return VolumeFile(target, files, media_type=self.media_type, filename=name)
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
        """Fetch the Volume's latest files, if this folder is one and it is time to (True:
        fetched now); while a file of it is open, ask for a reload when none is."""
        import modal

        if self.volume is None or modal.is_local():
            return False
        files = VolumeFiles.of(self.volume)
        if files.reloading():  # as the last open file closed: its files are what is next
            return await files.reload()
        now = time.monotonic()
        if now - self.reloaded < self.RELOAD_EVERY:
            return False
        self.reloaded = now
        if files.open:
            files.wanted = True
            return False
        return await files.reload()

    @property
    def responses(self) -> dict[int | str, dict[str, Any]]:
        """For the route's `responses=`: a binary 200, and 404."""
        binary = {"schema": {"type": "string", "format": "binary"}}
        return {
            200: {"content": {self.media_type or "application/octet-stream": binary}},
            404: {"model": http.ErrorBody, "description": "No such file in the folder"},
        }
