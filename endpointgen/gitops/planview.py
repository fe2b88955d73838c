"""`plan` output: a compact table for a terminal, Markdown for a PR comment, or JSON."""

from __future__ import annotations

import json
from typing import Literal

from endpointgen.gitops import prices
from endpointgen.gitops.diff import Change
from endpointgen.gitops.gitplan import NOTHING, SpecPlan
from endpointgen.gitops.prices import Cost, money
from endpointgen.tables import markdown_table, md, text_table

Format = Literal["table", "markdown", "json"]
FORMATS: tuple[Format, ...] = ("table", "markdown", "json")


def render(plans: list[SpecPlan], base: str, fmt: Format, where: str = "") -> str:
    """All plans in one format; `where` names the folder when no spec changed in it."""
    if fmt == "json":
        return as_json(plans, base)
    if fmt == "markdown":
        return as_markdown(plans, base, where)
    return as_table(plans, base, where)


def headline(plan: SpecPlan) -> str:
    if plan.base == NOTHING:
        return f"{plan.file}: app '{plan.app}' is new (nothing to compare with)"
    if plan.status == "unchanged":
        return f"{plan.file}: app '{plan.app}' unchanged against {plan.base}"
    return f"{plan.file}: app '{plan.app}' {plan.status} against {plan.base}"


def change_text(change: Change) -> str:
    """One change as a line of the plan. A change with no before or after value (a
    handler file edited) reads `file specs/handlers/run.py changed`; a missing side of
    an otherwise valued change reads `unset`, never `None`."""
    if change.kind != "changed":
        return change.text
    if change.before is None and change.after is None:
        return f"{change.what} changed"
    before = "unset" if change.before is None else change.before
    after = "unset" if change.after is None else change.after
    return f"{change.what}: {before} -> {after}"


def as_table(plans: list[SpecPlan], base: str, where: str = "") -> str:
    if not plans:
        return f"no spec under {where or '.'} changed against {base}\n"
    parts = []
    for plan in plans:
        lines = [headline(plan), *plan.warnings, *(f"note: {n}" for n in plan.notes)]
        text = "\n".join(lines) + "\n"
        if plan.changes:
            rows = [[c.area, change_text(c)] for c in plan.changes]
            text += "\n" + text_table(["area", "change"], rows, indent="  ")
        text += "\n" + text_table(*_cost_rows(plan), indent="  ")
        parts.append(text)
    return "\n".join(parts) + "\n" + prices.NOTE + "\n"


def as_markdown(plans: list[SpecPlan], base: str, where: str = "") -> str:
    out = ["## endpointgen plan", ""]
    if not plans:
        out += [f"No spec under {md(where or '.')} changed against {md(base)}.", ""]
    for plan in plans:
        out += [f"### {md(headline(plan))}", ""]
        if plan.warnings:
            out += ["> [!WARNING]", *(f"> **{md(w)}**  " for w in plan.warnings), ""]
        out += [f"_Note: {md(n)}_" for n in plan.notes]
        if plan.notes:
            out.append("")
        if plan.changes:
            rows = [[c.area, change_text(c)] for c in plan.changes]
            out += [markdown_table(["area", "change"], rows)]
        out += [markdown_table(*_cost_rows(plan))]
    out += [f"_{md(prices.NOTE)}_", ""]
    return "\n".join(out)


def as_json(plans: list[SpecPlan], base: str) -> str:
    doc = {
        "base": base,
        "warnings": [f"{p.file}: {w}" for p in plans for w in p.warnings],
        "estimate": {
            "currency": prices.CURRENCY,
            "per": "hour",
            "prices_date": prices.PRICES_DATE,
            "prices_source": prices.PRICES_SOURCE,
            "note": prices.NOTE,
        },
        "specs": [
            {
                "file": p.file,
                "app": p.app,
                "base": p.base,
                "status": p.status,
                "warnings": p.warnings,
                "notes": p.notes,
                "changes": [c.as_dict() for c in p.changes],
                "estimated_cost": {
                    "before": p.cost_before.as_dict() if p.cost_before else None,
                    "after": p.cost_after.as_dict() if p.cost_after else None,
                },
            }
            for p in plans
        ],
    }
    return json.dumps(doc, indent=2) + "\n"


def _cost_rows(plan: SpecPlan) -> tuple[list[str], list[list[str]]]:
    """The estimate as (headers, rows): per container, always-on floor, ceiling."""
    before_label = "before" if plan.base == NOTHING else f"at {plan.base}"
    headers = [f"estimated cost ({prices.CURRENCY}/hour)", before_label, "after"]

    def cells(cost: Cost | None) -> list[str]:
        if cost is None:
            return ["-", "-", "-", "-"]
        most = "unset" if cost.max_containers is None else str(cost.max_containers)
        return [
            cost.gpu,
            money(cost.per_container),
            f"{money(cost.always_on)} (min_containers {cost.min_containers})",
            f"{money(cost.ceiling)} (max_containers {most})",
        ]

    labels = ["GPU", "per container", "always-on floor", "ceiling"]
    b, a = cells(plan.cost_before), cells(plan.cost_after)
    return headers, [[label, b[i], a[i]] for i, label in enumerate(labels)]
