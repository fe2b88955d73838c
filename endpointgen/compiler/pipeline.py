"""The one path every command takes: YAML -> spec -> checks -> plan -> source text."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from endpointgen.compiler import checks, loader
from endpointgen.compiler.checks import local_model_dir
from endpointgen.compiler.loader import Document
from endpointgen.compiler.plan import auth_settings, make_plan, name_problems
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


DID_YOU_MEAN = re.compile(r"did you mean '([^']+)'\?")


def _rules_despite(doc: Document, problems: list[Problem]) -> list[Problem]:
    """The rule checks too, so one run reports every problem: a GPU typo does not hide a
    route's or auth's. They run on the spec as its author most likely meant it: a refused
    key (unknown, or another action's) taken out; a typo with one likely meaning (`gpu:
    H10`, did you mean 'H100'?) read as that; another wrong value left out. What the rules
    then say about that part of the spec is not shown (they would speak of a value the
    author did not write): nothing under the problem's route or model, nor naming its key.
    When the spec cannot be read even so (a required key is wrong), schema problems only."""
    data = copy.deepcopy(doc.data)
    blocked: list[Loc] = []  # where rule problems would speak of what was taken or guessed
    named: list[str] = []  # keys whose values were taken out or guessed
    for problem in problems:
        loc = problem.loc
        blocked.append(loc[:2] if loc[:1] in (("routes",), ("models",)) else loc)
        if refuses_a_key(problem):
            if not _drop(data, loc):
                return []
            continue
        if not loc or not isinstance(loc[-1], str):
            return []
        named.append(loc[-1])
        meant = DID_YOU_MEAN.search(problem.message)
        if not (meant and _put(data, loc, meant.group(1))) and not _drop(data, loc):
            return []
    try:
        lenient = replace(doc, data=data)
        spec = parse(lenient)
        found = checks.check(spec, lenient) + name_problems(spec, lenient)
    except SpecError:
        return []

    def shown(problem: Problem) -> bool:
        if any(problem.loc[: len(loc)] == loc for loc in blocked):
            return False
        return not any(re.search(rf"\b{re.escape(key)}\b", problem.message) for key in named)

    return [p for p in found if shown(p)]


def _put(data: Any, loc: Loc, value: str) -> bool:
    """Set the mapping key at `loc` in `data` to `value`; False when there is no such key."""
    parent = _parent(data, loc)
    if isinstance(parent, dict) and loc[-1] in parent:
        parent[loc[-1]] = value
        return True
    return False


def _parent(data: Any, loc: Loc) -> Any:
    for part in loc[:-1]:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _drop(data: Any, loc: Loc) -> bool:
    """Take the mapping key at `loc` out of `data`; False when there is none to take."""
    parent = _parent(data, loc or ("",))
    if isinstance(parent, dict) and (loc or ("",))[-1] in parent:
        del parent[(loc or ("",))[-1]]
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


def validate(path: str | Path, warnings: list[Problem] | None = None) -> list[Problem]:
    """Every problem in the spec and in each of its environment overlays. For a spec
    without any, its warnings (as `warnings()` gives them) are added to `warnings` when
    it is given: the `validate` command prints both from one reading of the file."""
    try:
        doc = loader.load(path)
    except SpecError as exc:
        return exc.problems
    spec: Spec | None = None
    base: list[Problem] = []
    try:
        spec = _validated(doc)
        base = deploy_problems(spec, doc)
    except SpecError as exc:
        base = exc.problems
    problems = list(base)
    for env in _environments(doc):
        for problem in _problems(doc.with_overlay(env)):
            if problem not in base and "environments" not in problem.loc:
                # The base is fine here; only this environment's overlay breaks it.
                message = f"{problem.message} (with --env {env})"
                problem = Problem(problem.file, problem.line, problem.col, problem.loc, message)
            problems.append(problem)
    if problems:
        return SpecError(problems).problems
    if warnings is not None and spec is not None:
        warnings += _warnings(doc, spec)
    return []


WEB_REQUEST_LIMIT = 150  # seconds: Modal's limit on one web request before it redirects


def warnings(path: str | Path) -> list[Problem]:
    """What a valid spec will do on Modal that its author may not expect: not errors."""
    return _warnings(*load_spec(path))


def _warnings(doc: Document, spec: Spec) -> list[Problem]:
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
        if model.revision is None and model.volume is None:  # a Volume's weights: no Hub
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
        spec = _validated(doc)
    except SpecError as exc:
        return exc.problems
    return deploy_problems(spec, doc)


def deploy_problems(spec: Spec, doc: Document) -> list[Problem]:
    """What makes a valid spec's app fail once deployed (`validate` and `deploy` refuse
    it; `build` and `serve`, which run where the env vars are set by hand, do not): auth
    that reads its keys from an env var no Modal Secret gives it answers every caller 401.
    A spec's own `secrets:` may hold any key, so any of them counts."""
    auth = auth_settings(spec)
    if auth.mode in ("none", "proxy") or spec.auth.secret or spec.secrets or not auth.env:
        return []
    if auth.env in spec.env:
        return []
    what = {"api_key": "keys", "bearer": "tokens", "jwt": "key"}.get(auth.mode, "keys")
    return [
        doc.problem(
            ("auth", "mode"),
            f"{auth.mode} auth reads its {what} from ${auth.env}, and no Modal Secret gives "
            f"the app that variable, so every caller would get 401 once deployed: add "
            f"`secret: NAME` under `auth:` (a Modal Secret holding {auth.env}), or list "
            "one under `secrets:`",
        )
    ]


def build(
    path: str | Path,
    out_dir: str | Path = DEFAULT_OUT,
    env: str | None = None,
    base_if_missing: bool = False,
    pin: Callable[[Spec, Path], dict[str, str]] | None = None,
    suffix: str = "",
    deploying: bool = False,
) -> Built:
    """The built module of the spec at `path`. `pin` (`revisions.resolve`) gives the
    commits to load for Hub models without a `revision`; without it they stay unset.
    `suffix` is added to the app's name (a preview: its own app, Dicts and module).
    `deploying`: also refuse what would fail once deployed (`deploy_problems`)."""
    from endpointgen.compiler.render import render  # the templates: only a build needs them

    doc, spec = load_spec(path, env, base_if_missing)
    if deploying and (problems := deploy_problems(spec, doc)):
        raise SpecError(problems)
    if suffix:
        spec = spec.model_copy(update={"name": spec.name + suffix})
    resolved = pin(spec, Path(doc.file).parent) if pin is not None else None
    plan = make_plan(spec, doc.file, out_dir, resolved)
    return Built(spec, Path(out_dir) / f"{spec.module_name}.py", render(plan))
