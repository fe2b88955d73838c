"""`.endpointgen/gitops.yaml`: what the GitOps workflow's steps share, and you can edit.

`init --gitops` writes it; `plan` and `deploy` read it with `--config`:

- `environments`: the environments, in deploy order. Each is known to every command even
  when no spec has an overlay for it (a spec without one deploys its base there).
- `gates`: what fails a pull request's plan (`plan --fail-on`, unless that is given).
- `record`: the git tag prefix that records, per environment, the commit last deployed
  there in full (`endpointgen/deployed/<env>`): the next deploy compares with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from endpointgen.errors import UsageError

FILE = ".endpointgen/gitops.yaml"
DEFAULT_GATES = ("removed-app", "renamed-app", "public-route", "cost-increase>50%")
DEFAULT_RECORD = "endpointgen/deployed"
KEYS = ("environments", "gates", "record")


@dataclass(frozen=True)
class GitOpsConfig:
    environments: tuple[str, ...] = ()
    gates: tuple[str, ...] = DEFAULT_GATES
    record: str = DEFAULT_RECORD
    path: Path | None = field(default=None, compare=False)

    def record_tag(self, env: str) -> str:
        """The tag that holds the commit last deployed in full to `env`."""
        return f"{self.record}/{env}"


def render(environments: tuple[str, ...]) -> str:
    """The file `init --gitops` writes."""
    gates = "\n".join(f"  - {gate}" for gate in DEFAULT_GATES)
    return (
        "# endpointgen's GitOps settings, read by .github/workflows/endpointgen.yml\n"
        "# (`endpointgen plan --config` and `endpointgen deploy --config`). Edit freely.\n"
        "\n"
        "# The environments, in deploy order. Each deploys into the Modal environment of its\n"
        "# name; a spec without an overlay for one deploys its base there.\n"
        f"environments: [{', '.join(environments)}]\n"
        "\n"
        "# A pull request's plan fails its check, and its comment says which gate, when it\n"
        "# meets one of these: warning, public-route, removed-app, renamed-app,\n"
        "# cost-increase>N% (the always-on floor or the per-container price up more than N%).\n"
        f"gates:\n{gates}\n"
        "\n"
        "# Each environment's last full deploy is this tag + /<environment>; the next deploy\n"
        "# deploys every spec that differs from it, so a failed run is retried.\n"
        f"record: {DEFAULT_RECORD}\n"
    )


def load(path: Path) -> GitOpsConfig:
    """The config at `path`; a UsageError naming the file and key for anything wrong."""
    import yaml

    from endpointgen.gitops.gitplan import GATES, check_gates

    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise UsageError(f"{where}: not valid YAML") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of {', '.join(KEYS)}")
    unknown = sorted(set(map(str, data)) - set(KEYS))
    if unknown:
        raise UsageError(f"{path}: unknown key '{unknown[0]}' (keys: {', '.join(KEYS)})")
    environments = _names(path, "environments", data.get("environments", []))
    gates = _names(path, "gates", data.get("gates", list(DEFAULT_GATES)))
    try:
        check_gates(list(gates))
    except UsageError as exc:
        raise UsageError(f"{path}: gates: {exc} (gates: {', '.join(GATES)})") from None
    record = data.get("record", DEFAULT_RECORD)
    if not isinstance(record, str) or not record.strip("/"):
        raise UsageError(f"{path}: record: a git tag prefix, such as {DEFAULT_RECORD}")
    return GitOpsConfig(environments, gates, record.strip("/"), path)


def _names(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise UsageError(f"{path}: {key}: a list of names")
    return tuple(value)
