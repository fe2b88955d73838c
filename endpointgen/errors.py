"""The user-facing errors. The CLI catches `EndpointgenError`, prints it, exits 1."""

from __future__ import annotations

from dataclasses import dataclass

Loc = tuple[str | int, ...]


def format_loc(loc: Loc) -> str:
    """`("routes", 1, "method")` -> `routes[1].method`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a spec, pointing at the YAML that holds it."""

    file: str
    line: int
    col: int
    loc: Loc
    message: str

    def __str__(self) -> str:
        where = format_loc(self.loc)
        prefix = f"{self.file}:{self.line}:{self.col}: "
        return prefix + (f"{where}: {self.message}" if where else self.message)


class EndpointgenError(Exception):
    """Base of every error that is the user's to fix; never shown as a traceback."""


class SpecError(EndpointgenError):
    """A spec that does not validate; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(set(problems), key=lambda p: (p.file, p.line, p.col, p.message))
        super().__init__("\n".join(str(p) for p in self.problems))


class UsageError(EndpointgenError):
    """A command used wrongly (an unknown --env, a missing file...)."""


class DeployError(EndpointgenError):
    """Modal refused or failed a deploy."""
