"""The Hub cache a model container loads from: in a Modal container the Volume
`endpointgen-hf-cache` at `HF_HOME`, shared by every container of every app on the same
model. A download that stopped part-way (a container killed, a connection cut) leaves a
snapshot with its config but not all its weights, or not the files a load reads after
them; loaded offline, it would fail in every container, forever. So a snapshot loads
offline (`engines.Engine`) only once it is known complete:

- Marked: a load from the Hub that finished, or `fetch`, writes the snapshot's marker,
  `.endpointgen/<commit>.json` in the repo's folder of the cache beside `snapshots/`: its
  files and their sizes. A start compares those sizes; a marker that no longer matches (a
  file deleted or cut short since) is dropped.
- A download began here and was not marked (`.endpointgen/started-<revision>` is there,
  written before any download): partial, whatever its files look like. The next start
  downloads what it lacks, and what it already has is kept.
- Neither (a cache written before markers, or by another tool): judged from its files.
  Complete when it has its root file (`config.json`, or a diffusers pipeline's
  `model_index.json`) and all its weights, each whole: the file a load reads, or every
  shard its index names, in each of a pipeline's model folders. A safetensors file is
  whole when it is as long as its header says, a torch file (a zip) when it ends with
  its directory, any other when it is not empty. A complete one is marked and loads
  offline, with no token even for a gated model; any other is downloaded again. A file
  besides the weights that it lacks is asked of the Hub once a load finds it missing
  (`engines.Engine.hub_load`).

A weights file cut short is removed before a download, since huggingface_hub never
fetches again a file a snapshot has. `fetch` fills the cache before the first container
starts (`endpointgen deploy --warm-cache`). huggingface_hub is imported only when a
function here is called.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import BinaryIO, NamedTuple
from urllib.parse import quote

__all__ = ["Check", "begin", "cached", "check", "fetch", "loaded", "offline", "snapshot"]

log = logging.getLogger("endpointgen")

MARKERS = ".endpointgen"  # in a repo's folder of the cache, beside `snapshots/`
PIPELINE_ROOT = "model_index.json"  # a diffusers pipeline: its models are in folders
# The weights a load reads, in the order transformers and diffusers look for them: the
# single file, or its index and the shards the index names.
WEIGHTS = [
    f"{stem}{suffix}"
    for suffix in (".safetensors", ".bin")
    for stem in ("model", "diffusion_pytorch_model", "pytorch_model")
]
SHARDS = r"(model|diffusion_pytorch_model|pytorch_model)(-\d+-of-\d+)?"  # and the suffix
# Files of a repo that hold weights: `fetch` takes only those a load reads.
WEIGHT_SUFFIXES = frozenset(
    {
        ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".ot",
        ".tflite", ".onnx", ".onnx_data", ".gguf", ".mlmodel", ".pb",
    }
)  # fmt: skip
MAX_HEADER = 100_000_000  # the most a safetensors header may hold (safetensors' own limit)


class Check(NamedTuple):
    """What a snapshot lacks: files a load reads that are not there, and weights files
    that are there but cut short."""

    missing: list[str]
    cut: list[Path]

    @property
    def complete(self) -> bool:
        return not self.missing and not self.cut


def offline() -> bool:
    """Whether downloads are off (`HF_HUB_OFFLINE=1`)."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def repo_folder(model_id: str) -> Path:
    """The repo's folder in the cache; a ValueError for what is no Hub repo id."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name
    from huggingface_hub.utils._validators import validate_repo_id

    validate_repo_id(model_id)
    return Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=model_id, repo_type="model")


def snapshot(model_id: str, revision: str | None) -> Path | None:
    """The snapshot folder `revision` names in the cache (a branch or tag, through the
    cache's `refs/`, or a commit), if the cache has one; None is `main`."""
    repo = repo_folder(model_id)
    name = revision or "main"
    try:
        ref = repo / "refs" / name
        commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else name
        folder = repo / "snapshots" / commit
        return folder if commit and folder.is_dir() else None
    except (OSError, ValueError):
        return None


def cached(model_id: str, revision: str | None, root_file: str = "config.json") -> Path | None:
    """The snapshot of `model_id` at `revision`, if the cache holds it complete (see the
    module's docstring): marked, or written before markers and found complete (then
    marked)."""
    folder = snapshot(model_id, revision)
    if folder is None:
        return None
    if marked(folder) and (folder / root_file).is_file():
        return folder
    if started(model_id, revision).exists() or not check(folder, root_file).complete:
        return None
    mark(folder)
    return folder


def begin(model_id: str, revision: str | None, root_file: str = "config.json") -> None:
    """A download of `model_id` at `revision` is about to start: noted, so a snapshot it
    leaves partial is never judged from its files; cut-short weights files of the
    snapshot go (its link, and the blob behind it). What the snapshot lacks is logged."""
    note = started(model_id, revision)
    try:
        note.parent.mkdir(parents=True, exist_ok=True)
        note.touch()
    except OSError as exc:
        log.warning("could not note a download in the Hub cache: %s", exc)
    folder = snapshot(model_id, revision)
    if folder is None:
        return
    found = check(folder, root_file)
    if found.complete:
        return
    lacks = [*found.missing, *(str(path.relative_to(folder)) for path in found.cut)]
    log.warning(
        "the Hub cache holds part of %s (%s missing or cut short): downloading the rest",
        model_id,
        ", ".join(lacks),
    )
    for path in found.cut:
        discard(path)


def loaded(model_id: str, revision: str | None, root_file: str = "config.json") -> None:
    """A load from the Hub finished: its snapshot is marked complete, if its weights are
    all there (a load that read other weights than `check` knows is not marked, and its
    model keeps loading from the Hub)."""
    folder = snapshot(model_id, revision)
    if folder is None or marked(folder):
        return
    if check(folder, root_file).complete:
        mark(folder)
    else:
        log.info("%s loaded, but not from weights the Hub cache can check", model_id)


def fetch(model_id: str, revision: str | None = None, root_file: str = "config.json") -> Path:
    """Download `model_id` at `revision` (None: `main`) into the Hub cache and mark it
    complete; the snapshot's folder. `root_file`: `config.json`, or `model_index.json`
    for a diffusers pipeline (the engine's `ROOT_FILE`).

    A snapshot already complete is not downloaded again; a partial one gets what it
    lacks. Of the weights, each folder gets the format a load reads (safetensors, else
    torch's `.bin`), under the names transformers and diffusers look for, and no other
    (no Flax, TF, ONNX, GGUF, fp16 variants, single-file checkpoints); every other file
    of the repo comes too. Raises when the Hub refuses (a gated model without
    `HF_TOKEN`, an unknown repo or revision) or the snapshot is still not complete, and
    then marks nothing."""
    found = cached(model_id, revision, root_file)
    if found is not None:
        return found
    begin(model_id, revision, root_file)
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download
    from huggingface_hub.errors import EntryNotFoundError
    from huggingface_hub.hf_api import RepoFile

    files = HfApi().list_repo_tree(model_id, recursive=True, revision=revision)
    names = wanted([f.path for f in files if isinstance(f, RepoFile)], root_file)
    allow = [glob.escape(name) for name in names]
    folder = Path(snapshot_download(model_id, revision=revision, allow_patterns=allow))
    # Shards an index names otherwise than `model-00001-of-00002.safetensors`, and the like.
    for name in check(folder, root_file).missing:
        if not name.endswith("/"):
            with contextlib.suppress(EntryNotFoundError):  # then the check below says so
                hf_hub_download(model_id, name, revision=folder.name)
    result = check(folder, root_file)
    if not result.complete:
        lacks = [*result.missing, *(str(path.relative_to(folder)) for path in result.cut)]
        raise OSError(f"{model_id}: the download is not complete ({', '.join(lacks)})")
    mark(folder)
    return folder


def wanted(names: list[str], root_file: str) -> list[str]:
    """The files of a repo a load reads: every file but weights, and of the weights, in
    each folder, the single file or shards of the first format a load picks."""
    kept: list[str] = []
    weights: dict[str, list[str]] = {}
    for name in names:
        folder, _, file = name.rpartition("/")
        if os.path.splitext(file)[1] in WEIGHT_SUFFIXES:
            weights.setdefault(folder, []).append(file)
        else:
            kept.append(name)
    for folder, files in weights.items():
        if not folder and root_file == PIPELINE_ROOT:
            continue  # a pipeline's weights are in its models' folders
        for suffix in (".safetensors", ".bin"):
            pattern = SHARDS + re.escape(suffix)
            picked = [file for file in files if re.fullmatch(pattern, file)]
            if picked:
                kept.extend(f"{folder}/{file}" if folder else file for file in picked)
                break
    return kept


def check(folder: Path, root_file: str) -> Check:
    """What the snapshot in `folder` lacks for a load (see the module's docstring)."""
    if not (folder / root_file).is_file():
        return Check([root_file], [])
    missing: list[str] = []
    cut: list[Path] = []
    for part in model_folders(folder, root_file, missing):
        names = weight_names(folder / part)
        if names is None:
            missing.append(f"{part}/{WEIGHTS[0]}" if part else WEIGHTS[0])
            continue
        for name in names:
            path = folder / part / name
            if not path.is_file():
                missing.append(f"{part}/{name}" if part else name)
            elif not whole(path):
                cut.append(path)
    return Check(missing, cut)


def model_folders(folder: Path, root_file: str, missing: list[str]) -> list[str]:
    """The folders of a snapshot that hold weights: the snapshot's own, or for a
    pipeline, each of its parts (as `model_index.json` lists them) that is a model (it has
    a `config.json`, or weights). A part that is not there is added to `missing`."""
    if root_file != PIPELINE_ROOT:
        return [""]
    try:
        index = json.loads((folder / root_file).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        missing.append(root_file)
        return []
    parts: list[str] = []
    for name, value in index.items() if isinstance(index, dict) else ():
        if name.startswith("_") or not isinstance(value, list) or not value or not value[0]:
            continue  # a setting, or a part the pipeline goes without
        part = folder / name
        if not part.is_dir():
            missing.append(f"{name}/")
        elif (part / "config.json").is_file() or weight_names(part) is not None:
            parts.append(name)
    return parts


def weight_names(folder: Path) -> list[str] | None:
    """The weights files a load reads in `folder`: the single file, or the shards its
    index names; None when there is neither."""
    for name in WEIGHTS:
        single = folder / name
        if single.is_file() or single.is_symlink():
            return [name]
        index = folder / f"{name}.index.json"
        if index.is_file():
            try:
                shards = json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()
                return sorted({str(shard) for shard in shards})
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                return [index.name, name]  # an unreadable index: the snapshot is not complete
    return None


def whole(path: Path) -> bool:
    """Whether a weights file is all there (see the module's docstring)."""
    try:
        size = path.stat().st_size
        if not size:
            return False
        with path.open("rb") as file:
            if path.name.endswith(".safetensors"):
                return safetensors_length(file) == size
            if path.name.endswith(".json"):
                json.loads(file.read())
                return True
            if file.read(4) != b"PK\x03\x04":
                return True  # a torch file of the old format: nothing tells its length
            file.seek(0)
            with zipfile.ZipFile(file):  # reads the directory at its end
                return True
    except (OSError, ValueError, zipfile.BadZipFile):
        return False


def safetensors_length(file: BinaryIO) -> int:
    """How long a safetensors file says it is: its header, then the tensors' data up to
    the end of the last one; -1 when the header itself is not readable."""
    head = file.read(8)
    if len(head) < 8:
        return -1
    length = int.from_bytes(head, "little")
    if length > MAX_HEADER:
        return -1
    try:
        header = json.loads(file.read(length))
        ends = [
            int(tensor["data_offsets"][1])
            for name, tensor in header.items()
            if name != "__metadata__"
        ]
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        return -1
    return 8 + length + max(ends, default=0)


def started(model_id: str, revision: str | None) -> Path:
    """The note that a download of `model_id` at `revision` began here."""
    return repo_folder(model_id) / MARKERS / f"started-{quote(revision or 'main', safe='')}"


def marker(folder: Path) -> Path:
    """Where the marker of the snapshot in `folder` is: beside `snapshots/`, by commit."""
    return folder.parent.parent / MARKERS / f"{folder.name}.json"


def marked(folder: Path) -> bool:
    """Whether the snapshot has a marker that still matches its files; one that does not
    is dropped."""
    path = marker(folder)
    try:
        sizes = json.loads(path.read_text(encoding="utf-8"))["files"]
        matches = bool(sizes) and all(
            (folder / name).stat().st_size == size for name, size in sizes.items()
        )
    except FileNotFoundError:
        if not path.exists():
            return False
        matches = False  # the marker is there, one of the files it lists is not
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        matches = False
    if not matches:
        log.warning("the Hub cache's marker %s does not match its snapshot: checking it", path)
        forget(path)
    return matches


def mark(folder: Path) -> None:
    """Write the snapshot's marker: its files and their sizes. A cache that cannot be
    written (a read-only Volume) only logs it: the next start checks the files again."""
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    sizes = {path.relative_to(folder).as_posix(): path.stat().st_size for path in files}
    path = marker(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(json.dumps({"files": sizes}, indent=1), encoding="utf-8")
        os.replace(partial, path)  # whole or not at all, even when two containers race
    except OSError as exc:
        log.warning("could not mark %s complete in the Hub cache: %s", folder, exc)


def forget(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not remove %s from the Hub cache: %s", path, exc)


def discard(path: Path) -> None:
    """A file of a snapshot goes: its link, and the blob the link points to."""
    if path.is_symlink():
        forget(path.parent / os.readlink(path))
    forget(path)
