"""Where a spec's Modal Volumes are, in a container and on this machine."""

from __future__ import annotations

import os
from pathlib import Path

VOLUMES = "/volumes/"  # where a spec's Modal Volumes are mounted in its containers


def on_this_machine(path: str) -> str:
    """A path on a mounted Volume, as this machine has it: `endpointgen serve --volume
    NAME=DIR` (ENDPOINTGEN_VOLUME_<NAME>) says where a Volume's files are here. Unchanged
    in a Modal container, or for a Volume nobody mapped."""
    if not path.startswith(VOLUMES):
        return path
    name, _, rest = path.removeprefix(VOLUMES).partition("/")
    folder = os.environ.get(f"ENDPOINTGEN_VOLUME_{name}")
    return path if folder is None else str(Path(folder, rest))
