"""`endpointgen plan`: each spec against the same file at a git ref, with its cost estimate."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

from endpointgen.compiler import loader, pipeline
from endpointgen.compiler.plan import make_plan
from endpointgen.errors import SpecError, UsageError
from endpointgen.gitops import prices
from endpointgen.gitops.diff import Change, Side, compare
from endpointgen.gitops.gitref import Repo, repo_of

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


def plan_spec(path: Path, base: str = "HEAD", env: str | None = None) -> SpecPlan:
    """One spec file (present now, or deleted since `base`) against its text at `base`."""
    repo = _repo(path)
    commit = repo.commit(base)
    old_text = repo.show(commit, repo.relative(path))
    if old_text is None and not path.is_file():
        raise UsageError(f"{path}: no such file, here or at {base}")
    return _plan(path, str(path), base, old_text, env)


def plan_folder(folder: Path, base: str = "HEAD", env: str | None = None) -> list[SpecPlan]:
    """Every spec under `folder` whose text differs from `base` (added and deleted ones too)."""
    repo = _repo(folder)
    commit = repo.commit(base)
    prefix = repo.relative(folder)
    now, then = repo.specs_now(prefix), repo.specs_at(commit, prefix)
    plans = []
    for rel in sorted(now | then):
        path = repo.root / rel
        old_text = repo.show(commit, rel) if rel in then else None
        if rel in now and old_text == path.read_text(encoding="utf-8"):
            continue
        shown = folder / PurePosixPath(rel).relative_to(prefix) if prefix != "." else Path(rel)
        plans.append(_plan(path, str(shown), base, old_text, env))
    return plans


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


def _plan(path: Path, shown: str, base: str, old_text: str | None, env: str | None) -> SpecPlan:
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
    if new is not None:
        notes += advice(new)
    either = new or old
    app = either.spec.name if either else Path(shown).stem
    status: Status
    if new is None:
        status = "removed"
        if old is None:
            diff.changes.append(Change("app", f"spec {shown}", "removed"))
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
    )


WEB_REQUEST_LIMIT = 150  # seconds: Modal's limit on one web request before it redirects
MODAL_SCALEDOWN_WINDOW = 60  # seconds an idle container stays up when the spec sets none


def advice(side: Side) -> list[str]:
    """What the deployed app will do that a reviewer may not expect from the spec."""
    spec, plan = side.spec, side.plan
    out = []
    configs = [plan.model] if plan.model else [m["config"] for m in plan.models]
    for config in configs:
        if config["local_dir"] is None and config["revision"] is None:
            out.append(
                f"model {config['id']} has no revision: each cold start asks the Hub for "
                "the latest `main`; pin `revision` to deploy what was tested"
            )
    limits = {r["rate_limit"]["scope"]: r["rate_limit"] for r in plan.routes if r["rate_limit"]}
    for rule in limits.values():
        if rule["storage"] == "memory":
            most = spec.scaling.max_containers
            total = f"{rule['limit'] * most}" if most else "no bound"
            unit = {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}[rule["seconds"]]
            out.append(
                f"rate limit {rule['limit']}/{unit} is counted in memory, per container: "
                f"across containers that is {total} per {unit} (max_containers "
                f"{most or 'unset'}); use `storage: redis` or `modal-dict` for one count"
            )
    if (plan.timeout or 0) > WEB_REQUEST_LIMIT:
        out.append(
            f"resources.timeout is {plan.timeout} s, but Modal answers a web request that "
            f"runs past {WEB_REQUEST_LIMIT} s with a redirect the client must follow; keep "
            "routes below that, or stream"
        )
    if spec.model is not None and spec.shape == "single" and spec.gpu:
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
    if plan.target_inputs:
        out.append(
            f"concurrency: up to {plan.max_inputs} requests per container, the autoscaler "
            f"aiming at {plan.target_inputs}"
        )
    return out


def _current(path: Path, env: str | None) -> Side:
    _, spec = pipeline.load_spec(path, env)
    return Side(spec, make_plan(spec, path, path.parent))


def _side(text: str, path: Path, label: str, env: str | None) -> Side:
    """An earlier version, validated as `pipeline.load_spec` validates the file.

    It is read as if it stood where the spec stands now, so the files it names
    (handlers, folders) are looked up next to today's spec.
    """
    _, spec = pipeline.resolve(loader.loads(text, str(path)), env)
    return Side(spec, make_plan(spec, path, path.parent))
