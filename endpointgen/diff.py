"""What changes between two versions of a spec, in the words of the person deploying it.

Both sides are compared as resolved plans (defaults applied, each route's effective auth
and rate limit worked out), so a change is what the deployed app would do differently,
not what text moved in the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from endpointgen import prices
from endpointgen.checks import MODEL_ACTIONS
from endpointgen.plan import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_TOKENS,
    Plan,
)
from endpointgen.spec import Spec
from endpointgen.spec.models import RATE_UNITS

Kind = Literal["added", "removed", "changed"]
_UNITS = {seconds: unit for unit, seconds in RATE_UNITS.items()}
_LIMITS = {
    "max_tokens": DEFAULT_MAX_TOKENS,
    "max_chars": DEFAULT_MAX_CHARS,
    "max_items": DEFAULT_MAX_ITEMS,
    "max_bytes": DEFAULT_MAX_BYTES,
}


@dataclass(frozen=True)
class Side:
    """One version of a spec: the validated spec and its resolved plan."""

    spec: Spec
    plan: Plan

    @property
    def cost(self) -> prices.Cost:
        spec = self.spec
        return prices.estimate(
            list(spec.gpu) if spec.gpu else None,
            spec.resources.cpu,
            spec.resources.memory,
            spec.scaling.min_containers,
            spec.scaling.max_containers,
        )


@dataclass(frozen=True)
class Change:
    area: str  # app, route, auth, cors, rate limit, gpu, scaling, resources, ...
    what: str
    kind: Kind
    before: str | None = None
    after: str | None = None

    @property
    def text(self) -> str:
        if self.kind == "added":
            return f"+ {self.what}" + (f": {self.after}" if self.after else "")
        if self.kind == "removed":
            return f"- {self.what}" + (f" (was: {self.before})" if self.before else "")
        return f"{self.what}: {self.before} -> {self.after}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "kind": self.kind,
            "what": self.what,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class Diff:
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Fact:
    area: str
    what: str
    value: str
    default: bool = False  # the value a spec gets by saying nothing


def compare(old: Side | None, new: Side | None) -> Diff:
    """Every user-visible difference from `old` to `new` (None: no app on that side)."""
    diff = _compare(old, new)
    order = {area: i for i, area in enumerate(AREAS)}
    diff.changes.sort(key=lambda c: order.get(c.area, len(order)))  # stable: keeps spec order
    return diff


def _compare(old: Side | None, new: Side | None) -> Diff:
    diff = Diff()
    if old is None and new is None:
        return diff
    if new is None:
        assert old is not None
        diff.changes.append(Change("app", f"app {old.spec.name}", "removed", before=_summary(old)))
        return diff
    if old is None:
        diff.changes.append(Change("app", f"app {new.spec.name}", "added", after=_summary(new)))
        for route in new.plan.routes:
            diff.changes.append(Change("route", _route_name(route), "added", after=_route(route)))
            _warn_if_public(diff, route)
        for fact in _facts(new):
            if not fact.default:
                diff.changes.append(Change(fact.area, fact.what, "added", after=fact.value))
        for area, what, items in _sets(new):
            for name in sorted(items):
                diff.changes.append(Change(area, f"{what} {name}", "added", after=items[name]))
        return diff
    if old.spec.name != new.spec.name:
        diff.changes.append(Change("app", "app name", "changed", old.spec.name, new.spec.name))
        diff.warnings.append(
            f"WARNING: app renamed: {old.spec.name} -> {new.spec.name}; Modal deploys a new app "
            f"and '{old.spec.name}' keeps running until you stop it "
            f"(`modal app stop {old.spec.name}`)"
        )
    _compare_routes(diff, old, new)
    before = {(f.area, f.what): f for f in _facts(old)}
    after = {(f.area, f.what): f for f in _facts(new)}
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key), after.get(key)
        b_text = b.value if b else "none"
        a_text = a.value if a else "none"
        if b_text != a_text:
            diff.changes.append(Change(key[0], key[1], "changed", b_text, a_text))
    for (area, what, b_items), (_, _, a_items) in zip(_sets(old), _sets(new), strict=True):
        for name in sorted(b_items.keys() | a_items.keys()):
            if name not in a_items:
                diff.changes.append(Change(area, f"{what} {name}", "removed", before=b_items[name]))
            elif name not in b_items:
                diff.changes.append(Change(area, f"{what} {name}", "added", after=a_items[name]))
            elif b_items[name] != a_items[name]:
                diff.changes.append(
                    Change(area, f"{what} {name}", "changed", b_items[name], a_items[name])
                )
    if old.spec.auth.mode != "none" and new.spec.auth.mode == "none":
        diff.warnings.append(
            f"WARNING: app auth turned off (auth mode {old.spec.auth.mode} -> none)"
        )
    return diff


AREAS = (
    "app",
    "route",
    "auth",
    "cors",
    "rate limit",
    "gpu",
    "scaling",
    "resources",
    "image",
    "model",
    "batching",
    "secrets",
    "env",
)


def _compare_routes(diff: Diff, old: Side, new: Side) -> None:
    before = {(r["method"], r["path"]): r for r in old.plan.routes}
    after = {(r["method"], r["path"]): r for r in new.plan.routes}
    app_auth_changed = old.spec.auth.mode != new.spec.auth.mode
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key), after.get(key)
        name = f"{key[0]} {key[1]}"
        if a is None:
            assert b is not None
            diff.changes.append(Change("route", name, "removed", before=_route(b)))
            continue
        if b is None:
            diff.changes.append(Change("route", name, "added", after=_route(a)))
            _warn_if_public(diff, a)
            continue
        attrs = _route_attrs(b).keys() | _route_attrs(a).keys()
        for attr in sorted(attrs, key=_ROUTE_ATTRS.index):
            bv, av = _route_attrs(b).get(attr, "none"), _route_attrs(a).get(attr, "none")
            if bv == av:
                continue
            if attr == "rate limit" and _shared(b) and _shared(a):
                continue  # the app's limit changed; the `rate limit` area says so once
            if attr == "auth" and app_auth_changed and "none" not in (bv, av):
                continue  # follows the app's auth mode; the `auth` area says so once
            diff.changes.append(Change("route", f"{name} {attr}", "changed", bv, av))
            if attr == "auth" and av == "none":
                diff.warnings.append(f"WARNING: route becomes public: {name} (auth {bv} -> none)")


_ROUTE_ATTRS = ["action", "auth", "rate limit", "stream", "webhook", *_LIMITS]


def _route_attrs(route: dict[str, Any]) -> dict[str, str]:
    out = {
        "action": route["action"],
        "auth": "signature" if route["action"] == "webhook" else route["auth"],
        "rate limit": _rate(route["rate_limit"]),
    }
    if route["action"] == "generate":
        out["stream"] = "yes" if route["stream"] else "no"
    if route.get("webhook"):
        hook = route["webhook"]
        out["webhook"] = f"{hook['provider']} signature in ${hook['env']}"
    for key in _LIMITS:
        if key in route:
            out[key] = str(route[key])
    return out


def _route(route: dict[str, Any]) -> str:
    """A route in a few words: action, auth, rate limit, stream, and limits set by hand."""
    auth = "signature" if route["action"] == "webhook" else route["auth"]
    parts = [route["action"], f"auth {auth}"]
    if route["rate_limit"] is not None:
        parts.append(f"rate limit {_rate(route['rate_limit'])}")
    if route.get("stream"):
        parts.append("stream")
    if route.get("webhook"):
        parts.append(f"{route['webhook']['provider']} webhook")
    parts += [
        f"{k} {route[k]}" for k, default in _LIMITS.items() if route.get(k, default) != default
    ]
    return ", ".join(parts)


def _route_name(route: dict[str, Any]) -> str:
    return f"{route['method']} {route['path']}"


def _warn_if_public(diff: Diff, route: dict[str, Any]) -> None:
    if route["auth"] == "none" and route["action"] in MODEL_ACTIONS:
        diff.warnings.append(
            f"WARNING: new public route: {_route_name(route)} runs the model with no auth"
        )


def _shared(route: dict[str, Any]) -> bool:
    rule = route["rate_limit"]
    return rule is not None and rule["scope"] == "app"


def _rate(rule: dict[str, Any] | None) -> str:
    if rule is None:
        return "none"
    seconds = rule["seconds"]
    unit = _UNITS.get(seconds, f"{seconds}s")
    text = f"{rule['limit']}/{unit} per {rule['key']}"
    if rule["storage"] != "memory":
        text += f" in {rule['storage']}"
    if rule["scope"] != "app":
        text += " (own budget)"
    return text


def _summary(side: Side) -> str:
    routes = len(side.plan.routes)
    gpu = side.cost.gpu
    return f"{routes} route{'s' if routes != 1 else ''}, GPU {gpu}, auth {side.spec.auth.mode}"


def _facts(side: Side) -> list[_Fact]:
    """The scalar settings of an app, each as the text a reviewer reads."""
    spec, plan = side.spec, side.plan
    out: list[_Fact] = []

    def add(area: str, what: str, value: Any, default: str, unit: str = "") -> None:
        text = default if value is None else f"{_num(value)}{unit}"
        out.append(_Fact(area, what, text, value is None or text == default))

    if spec.description:
        add("app", "description", _short(spec.description), "")
    auth = plan.auth
    add("auth", "auth mode", auth["mode"], "none")
    add("auth", "auth secret", spec.auth.secret, "none")
    for key in ("env", "header", "algorithm", "audience", "issuer"):
        if key in auth:
            add("auth", f"auth {key}", auth[key], "none")
    add("cors", "CORS", "on" if plan.cors else None, "off")
    if plan.cors is not None:
        cors = plan.cors
        add("cors", "CORS credentials", "allowed" if cors["credentials"] else "not allowed", "")
        add("cors", "CORS methods", ", ".join(cors["methods"]), "")
        add("cors", "CORS headers", ", ".join(cors["headers"]), "")
        add("cors", "CORS max_age", cors["max_age"], "", " s")
    rate = spec.rate_limit
    app_rule: dict[str, Any] | None = None
    if rate is not None:
        app_rule = {"limit": rate.amount, "seconds": rate.seconds, "key": rate.key}
        app_rule |= {"storage": rate.storage, "scope": "app"}
    add("rate limit", "app rate limit", _rate(app_rule) if app_rule else None, "none")
    add("gpu", "GPU", side.cost.gpu if spec.gpu else None, "none (CPU)")
    for key in ("min_containers", "max_containers", "buffer_containers"):
        add("scaling", key, getattr(spec.scaling, key), "Modal default")
    add("scaling", "scaledown_window", spec.scaling.scaledown_window, "Modal default", " s")
    add("scaling", "max_inputs", spec.scaling.max_inputs, "1 (Modal default)", " per container")
    add("resources", "cpu", spec.resources.cpu, "Modal default", " cores")
    add("resources", "memory", spec.resources.memory, "Modal default", " MiB")
    add("resources", "timeout", spec.resources.timeout, "Modal default", " s")
    model = spec.model
    add("model", "model id", model.id if model else None, "none")
    add("model", "model task", model.task if model else None, "none")
    if model is not None:
        add("model", "model revision", model.revision, "latest")
        add("model", "model dtype", model.dtype if model.dtype != "auto" else None, "auto")
    batch = spec.batching
    text = f"up to {batch.max_batch_size} per call, wait {batch.wait_ms} ms" if batch else None
    add("batching", "batching", text, "off")
    return out


def _sets(side: Side) -> list[tuple[str, str, dict[str, str]]]:
    """Collections compared item by item: (area, item word, {item: detail})."""
    plan = side.plan
    origins = {o: "" for o in (plan.cors["origins"] if plan.cors else [])}
    packages = {_package_name(p): p for p in plan.packages}
    secrets = {s: "" for s in plan.secrets}
    env = {k: _short(v) for k, v in side.spec.env.items()}  # never secret: checks refuse them
    return [
        ("cors", "CORS origin", origins),
        ("image", "package", packages),
        ("secrets", "Modal Secret", secrets),
        ("env", "env var", env),
    ]


def _package_name(requirement: str) -> str:
    name = requirement
    for stop in ("[", "=", "<", ">", "!", "~", " "):
        name = name.split(stop, 1)[0]
    return name.lower()


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _short(text: str, limit: int = 60) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."
