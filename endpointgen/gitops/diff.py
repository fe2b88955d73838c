"""What changes between two versions of a spec, in the words of the person deploying it.

Both sides are compared as resolved plans (defaults applied, each route's effective auth
and rate limit worked out), so a change is what the deployed app would do differently,
not what text moved in the YAML.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from endpointgen.compiler.checks import MODEL_ACTIONS
from endpointgen.compiler.resolved import RoutePlan
from endpointgen.gitops.appview import (
    ROUTE_ATTRS,
    Side,
    collections,
    facts,
    route_attrs,
    route_name,
    route_text,
    shared,
    summary,
)

__all__ = ["AREAS", "Change", "Diff", "Side", "compare"]

Kind = Literal["added", "removed", "changed"]
# The order changes are listed in: what users reach first, then what it runs on.
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
        diff.changes.append(Change("app", f"app {old.spec.name}", "removed", before=summary(old)))
        return diff
    if old is None:
        diff.changes.append(Change("app", f"app {new.spec.name}", "added", after=summary(new)))
        for route in new.plan.routes:
            diff.changes.append(
                Change("route", route_name(route), "added", after=route_text(route))
            )
            _warn_if_public(diff, route)
        for fact in facts(new):
            if not fact.default:
                diff.changes.append(Change(fact.area, fact.what, "added", after=fact.value))
        for area, what, items in collections(new):
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
    before = {(f.area, f.what): f for f in facts(old)}
    after = {(f.area, f.what): f for f in facts(new)}
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key), after.get(key)
        b_text = b.value if b else "none"
        a_text = a.value if a else "none"
        if b_text != a_text:
            diff.changes.append(Change(key[0], key[1], "changed", b_text, a_text))
    for (area, what, b_items), (_, _, a_items) in zip(
        collections(old), collections(new), strict=True
    ):
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


def _compare_routes(diff: Diff, old: Side, new: Side) -> None:
    before = {(r.method, r.path): r for r in old.plan.routes}
    after = {(r.method, r.path): r for r in new.plan.routes}
    app_auth_changed = old.spec.auth.mode != new.spec.auth.mode
    for key in list(before) + [k for k in after if k not in before]:
        b, a = before.get(key), after.get(key)
        name = f"{key[0]} {key[1]}"
        if a is None:
            assert b is not None
            diff.changes.append(Change("route", name, "removed", before=route_text(b)))
            continue
        if b is None:
            diff.changes.append(Change("route", name, "added", after=route_text(a)))
            _warn_if_public(diff, a)
            continue
        attrs = route_attrs(b).keys() | route_attrs(a).keys()
        for attr in sorted(attrs, key=ROUTE_ATTRS.index):
            bv, av = route_attrs(b).get(attr, "none"), route_attrs(a).get(attr, "none")
            if bv == av:
                continue
            if attr == "rate limit" and shared(b) and shared(a):
                continue  # the app's limit changed; the `rate limit` area says so once
            if attr == "auth" and app_auth_changed and "none" not in (bv, av):
                continue  # follows the app's auth mode; the `auth` area says so once
            diff.changes.append(Change("route", f"{name} {attr}", "changed", bv, av))
            if attr == "auth" and av == "none":
                diff.warnings.append(f"WARNING: route becomes public: {name} (auth {bv} -> none)")


def _warn_if_public(diff: Diff, route: RoutePlan) -> None:
    if route.auth == "none" and route.action in MODEL_ACTIONS:
        diff.warnings.append(
            f"WARNING: new public route: {route_name(route)} runs the model with no auth"
        )
