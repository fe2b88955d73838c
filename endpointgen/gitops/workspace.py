"""A folder of specs as one unit: `check` (one CI step) and `list` (what is in it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from endpointgen.compiler import pipeline
from endpointgen.errors import EndpointgenError, SpecError, UsageError
from endpointgen.gitops.gitref import SPEC_SUFFIXES, declared_name, is_spec
from endpointgen.spec import GenerateRoute, Route, Spec
from endpointgen.spec.models import job_of

BUILT_HEADER = "# Built by endpointgen"


def find_specs(folder: Path) -> list[Path]:
    """Every spec (*.yaml, *.yml that `is_spec`) under `folder`, recursively, skipping
    hidden folders."""
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder")
    found = [
        p
        for p in folder.rglob("*")
        if p.suffix in SPEC_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1])
        and is_spec(p.read_text(encoding="utf-8", errors="replace"))
    ]
    return sorted(found)


def check(folder: Path, out: Path, env: str | None = None) -> list[str]:
    """Every problem that should fail CI: invalid specs, two specs for one app, and built
    modules in `out` that are missing, stale, or left over from a spec that is gone.
    With `env`, modules are built with that overlay (a spec without it: its base)."""
    specs = find_specs(folder)
    if not specs:
        return [f"{folder}: no specs (*.yaml, *.yml) found"]
    pipeline.environment_used(specs, env)
    problems: list[str] = []
    invalid: set[str] = set()  # modules of specs that did not build: not "left over"
    apps: dict[str, Path] = {}
    expected: set[Path] = set()
    for spec in specs:
        found = pipeline.validate(spec)
        if found:
            problems += [str(p) for p in found]
            invalid.add(_module_name(spec))
            continue
        try:
            built = pipeline.build(spec, out, env, base_if_missing=True)
        except SpecError as exc:
            problems += [str(p) for p in exc.problems]
            invalid.add(_module_name(spec))
            continue
        except EndpointgenError as exc:
            problems.append(f"{spec}: {exc}")
            continue
        if built.spec.name in apps:
            problems.append(
                f"{spec}: app '{built.spec.name}' is also defined by {apps[built.spec.name]}; "
                "one would replace the other when deployed"
            )
        apps.setdefault(built.spec.name, spec)
        expected.add(built.path)
        current = built.path.read_text(encoding="utf-8") if built.path.is_file() else None
        if current is None:
            problems.append(f"{built.path}: missing; run `endpointgen build {spec} -o {out}`")
        elif current != built.source:
            problems.append(
                f"{built.path}: out of date with {spec}; run `endpointgen build {spec} -o {out}`"
            )
    for module in sorted(out.glob("*.py")) if out.is_dir() else []:
        if module not in expected and module.stem not in invalid and _built_by_us(module):
            problems.append(f"{module}: no spec under {folder} builds this module; delete it")
    return problems


def _models(spec: Any) -> str:
    if spec.models:
        return "; ".join(f"{name}: {m.id} ({m.task})" for name, m in spec.models.items())
    return f"{spec.model.id} ({spec.model.task})" if spec.model else "none"


def _gpus(spec: Any) -> str:
    def shown(gpus: list[str] | None) -> str:
        return " or ".join(gpus) if gpus else "CPU"

    if spec.models:
        return "; ".join(f"{name}: {shown(m.gpu)}" for name, m in spec.models.items())
    return shown(spec.gpu)


def _module_name(spec: Path) -> str:
    """The module a spec builds, read from its `name:` even when the spec is invalid."""
    name = declared_name(spec.read_text(encoding="utf-8", errors="replace"))
    return name.replace("-", "_") if name else ""


def _built_by_us(module: Path) -> bool:
    try:
        with module.open(encoding="utf-8") as f:
            return f.readline().startswith(BUILT_HEADER)
    except (OSError, UnicodeDecodeError):
        return False


@dataclass(frozen=True)
class Entry:
    file: str
    app: str
    model: str
    gpu: str
    scaling: str
    routes: str
    auth: str
    valid: bool = True

    def row(self) -> list[str]:
        return [self.file, self.app, self.model, self.gpu, self.scaling, self.routes, self.auth]


HEADERS = ["spec", "app", "model", "gpu", "containers", "routes", "auth"]


def listing(folder: Path, env: str | None = None) -> list[Entry]:
    """One entry per spec under `folder` (with `env`'s overlay where a spec has one); an
    invalid spec is listed as such."""
    from endpointgen.compiler.checks import route_auth

    entries = []
    specs = find_specs(folder)
    pipeline.environment_used(specs, env)
    for path in specs:
        try:
            _, spec = pipeline.load_spec(path, env, base_if_missing=True)
        except SpecError as exc:
            count = len(exc.problems)
            why = f"invalid ({count} problem{'s' if count != 1 else ''}): `endpointgen validate`"
            entries.append(Entry(str(path), "-", "-", "-", "-", why, "-", valid=False))
            continue
        routes = ", ".join(line for r in spec.routes for line in _served(spec, r))
        public = [
            f"{r.method} {r.path}"
            for r in spec.routes
            if route_auth(spec, r) == "none" and r.action not in ("health", "webhook")
        ]
        auth = spec.auth.mode + (f"; open: {', '.join(public)}" if public else "")
        low = spec.scaling.min_containers or 0
        high = spec.scaling.max_containers
        entries.append(
            Entry(
                file=str(path),
                app=spec.name,
                model=_models(spec),
                gpu=_gpus(spec),
                scaling=f"{low}-{high if high is not None else 'any'}",
                routes=routes,
                auth=auth,
            )
        )
    return entries


def _served(spec: Spec, route: Route) -> list[str]:
    """A route's methods and paths as clients call them: an `openai` route is several."""
    if route.action != "openai":
        return [f"{route.method} {route.path}{_marked(route)}"]
    model = spec.model_for(route)
    calls = ["POST /embeddings"]
    if model is None or model.task != "embeddings":
        calls = ["POST /completions", "POST /chat/completions"]
    base = route.path.rstrip("/")
    return [f"GET {base}/models", *(f"{m} {base}{p}" for m, p in (c.split() for c in calls))]


def _marked(route: Route) -> str:
    """What a route's line says besides its method and path: a stream, or a job."""
    if isinstance(route, GenerateRoute) and route.stream:
        return " (stream)"
    return " (job)" if job_of(route) else ""
