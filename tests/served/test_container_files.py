"""File routes on a Modal Volume in a Modal container (tests/modal_container.py): the
Volume is reloaded to see files other containers committed, and Modal refuses a reload
while a file of the Volume is open, so downloads under way must not keep new files
hidden, and a refused reload is never a 500."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import modal
import modal.exception
import pytest
from conftest import write_spec
from modal._utils.async_utils import synchronizer
from modal_container import ROUND_TRIP, Cloud, Container

from endpointgen.compiler import pipeline
from endpointgen.runtime import files

BIG = bytes(range(256)) * 4096  # 1 MiB: sixteen of a file answer's chunks
REFUSED = "there are open files preventing the operation"  # what Modal's reload looks for


def open_under(folder: Path) -> list[str]:
    """Files under `folder` this process holds open: what Modal's server sees of a
    container when it is asked to reload a Volume."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if Path(target).is_relative_to(folder):
                held.append(target)
    return held


class VolumeServer:
    """Modal's side of the Volume `reports`: the files other containers committed, and
    the reload of the container's mounted copy, which Modal refuses while the container
    holds any file of it open."""

    def __init__(self, committed: Path, mount: Path) -> None:
        self.committed, self.mount = committed, mount
        self.answers: list[str] = []  # "reloaded" or "refused", one per reload asked

    async def reload(self, lock: bool = True) -> None:
        await asyncio.sleep(ROUND_TRIP)
        if open_under(self.mount):
            self.answers.append("refused")
            raise modal.exception.ConflictError(REFUSED)
        shutil.copytree(self.committed, self.mount, dirs_exist_ok=True)
        self.answers.append("reloaded")

    def volume(self) -> modal.Volume:
        """The SDK's own `modal.Volume`, as a container has it (hydrated): `reload` is
        Modal's, turning the server's refusal into the RuntimeError Modal raises; only
        the call to the server is this one's."""
        volume = modal.Volume.from_name("reports")
        inner = synchronizer._translate_in(volume)
        inner._hydrate("vo-reports", SimpleNamespace(_snapshotted=False), None)
        inner._do_reload = self.reload
        return volume


@pytest.fixture
def volume_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, VolumeServer]:
    """An app whose file route serves the Volume `reports` (mounted at `mount`, with
    `big.bin`), the Volume's server, and `modal.Volume.from_name` giving its Volume."""
    spec = {
        "name": "volume-files",
        "routes": [{"path": "/reports/{name:path}", "action": "file", "volume": "reports"}],
    }
    built = pipeline.build(write_spec(tmp_path / "spec", spec), tmp_path / "build", None)
    built.path.parent.mkdir(parents=True, exist_ok=True)
    built.path.write_text(built.source, encoding="utf-8")
    mount, committed = tmp_path / "mount", tmp_path / "committed"
    mount.mkdir()
    committed.mkdir()
    (mount / "big.bin").write_bytes(BIG)
    monkeypatch.setenv("ENDPOINTGEN_VOLUME_reports", str(mount))
    server = VolumeServer(committed, mount.resolve())
    volume = server.volume()
    real = modal.Volume.from_name
    monkeypatch.setattr(
        modal.Volume,
        "from_name",
        lambda name, **kw: volume if name == "reports" else real(name, **kw),
    )
    return built.path, server


async def held_download(web: Container, opened: asyncio.Event, release: asyncio.Event) -> bytes:
    """GET big.bin; after its first chunk the client reads on only once `release` is
    set, so the app holds the file open until then."""
    chunks: list[bytes] = []
    async for message in web.messages("GET", "/reports/big.bin"):
        if message["type"] == "http.response.start":
            assert message["status"] == 200
        elif message.get("body"):
            chunks.append(message["body"])
            if len(chunks) == 1:
                opened.set()
                await release.wait()
    return b"".join(chunks)


def test_a_new_file_on_the_volume_is_seen_once_no_download_holds_it(
    volume_app: tuple[Path, VolumeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Routes (`file`, `volume`): a file another container added to the
    Volume is served once no download of the Volume is open. A miss while one is open is
    a 404 (Modal refuses to reload a Volume with open files, and the app does not ask),
    and the Volume reloads as that download ends, so the next request finds the file."""
    path, server = volume_app
    cloud = Cloud(path, monkeypatch)
    web = cloud.start("web")

    async def go() -> None:
        opened, release = asyncio.Event(), asyncio.Event()
        download = asyncio.get_running_loop().create_task(held_download(web, opened, release))
        await asyncio.wait_for(opened.wait(), 10)
        assert open_under(server.mount), "the download holds big.bin open"
        (server.committed / "new.txt").write_text("the new report")
        while_open = await web.request("GET", "/reports/new.txt")
        assert while_open.status == 404, while_open.body
        release.set()
        assert await asyncio.wait_for(download, 10) == BIG
        found = await web.request("GET", "/reports/new.txt")  # at once, not RELOAD_EVERY on
        assert found.status == 200 and found.body == b"the new report", found.body
        assert server.answers == ["reloaded"], "never asked to reload while a file was open"
        await web.shutdown()

    asyncio.run(go())


def test_a_reload_refused_for_a_file_opened_elsewhere_is_a_404_then_retried(
    volume_app: tuple[Path, VolumeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/spec.md, Routes (`file`, `volume`): a file of the Volume held open outside
    the file route (a handler reading it) makes Modal refuse the reload: the miss is a
    404, not a 500, and a later miss reloads once nothing holds the Volume."""
    path, server = volume_app
    cloud = Cloud(path, monkeypatch)
    web = cloud.start("web")
    monkeypatch.setattr(files.Folder, "RELOAD_EVERY", 0.0)

    async def go() -> None:
        (server.committed / "new.txt").write_text("the new report")
        with (server.mount / "big.bin").open("rb"):
            refused = await web.request("GET", "/reports/new.txt")
            assert refused.status == 404, refused.body
            assert refused.json()["error"] == "no such file"
        assert server.answers == ["refused"]
        found = await web.request("GET", "/reports/new.txt")
        assert found.status == 200 and found.body == b"the new report"
        await web.shutdown()

    asyncio.run(go())
