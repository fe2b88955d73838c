"""`endpointgen plan`: each spec against the same file at a git ref, with its cost estimate."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from endpointgen.compiler import loader, pipeline
from endpointgen.compiler.plan import make_plan
from endpointgen.errors import SpecError, UsageError
from endpointgen.gitops import prices
from endpointgen.gitops.diff import Change, Side, compare
from endpointgen.gitops.gitref import Repo, declared_name, repo_of

Status = Literal["added", "removed", "changed", "unchanged"]
NOTHING = "nothing"  # the base when there is no earlier version to compare with


@dataclass(frozen=True)
class SpecPlan:
    """What deploying one spec would change, against `base`."""

    file: str
    base: str
    app: str
    status: Status
    changes: list[Change]
    warnings: list[str]
    cost_before: prices.Cost | None
    cost_after: prices.Cost | None
    notes: list[str] = field(default_factory=list)
    app_before: str | None = None  # the app's name at `base`, when it built there

    @property
    def renamed(self) -> bool:
        before = self.app_before
        return before is not None and self.status != "removed" and before != self.app


def plan_spec(
    path: Path, base: str = "HEAD", env: str | None = None, known: Sequence[str] = ()
) -> SpecPlan:
    """One spec file (present now, or deleted since `base`) against its text at `base`."""
    repo = _repo(path)
    commit = repo.commit(base)
    rel = repo.relative(path)
    old_text = repo.show(commit, rel)
    if old_text is None and not path.is_file():
        raise UsageError(f"{path}: no such file, here or at {base}")
    if path.is_file():
        pipeline.environment_used([path], env, known)
    plan = _plan(path, str(path), base, old_text, env)
    return _with_code(plan, repo, commit, path, env) if path.is_file() else plan


def plan_folder(
    folder: Path, base: str = "HEAD", env: str | None = None, known: Sequence[str] = ()
) -> list[SpecPlan]:
    """Every spec under `folder` that changes against `base`: its text, or the code and
    files it ships (handlers, loaders, folders), or the module endpointgen builds from it.
    Added and deleted specs too; a spec moved (`git mv`) under the same app name is one
    change, not an added app and a removed one."""
    repo = _repo(folder)
    commit = repo.commit(base)
    prefix = repo.relative(folder)
    now, then = repo.specs_now(prefix), repo.specs_at(commit, prefix)
    pipeline.environment_used([repo.root / rel for rel in sorted(now)], env, known)

    def shown(rel: str) -> str:
        return str(folder / PurePosixPath(rel).relative_to(prefix) if prefix != "." else rel)

    moved = _moves(repo, commit, sorted(now - then), sorted(then - now))
    plans = []
    for rel in sorted(now | then):
        if rel in moved.values():
            continue  # planned with the file it moved to
        path = repo.root / rel
        old_rel = moved.get(rel, rel)
        old_text = repo.show(commit, old_rel) if old_rel in then else None
        if rel in now and old_text == path.read_text(encoding="utf-8"):
            plan = _plan(path, shown(rel), base, old_text, env, quiet=True)
            plan = _with_code(plan, repo, commit, path, env)
            if plan.status == "unchanged" and old_rel == rel:
                continue
        else:
            plan = _plan(path, shown(rel), base, old_text, env)
            if rel in now:
                plan = _with_code(plan, repo, commit, path, env)
        if old_rel != rel:
            plan.notes.insert(0, f"moved from {shown(old_rel)} (same app)")
        plans.append(plan)
    return plans


def plan_environments(path: Path, left: str, right: str) -> SpecPlan:
    """One spec under two environments: what `right` changes against `left` (`base` for
    the spec without an overlay)."""
    sides = []
    for env in (left, right):
        if env != "base":
            pipeline.environment_used([path], env)
        sides.append(_current(path, None if env == "base" else env))
    old, new = sides
    diff = compare(old, new)
    return SpecPlan(
        file=str(path),
        base=f"--env {left}" if left != "base" else "its base",
        app=new.spec.name,
        status="changed" if diff.changes or diff.warnings else "unchanged",
        changes=diff.changes,
        warnings=diff.warnings,
        cost_before=old.cost,
        cost_after=new.cost,
        notes=[f"{right} against {left}"],
    )


def plan_paths(
    paths: list[Path], base: str, env: str | None = None, known: Sequence[str] = ()
) -> list[SpecPlan]:
    """The plans of specs and folders of specs that change against `base` (added or
    changed, shipped files included; removed ones are not deployable)."""
    plans: list[SpecPlan] = []
    for path in paths:
        found = (
            plan_folder(path, base, env, known)
            if path.is_dir()
            else [plan_spec(path, base, env, known)]
        )
        plans += [p for p in found if p.status in ("added", "changed")]
    return plans


def _moves(repo: Repo, commit: str, added: list[str], removed: list[str]) -> dict[str, str]:
    """New path -> old path, for added and removed specs that name the same app."""
    old_names: dict[str, str] = {}
    for rel in removed:
        name = declared_name(repo.show(commit, rel) or "")
        if name:
            old_names.setdefault(name, rel)
    out = {}
    for rel in added:
        name = declared_name((repo.root / rel).read_text(encoding="utf-8", errors="replace"))
        if name in old_names:
            out[rel] = old_names.pop(name)
    return out


def _with_code(plan: SpecPlan, repo: Repo, commit: str, path: Path, env: str | None) -> SpecPlan:
    """The plan, with the files the spec ships that differ from `commit` (handlers,
    loaders, served folders, local model folders): code that would deploy unreviewed."""
    try:
        side = _current(path, env)
    except (SpecError, UsageError):
        return plan
    shipped = side.plan
    locals_ = [path.parent / f.local for f in [*shipped.shipped_files, *shipped.shipped_dirs]]
    changed = repo.changed_since(commit, [repo.relative(p) for p in locals_])
    found = [Change("code", f"file {rel}", "changed") for rel in changed]
    module = _module_change(repo, commit, path, f"{side.spec.module_name}.py")
    if module is not None:
        found.append(module)
    if not found:
        return plan
    changes = [*plan.changes, *found]
    status: Status = "changed" if plan.status == "unchanged" else plan.status
    return replace(plan, changes=changes, status=status)


BUILT = re.compile(r"# Built by endpointgen (\S+) from (\S+)\. ")


def _module_change(repo: Repo, commit: str, path: Path, module: str) -> Change | None:
    """A newer endpointgen that builds this spec into a different module than the one
    committed at `commit` (found by its `# Built by endpointgen ... from <spec>` line)."""
    from endpointgen import __version__

    spec_rel = repo.relative(path)
    for rel in repo.files_at(commit):
        if PurePosixPath(rel).name != module:
            continue
        text = repo.show(commit, rel) or ""
        header = BUILT.match(text)
        if header is None:
            continue
        folder = PurePosixPath(rel).parent
        source = os.path.normpath((folder / header.group(2)).as_posix())
        if source != spec_rel or header.group(1) == __version__:
            continue
        try:  # as `endpointgen build` made it: the base spec, into that folder
            spec = _current(path, None).spec
        except (SpecError, UsageError):
            return None
        from endpointgen.compiler.render import render

        now = render(make_plan(spec, path, repo.root / folder))
        if now != text:
            before, after = f"endpointgen {header.group(1)}", f"endpointgen {__version__}"
            return Change("code", f"built module {rel}", "changed", before, after)
    return None


def plan_for_deploy(path: Path, env: str | None = None) -> SpecPlan:
    """Against HEAD when git tracks the spec there, else against nothing (a new app)."""
    repo = repo_of(path)
    if repo is not None:
        try:
            commit = repo.commit("HEAD")
        except UsageError:  # a repository without commits yet
            commit = None
        if commit is not None:
            old_text = repo.show(commit, repo.relative(path))
            if old_text is not None:
                return _plan(path, str(path), "HEAD", old_text, env)
    return _plan(path, str(path), NOTHING, None, env)


def _repo(path: Path) -> Repo:
    repo = repo_of(path)
    if repo is None:
        raise UsageError(
            f"{path} is not in a git repository; `plan` compares a spec with its text at a git "
            "ref (--base)"
        )
    return repo


def _plan(
    path: Path,
    shown: str,
    base: str,
    old_text: str | None,
    env: str | None,
    quiet: bool = False,
) -> SpecPlan:
    notes: list[str] = []
    new = _current(path, env) if path.is_file() else None
    old = None
    if old_text is not None:
        try:
            old = _side(old_text, path, f"{base}:{shown}", env)
        except (SpecError, UsageError) as exc:
            why = f"{len(exc.problems)} problem(s)" if isinstance(exc, SpecError) else str(exc)
            notes.append(f"at {base} the spec did not build ({why}); compared as a new app")
    diff = compare(old, new)
    if old and new and not quiet and not (diff.changes or diff.warnings):
        from endpointgen.compiler.render import render

        if render(old.plan) != render(new.plan):  # what the plan does not list: a body, ...
            diff.changes.append(Change("code", "built module", "changed"))
    if new is not None and not quiet:
        notes += advice(new)
    either = new or old
    app = either.spec.name if either else Path(shown).stem
    status: Status
    if new is None:
        status = "removed"
        if old is None:
            diff.changes.append(Change("app", f"spec {shown}", "removed"))
        where = f" --env {env}" if env else ""
        diff.warnings.append(
            f"WARNING: app removed: '{app}' keeps running, and billing, until it is stopped: "
            f"`modal app stop {app}{where}` (or `endpointgen deploy --prune`)"
        )
    elif old is None:
        status = "added"
    else:
        status = "changed" if diff.changes or diff.warnings else "unchanged"
    return SpecPlan(
        file=shown,
        base=base,
        app=app,
        status=status,
        changes=diff.changes,
        warnings=diff.warnings,
        cost_before=old.cost if old else None,
        cost_after=new.cost if new else None,
        notes=notes,
        app_before=old.spec.name if old else None,
    )


WEB_REQUEST_LIMIT = 150  # seconds: Modal's limit on one web request before it redirects
MODAL_SCALEDOWN_WINDOW = 60  # seconds an idle container stays up when the spec sets none


def advice(side: Side) -> list[str]:
    """What the deployed app will do that a reviewer may not expect from the spec."""
    spec, plan = side.spec, side.plan
    out = []
    configs = [plan.model] if plan.model else [m.config for m in plan.models]
    for config in configs:
        if config.local_dir is None and config.revision is None:
            out.append(
                f"model {config.id} has no revision: each cold start asks the Hub for "
                "the latest `main`; pin `revision` to deploy what was tested"
            )
    limits = {r.rate_limit.scope: r.rate_limit for r in plan.routes if r.rate_limit}
    for rule in limits.values():
        if rule.storage == "memory":
            most = spec.scaling.max_containers
            total = f"{rule.limit * most}" if most else "no bound"
            unit = {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}[rule.seconds]
            out.append(
                f"rate limit {rule.limit}/{unit} is counted in memory, per container: "
                f"across containers that is {total} per {unit} (max_containers "
                f"{most or 'unset'}); use `storage: redis` or `modal-dict` for one count"
            )
    if (plan.timeout or 0) > WEB_REQUEST_LIMIT:
        out.append(
            f"resources.timeout is {plan.timeout} s, but Modal answers a web request that "
            f"runs past {WEB_REQUEST_LIMIT} s with a redirect the client must follow; keep "
            "routes below that, or stream"
        )
    if spec.model is not None and spec.serving_shape == "single" and spec.gpu:
        window = spec.scaling.scaledown_window or MODAL_SCALEDOWN_WINDOW
        memory = spec.resources.memory
        gpu = prices.estimate(spec.gpu, spec.resources.cpu, memory, None, None).per_container
        web = prices.estimate(None, None, None, None, None).per_container
        daily = (gpu[0] * 24, gpu[1] * 24)
        out.append(
            "every request, refused ones (401, 429) and /health probes included, lands on "
            f"the GPU containers and keeps them warm: one such request every {window} s "
            f"(scaledown_window) keeps a GPU container up, {prices.money(gpu)}/h "
            f"({prices.money(daily)}/day) with no model call; `shape: split` puts a CPU web "
            f"tier in front ({prices.money(web)}/h), so only model calls reach a GPU"
        )
    return out


# Each spec is compiled once per version: `plan` reads the same file's current version
# for its diff, its shipped files and its built module.
_COMPILED: dict[tuple[str, str | None, int, int], Side] = {}


def _current(path: Path, env: str | None) -> Side:
    stat = path.stat()
    key = (str(path.resolve()), env, stat.st_mtime_ns, stat.st_size)
    if key not in _COMPILED:
        _, spec = pipeline.load_spec(path, env, base_if_missing=True)
        _COMPILED[key] = Side(spec, make_plan(spec, path, path.parent))
    return _COMPILED[key]


def _side(text: str, path: Path, label: str, env: str | None) -> Side:
    """An earlier version, validated as `pipeline.load_spec` validates the file.

    It is read as if it stood where the spec stands now, so the files it names
    (handlers, folders) are looked up next to today's spec.
    """
    _, spec = pipeline.resolve(loader.loads(text, str(path)), env, base_if_missing=True)
    return Side(spec, make_plan(spec, path, path.parent))


GATES = ("warning", "public-route", "removed-app", "renamed-app", "cost-increase>N%")


def check_gates(named: list[str]) -> None:
    """A UsageError for the first name that is not one of `GATES`."""
    for gate in named:
        if gate not in GATES[:4] and not re.fullmatch(r"cost-increase>\d+(\.\d+)?%", gate):
            raise UsageError(f"unknown gate '{gate}'")


def gate_failures(plans: list[SpecPlan], gates: str | Sequence[str]) -> list[str]:
    """Why these plans fail `--fail-on` (`GATES`, a list or comma-separated); empty when
    they pass. Each reason starts with its gate: `removed-app: specs/x.yaml: ...`."""
    named = [g.strip() for g in (gates.split(",") if isinstance(gates, str) else gates)]
    named = [g for g in named if g]
    try:
        check_gates(named)
    except UsageError as exc:
        raise UsageError(f"--fail-on: {exc} (gates: {', '.join(GATES)})") from None
    out = []
    for gate in named:
        percent = re.fullmatch(r"cost-increase>(\d+(?:\.\d+)?)%", gate)
        for plan in plans:
            warnings = " ".join(plan.warnings)
            met = None
            if gate == "warning" and plan.warnings:
                met = f"{len(plan.warnings)} warning(s)"
            elif gate == "public-route" and ("public" in warnings or "auth turned off" in warnings):
                met = "a route becomes public"
            elif gate == "removed-app" and plan.status == "removed":
                met = f"app '{plan.app}' is removed"
            elif gate == "renamed-app" and plan.renamed:
                met = f"app '{plan.app_before}' is renamed to '{plan.app}'"
            elif percent:
                grew = cost_growth(plan)
                if grew is not None and grew > float(percent.group(1)):
                    met = f"estimated cost up {grew:.0f}%"
            if met:
                out.append(f"{plan.file}: {met} (gate {gate})")
    return out


def cost_growth(plan: SpecPlan) -> float | None:
    """The larger growth, in percent, of the always-on floor and the per-container price
    (upper ends); a new app counts when it keeps containers always on."""
    after = plan.cost_after
    if after is None:
        return None
    before = plan.cost_before
    if before is None:
        return math.inf if after.always_on[1] > 0 else None
    grown = []
    for old, new in (
        (before.always_on[1], after.always_on[1]),
        (before.per_container[1], after.per_container[1]),
    ):
        if old > 0:
            grown.append((new - old) / old * 100)
        elif new > 0:
            grown.append(math.inf)
    return max(grown, default=None)
