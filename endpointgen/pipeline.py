"""The one path every command takes: YAML -> spec -> checks -> plan -> source text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from endpointgen import checks, loader
from endpointgen.errors import Problem, SpecError, UsageError
from endpointgen.loader import Document
from endpointgen.plan import make_plan, name_problems
from endpointgen.render import render
from endpointgen.spec import Spec, parse

DEFAULT_OUT = "build"


@dataclass(frozen=True)
class Built:
    spec: Spec
    path: Path  # where the module goes
    source: str


def _environments(doc: Document) -> list[str]:
    envs = doc.data.get("environments")
    if not isinstance(envs, dict):
        return []
    return [name for name, overlay in envs.items() if isinstance(overlay, dict)]


def _validated(doc: Document) -> Spec:
    spec = parse(doc)
    problems = checks.check(spec, doc) + name_problems(spec, doc.file)
    if problems:
        raise SpecError(problems)
    return spec


def load_spec(path: str | Path, env: str | None = None) -> tuple[Document, Spec]:
    """A valid spec, with `environments.<env>` merged over it when `env` is given."""
    doc = loader.load(path)
    if env is not None:
        known = _environments(doc)
        if env not in known:
            listed = ", ".join(known) if known else "none are defined"
            raise UsageError(f"{doc.file}: no environment named '{env}' (environments: {listed})")
        _validated(doc)
        doc = doc.with_overlay(env)
    return doc, _validated(doc)


def validate(path: str | Path) -> list[Problem]:
    """Every problem in the spec and in each of its environment overlays."""
    try:
        doc = loader.load(path)
    except SpecError as exc:
        return exc.problems
    problems: list[Problem] = []
    for candidate in [doc] + [doc.with_overlay(e) for e in _environments(doc)]:
        try:
            _validated(candidate)
        except SpecError as exc:
            problems.extend(exc.problems)
    return SpecError(problems).problems if problems else []


def build(path: str | Path, out_dir: str | Path = DEFAULT_OUT, env: str | None = None) -> Built:
    doc, spec = load_spec(path, env)
    plan = make_plan(spec, doc.file, out_dir)
    return Built(spec, Path(out_dir) / f"{spec.module_name}.py", render(plan))
