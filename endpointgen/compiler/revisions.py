"""Pin the Hub models a spec leaves unpinned: `endpointgen deploy` (and `build
--pin-revisions`) ask the Hub which commit `main` is, and the built module loads that
commit, so every container of one deploy runs the same weights, whatever is pushed to
the model's repo later.

Plain `build` never asks: its output must be the same on every run and on a machine
without the network, for `build --check` in CI. A Hub that cannot be reached leaves the
revision unset, as the spec has it, and says so.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from endpointgen.spec import Spec

HUB = "https://huggingface.co"
TIMEOUT = 5.0  # seconds for the Hub to answer, per model


def unpinned(spec: Spec, spec_dir: Path) -> list[str]:
    """The Hub ids of the spec's models without a `revision` (not local, not on a Volume)."""
    from endpointgen.compiler.checks import local_model_dir

    return sorted(
        {
            m.id
            for m in spec.all_models
            if m.revision is None and m.volume is None and local_model_dir(m.id, spec_dir) is None
        }
    )


def resolve(
    spec: Spec, spec_dir: Path, say: Callable[[str], None] = lambda line: None
) -> dict[str, str]:
    """{model id: the commit its `main` is now} for each unpinned Hub model the Hub
    answers for; each one it does not is left out, with a line to `say`."""
    found: dict[str, str] = {}
    for model_id in unpinned(spec, spec_dir):
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
            say(f"{model_id}: HF_HUB_OFFLINE is set, so its revision stays unpinned")
            continue
        try:
            found[model_id] = main_commit(model_id)
        except HubError as exc:
            say(f"{model_id}: {exc}; its revision stays unpinned")
    return found


class HubError(Exception):
    """The Hub could not say which commit a model's `main` is."""


def main_commit(model_id: str) -> str:
    """The commit of `main` of the Hub model `model_id` (HF_ENDPOINT, HF_TOKEN honoured)."""
    endpoint = os.environ.get("HF_ENDPOINT", HUB).rstrip("/")
    url = f"{endpoint}/api/models/{urllib.parse.quote(model_id)}/revision/main"
    request = urllib.request.Request(url, headers={"User-Agent": "endpointgen"})
    token = os.environ.get("HF_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:
            sha = json.loads(answer.read(1_000_000)).get("sha")
    except urllib.error.HTTPError as exc:
        raise HubError(f"the Hub answered {exc.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise HubError(f"the Hub could not be reached ({reason})") from None
    except ValueError:
        raise HubError("the Hub's answer was not JSON") from None
    if not isinstance(sha, str) or len(sha) != 40:
        raise HubError("the Hub named no commit")
    return sha
