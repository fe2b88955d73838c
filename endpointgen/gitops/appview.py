"""One version of an app as a reviewer reads it: each setting and route in a few words.

`diff` compares two of these; `plan`'s tables print them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from endpointgen.compiler.plan import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_ITEMS,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_STEPS,
    DEFAULT_MAX_TOKENS,
    PYTHON_VERSION,
    Plan,
)
from endpointgen.compiler.resolved import (
    GeneratePlan,
    ModelDeployment,
    RateRule,
    RoutePlan,
    WebhookPlan,
)
from endpointgen.gitops import prices
from endpointgen.spec import Spec
from endpointgen.spec.models import RATE_UNITS

_UNITS = {seconds: unit for unit, seconds in RATE_UNITS.items()}
LIMITS = {
    "max_tokens": DEFAULT_MAX_TOKENS,
    "max_chars": DEFAULT_MAX_CHARS,
    "max_items": DEFAULT_MAX_ITEMS,
    "max_image_pixels": DEFAULT_MAX_PIXELS,
    "max_steps": DEFAULT_MAX_STEPS,
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
            spec.region,
        )


@dataclass(frozen=True)
class Fact:
    area: str
    what: str
    value: str
    default: bool = False  # the value a spec gets by saying nothing


# The auth settings a reviewer sees, by mode.
AUTH_KEYS = {
    "none": (),
    "api_key": ("env", "header"),
    "jwt": ("env", "algorithm", "audience", "issuer"),
}
ROUTE_ATTRS = ["action", "auth", "rate limit", "stream", "job", "webhook", *LIMITS]


def route_attrs(route: RoutePlan) -> dict[str, str]:
    out = {
        "action": route.action,
        "auth": "signature" if route.action == "webhook" else route.auth,
        "rate limit": rate_text(route.rate_limit),
    }
    if isinstance(route, GeneratePlan):
        out["stream"] = "yes" if route.stream else "no"
    if route.job:
        out["job"] = f"yes, results kept {route.job.ttl}s"
    if isinstance(route, WebhookPlan):
        hook = route.webhook
        out["webhook"] = f"{hook.provider} signature in ${hook.env}"
    limits = route.limits()
    for key in LIMITS:
        if key in limits:
            out[key] = str(limits[key])
    return out


def route_text(route: RoutePlan) -> str:
    """A route in a few words: action, auth, rate limit, stream, job, and limits set by
    hand."""
    auth = "signature" if route.action == "webhook" else route.auth
    parts = [route.action, f"auth {auth}"]
    if route.rate_limit is not None:
        parts.append(f"rate limit {rate_text(route.rate_limit)}")
    if isinstance(route, GeneratePlan) and route.stream:
        parts.append("stream")
    if route.job:
        parts.append(f"job (results kept {route.job.ttl}s)")
    if isinstance(route, WebhookPlan):
        parts.append(f"{route.webhook.provider} webhook")
    limits = route.limits()
    parts += [
        f"{k} {limits[k]}" for k, default in LIMITS.items() if limits.get(k, default) != default
    ]
    return ", ".join(parts)


def route_name(route: RoutePlan) -> str:
    return f"{route.method} {route.path}"


def shared(route: RoutePlan) -> bool:
    rule = route.rate_limit
    return rule is not None and rule.scope == "app"


def rate_text(rule: RateRule | None) -> str:
    if rule is None:
        return "none"
    seconds = rule.seconds
    unit = _UNITS.get(seconds, f"{seconds}s")
    text = f"{rule.limit}/{unit} per {rule.key}"
    if rule.storage != "memory":
        text += f" in {rule.storage}"
    if rule.scope != "app":
        text += " (own budget)"
    return text


def concurrency(plan: Plan) -> str | None:
    """`@modal.concurrent` of the container that runs the model (the app's, without one),
    as a reviewer reads it."""
    if len(plan.models) > 1:
        return "; ".join(f"{m.name}: {_inputs(m)}" for m in plan.models)
    return _inputs(plan.models[0] if plan.models else plan)


def _inputs(settings: Plan | ModelDeployment) -> str | None:
    if not settings.max_inputs:
        return None
    text = f"{settings.max_inputs} requests per container"
    if settings.target_inputs:
        text += f", autoscaler aims for {settings.target_inputs}"
    return text


def region_text(region: str | list[str] | None) -> str | None:
    if not region:
        return None
    names = [region] if isinstance(region, str) else region
    return f"{' or '.join(names)} (prices x{prices.region_multiplier(region)})"


def summary(side: Side) -> str:
    routes = len(side.plan.routes)
    gpu = side.cost.gpu
    return f"{routes} route{'s' if routes != 1 else ''}, GPU {gpu}, auth {side.spec.auth.mode}"


def facts(side: Side) -> list[Fact]:
    """The scalar settings of an app, each as the text a reviewer reads."""
    spec, plan = side.spec, side.plan
    out: list[Fact] = []

    def add(area: str, what: str, value: Any, default: str, unit: str = "") -> None:
        text = default if value is None else f"{_num(value)}{unit}"
        out.append(Fact(area, what, text, value is None or text == default))

    if spec.description:
        add("app", "description", _short(spec.description), "")
    auth = plan.auth
    add("auth", "auth mode", auth.mode, "none")
    add("auth", "auth secret", spec.auth.secret, "none")
    for key in AUTH_KEYS.get(auth.mode, ("env",)):
        add("auth", f"auth {key}", getattr(auth, key), "none")
    add("cors", "CORS", "on" if plan.cors else None, "off")
    if plan.cors is not None:
        cors = plan.cors
        add("cors", "CORS credentials", "allowed" if cors.credentials else "not allowed", "")
        add("cors", "CORS methods", ", ".join(cors.methods), "")
        add("cors", "CORS headers", ", ".join(cors.headers), "")
        add("cors", "CORS max_age", cors.max_age, "", " s")
    rate = spec.rate_limit
    app_rule = None
    if rate is not None:
        app_rule = RateRule("app", rate.amount, rate.seconds, rate.key, rate.storage)
    add("rate limit", "app rate limit", rate_text(app_rule) if app_rule else None, "none")
    shown = None
    if plan.metrics is not None:
        shown = "/metrics, behind auth" if plan.metrics.auth else "/metrics, public"
    add("auth", "metrics", shown, "off")
    add("auth", "docs pages", None if plan.docs == "public" else plan.docs, "public")
    add("app", "tracing", "OpenTelemetry, OTLP" if plan.tracing else None, "off")
    python = spec.image.python
    add("image", "python", python if python != PYTHON_VERSION else None, PYTHON_VERSION)
    add("gpu", "GPU", side.cost.gpu if spec.gpu else None, "none (CPU)")
    if spec.model is not None:
        split = "CPU web tier + model class" if spec.serving_shape == "split" else None
        add("gpu", "shape", split, "one container (web and model)")
    for key in ("min_containers", "max_containers", "buffer_containers"):
        add("scaling", key, getattr(spec.scaling, key), "Modal default")
    add("scaling", "scaledown_window", spec.scaling.scaledown_window, "Modal default", " s")
    add("scaling", "concurrency", concurrency(plan), "1 request per container (Modal's default)")
    add("gpu", "region", region_text(plan.region), "any (Modal's choice)")
    snapshot = plan.snapshot if plan.model is not None else None
    if plan.models and len(plan.models) == 1 and spec.model is not None:
        snapshot = plan.models[0].snapshot
    add("gpu", "snapshot", None if snapshot == "off" else snapshot, "off")
    add("resources", "cpu", spec.resources.cpu, "Modal default", " cores")
    add("resources", "memory", spec.resources.memory, "Modal default", " MiB")
    add("resources", "timeout", spec.resources.timeout, "Modal default", " s")
    model = spec.model
    add("model", "model id", model.id if model else None, "none")
    add("model", "model task", model.task if model else None, "none")
    if model is not None:
        add("model", "model revision", model.revision, "latest")
        add("model", "model dtype", model.dtype if model.dtype != "auto" else None, "auto")
        engine = None
        if model.engine == "vllm":
            options = (model.vllm.model_dump(exclude_defaults=True) if model.vllm else {}).items()
            engine = " ".join(["vllm", *(f"{k}={v}" for k, v in options)])
        add("model", "model engine", engine, "transformers")
    batch = spec.batching
    text = f"up to {batch.max_batch_size} per call, wait {batch.wait_ms} ms" if batch else None
    add("batching", "batching", text, "off")
    return out


def collections(side: Side) -> list[tuple[str, str, dict[str, str]]]:
    """Collections compared item by item: (area, item word, {item: detail})."""
    plan = side.plan
    origins = {o: "" for o in (plan.cors.origins if plan.cors else [])}
    packages = {_package_name(p): p for p in plan.packages}
    system = {n.split("=", 1)[0]: n if "=" in n else "" for n in plan.system_packages}
    commands = {_short(command): "" for command in plan.commands}
    secrets = {s: "" for s in plan.secrets}
    env = {k: _short(v) for k, v in side.spec.env.items()}  # never secret: checks refuse them
    return [
        ("cors", "CORS origin", origins),
        ("image", "package", packages),
        ("image", "system package", system),
        ("image", "build command", commands),
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
