"""The one path every command takes: YAML -> spec -> checks -> plan -> source text."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from endpointgen.compiler import checks, loader
from endpointgen.compiler.checks import local_model_dir
from endpointgen.compiler.loader import Document
from endpointgen.compiler.plan import make_plan, name_problems
from endpointgen.compiler.render import render
from endpointgen.errors import Loc, Problem, SpecError, UsageError
from endpointgen.spec import GenerateRoute, Model, Spec, UploadRoute, parse
from endpointgen.spec.errors import refuses_a_key
from endpointgen.spec.models import NEW_PIXELS, OLD_PIXELS

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
    try:
        spec = parse(doc)
    except SpecError as exc:
        raise SpecError(exc.problems + _rules_despite(doc, exc.problems)) from None
    problems = checks.check(spec, doc) + name_problems(spec, doc)
    if problems:
        raise SpecError(problems)
    return spec


def _rules_despite(doc: Document, problems: list[Problem]) -> list[Problem]:
    """The rule checks too, so one run reports both kinds, when every schema problem is
    a refused key (unknown, or another action's): run on the spec with those keys taken
    out. A wrong value is not taken out: the rules would then complain of its absence,
    which would mislead."""
    data = copy.deepcopy(doc.data)
    for problem in problems:
        if not refuses_a_key(problem) or not _drop(data, problem.loc):
            return []
    try:
        lenient = replace(doc, data=data)
        spec = parse(lenient)
        found = checks.check(spec, lenient) + name_problems(spec, lenient)
    except SpecError:
        return []
    refused = [p.loc for p in problems]
    return [p for p in found if not any(p.loc[: len(loc)] == loc for loc in refused)]


def _drop(data: Any, loc: Loc) -> bool:
    """Take the mapping key at `loc` out of `data`; False when there is none to take."""
    *parents, last = loc or ("",)
    for part in parents:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    if isinstance(data, dict) and last in data:
        del data[last]
        return True
    return False


def load_spec(
    path: str | Path, env: str | None = None, base_if_missing: bool = False
) -> tuple[Document, Spec]:
    """A valid spec, with `environments.<env>` merged over it when `env` is given."""
    return resolve(loader.load(path), env, base_if_missing)


def resolve(
    doc: Document, env: str | None = None, base_if_missing: bool = False
) -> tuple[Document, Spec]:
    """A loaded document, validated and checked, with its environment merged in.

    Without that environment, a UsageError; or, with `base_if_missing` (commands over a
    folder of specs, where some define `prod` and some need no overlay), the base.
    """
    if env is not None:
        known = _environments(doc)
        if env not in known:
            if base_if_missing:
                return doc, _validated(doc)
            raise no_environment(doc.file, env, known)
        _validated(doc)
        doc = doc.with_overlay(env)
    return doc, _validated(doc)


def no_environment(file: str | Path, env: str, known: list[str]) -> UsageError:
    listed = ", ".join(known) if known else "none are defined"
    return UsageError(f"{file}: no environment named '{env}' (environments: {listed})")


def defines(path: str | Path, env: str) -> bool:
    """Whether the spec at `path` has an `environments.<env>` overlay (False if unreadable)."""
    try:
        return env in _environments(loader.load(path))
    except SpecError:
        return False


def environment_used(paths: list[Path], env: str | None, known: Sequence[str] = ()) -> None:
    """Commands over several specs: `--env` must name an environment one of them defines
    (a typo would otherwise deploy every base quietly), or one of `known` (the GitOps
    config's environments, where a spec without an overlay deploys its base)."""
    if env is None or env in known or any(defines(p, env) for p in paths):
        return
    if len(paths) == 1:
        try:
            known = _environments(loader.load(paths[0]))
        except SpecError:
            return  # the spec's own problems say more
        raise no_environment(paths[0], env, known)
    where = ", ".join(map(str, paths[:3])) + (", ..." if len(paths) > 3 else "")
    raise UsageError(f"no spec defines environment '{env}' ({where})")


def validate(path: str | Path) -> list[Problem]:
    """Every problem in the spec and in each of its environment overlays."""
    try:
        doc = loader.load(path)
    except SpecError as exc:
        return exc.problems
    base = _problems(doc)
    problems = list(base)
    for env in _environments(doc):
        for problem in _problems(doc.with_overlay(env)):
            if problem not in base and "environments" not in problem.loc:
                # The base is fine here; only this environment's overlay breaks it.
                message = f"{problem.message} (with --env {env})"
                problem = Problem(problem.file, problem.line, problem.col, problem.loc, message)
            problems.append(problem)
    return SpecError(problems).problems if problems else []


WEB_REQUEST_LIMIT = 150  # seconds: Modal's limit on one web request before it redirects


def warnings(path: str | Path) -> list[Problem]:
    """What a valid spec will do on Modal that its author may not expect: not errors."""
    doc, spec = load_spec(path)
    out = []
    if (spec.resources.timeout or 0) > WEB_REQUEST_LIMIT:
        out.append(
            doc.problem(
                ("resources", "timeout"),
                f"warning: Modal answers a web request that runs past {WEB_REQUEST_LIMIT} s "
                "with a redirect the client must follow; keep routes below that, or stream",
            )
        )
    named: list[tuple[Loc, Model]] = [(("model",), spec.model)] if spec.model else []
    named += [(("models", name), m) for name, m in spec.models.items()]
    for loc, model in named:
        if model.revision is None:
            if local_model_dir(model.id, Path(doc.file).parent) is None:
                out.append(
                    doc.problem(
                        (*loc, "id"),
                        "warning: no `revision`: each cold start asks the Hub for the latest "
                        "`main`; pin a revision to deploy what was tested",
                    )
                )
    for i, route in enumerate(spec.routes):
        if isinstance(route, GenerateRoute | UploadRoute) and OLD_PIXELS in route.model_fields_set:
            new = NEW_PIXELS[route.action]
            out.append(
                doc.problem(
                    ("routes", i, OLD_PIXELS),
                    f"warning: `{OLD_PIXELS}` is the old name of `{new}` on {route.action} "
                    "routes; rename it",
                    key=True,
                )
            )
    return out


def _problems(doc: Document) -> list[Problem]:
    try:
        _validated(doc)
    except SpecError as exc:
        return exc.problems
    return []


def build(
    path: str | Path,
    out_dir: str | Path = DEFAULT_OUT,
    env: str | None = None,
    base_if_missing: bool = False,
    pin: Callable[[Spec, Path], dict[str, str]] | None = None,
    suffix: str = "",
) -> Built:
    """The built module of the spec at `path`. `pin` (`revisions.resolve`) gives the
    commits to load for Hub models without a `revision`; without it they stay unset.
    `suffix` is added to the app's name (a preview: its own app, Dicts and module)."""
    doc, spec = load_spec(path, env, base_if_missing)
    if suffix:
        spec = spec.model_copy(update={"name": spec.name + suffix})
    resolved = pin(spec, Path(doc.file).parent) if pin is not None else None
    plan = make_plan(spec, doc.file, out_dir, resolved)
    return Built(spec, Path(out_dir) / f"{spec.module_name}.py", render(plan))
