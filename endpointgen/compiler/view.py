"""What the module templates place, computed from the plan: names, guards and options.

The templates (`templates/module/`) write the module's code; this module decides the
values they write: the Python name of each model, route, limit and folder (each used
once), which guards each route runs, and the options each Modal decorator takes. Spec
values reach the templates as values; the `py` filter writes them as literals.
"""

from __future__ import annotations

import keyword
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from endpointgen.compiler.plan import (
    DEFAULT_MAX_BYTES,
    DEFAULT_WEBHOOK_TOLERANCE,
    GENERATIVE,
    HF_CACHE_DIR,
    VLLM_CACHE_DIR,
    Plan,
)
from endpointgen.compiler.pycode import PythonIdentifier, flat, literal
from endpointgen.compiler.resolved import (
    FieldPlan,
    FilePlan,
    GeneratePlan,
    HandlerPlan,
    HandlerRef,
    JobsPlan,
    ModelConfig,
    ModelDeployment,
    RateRule,
    RespondPlan,
    RoutePlan,
    SocketPlan,
    UploadPlan,
    WebhookPlan,
)
from endpointgen.runtime import defaults

# Names the module defines or imports at its top, or uses inside route functions.
TAKEN = {
    *("auth", "files", "handlers", "http", "limits", "openai", "remote", "tasks", "webhooks"),
    *("modal", "runtime", "app", "image", "web_image", "hf_cache", "create_app", "web"),
    *("Annotated", "Any", "Depends", "FastAPI", "File", "Header", "Iterator", "Literal"),
    *("Path", "Query", "Request", "Response", "UploadFile", "BaseModel", "Field"),
    *("APP_NAME", "DESCRIPTION", "MODEL_ID", "MODEL_REVISION", "GPU", "MODEL_DIR", "secrets"),
    *("body", "request", "file", "upload", "guards", "limit", "require_auth", "model"),
    *("jobs", "job", "app_jobs", "Server", "sockets", "websocket", "WebSocket"),
    *("self", "str", "int", "float", "bool", "list", "dict", "print", "id", "type", "super"),
}
TYPES = {
    "str": "str",
    "int": "int",
    "float": "float",
    "bool": "bool",
    "list[str]": "list[str]",
    "list[int]": "list[int]",
    "list[float]": "list[float]",
    "object": "dict[str, Any]",
    "any": "Any",
}
SOURCES = {"query": "Query", "path": "Path", "header": "Header"}
# Attributes of pydantic's BaseModel that a body field may not take as its name.
MODEL_ATTRIBUTES = {"copy", "dict", "json", "schema", "construct", "validate", "fields"}
UNITS = {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}


@dataclass
class Names:
    """Python names, each used once, none of them a keyword or a name the module takes."""

    used: set[str] = field(default_factory=lambda: set(TAKEN))

    def new(self, wanted: str, suffix: str = "_") -> str:
        base = re.sub(r"\W+", "_", wanted, flags=re.ASCII).strip("_") or "root"
        if base[0].isdigit():
            base = "route_" + base
        name, count = base, 2
        if keyword.iskeyword(name) or name in self.used:
            name = base + suffix
        while keyword.iskeyword(name) or name in self.used:
            name, count = f"{base}{suffix}{count}", count + 1
        self.used.add(name)
        return name


def socket_of(route: RoutePlan) -> SocketPlan | None:
    """A route's WebSocket settings; None for a route served over HTTP."""
    return route.websocket if isinstance(route, GeneratePlan | HandlerPlan) else None


def function_name(route: RoutePlan, routes: list[RoutePlan]) -> str:
    """From the path's fixed words; with the method first when another route shares them."""

    def words(path: str) -> list[str]:
        fixed = re.sub(r"\{[^}]*\}", "", path)
        return [w.lower() for w in re.findall(r"[A-Za-z0-9]+", fixed)]

    mine = words(route.path)
    if not mine or sum(words(r.path) == mine for r in routes) > 1:
        mine.insert(0, route.method.lower())
    return "_".join(mine)


@dataclass
class Setup:
    """A statement atop `create_app`: `name = ...`, written by the `setup` macro."""

    kind: str  # auth, app, limit, guards, jobs, handler, webhook, folder
    name: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Param:
    """A route function's parameter from the spec's `params` (or a body's field)."""

    python: str  # its Python name
    wire: str  # the name clients send
    type: str  # its annotation, before `Annotated`
    source: str | None  # Query, Path or Header; None for a body field
    options: list[tuple[str, str]]  # Query(...)/Field(...) keywords, as literals
    required: bool
    default: str  # a literal


@dataclass
class Body:
    """A declared JSON body: a pydantic class at the module's top level."""

    name: str
    fields: list[Param]


@dataclass
class RouteView:
    """One route of the spec, with the names and values its macro writes."""

    route: RoutePlan
    name: str
    model: str | None  # the Python name of its model
    task: str | None
    options: list[tuple[str, str]]  # the decorator's: dependencies, summary
    params: list[Param] = field(default_factory=list)
    values: list[str] = field(default_factory=list)  # `"wire": python` items
    body: Body | None = None
    handler: str | None = None  # the loaded handler's name
    names: dict[str, str] = field(default_factory=dict)  # an action's own names
    literals: dict[str, str] = field(default_factory=dict)  # an action's own values

    @property
    def data(self) -> str | None:
        """The request's values, by the names the spec gave them (None when none)."""
        dumped = "body.model_dump(by_alias=True)"
        if self.body and not self.values:
            return dumped
        if not self.values:
            return None
        return "{" + ", ".join([*self.values, *([f"**{dumped}"] if self.body else [])]) + "}"


@dataclass
class ModalOptions:
    """The options of an `@app.cls` or `@app.function`, in the order they are written."""

    items: list[tuple[str, str]]
    max_inputs: int | None
    target_inputs: int | None


@dataclass
class ModelView:
    """A model the module loads: its Python name and its `tasks.Model(...)` arguments."""

    name: str
    plan_name: str
    config: ModelConfig
    arguments: list[str]
    options: list[tuple[str, str]]
    class_name: str = ""
    doc: str = ""
    modal: ModalOptions | None = None
    snapshot: str = "off"

    @property
    def text(self) -> bool:
        return bool(self.config.task in GENERATIVE)


@dataclass
class View:
    plan: Plan
    names: Names
    constants: list[tuple[str, str]]
    shipped: list[tuple[str, str, str, bool]]  # name, local, remote, is a folder
    weights: dict[str, str]  # a weights Volume's name -> the module's name for it
    models: list[ModelView]
    setup: list[Setup]
    routes: list[RouteView]
    bodies: list[Body]
    create_app_params: list[str]
    metrics_route: str | None
    app_modal: ModalOptions | None = None
    job_modal: ModalOptions | None = None
    downloads: list[str] = field(default_factory=list)
    download_options: list[tuple[str, str]] = field(default_factory=list)
    proxy: bool = False


def view(plan: Plan) -> View:
    return _Builder(plan).build()


def py(value: Any) -> str:
    """A spec value as a Python literal, on one line (the layout splits it if needed)."""
    return flat(literal(value))


def kw(items: list[tuple[str, str]]) -> list[str]:
    """Keyword arguments: `[("gpu", '"L4"')]` -> `['gpu="L4"']`, each name checked."""
    return [f"{PythonIdentifier(key)}={value}" for key, value in items]


def kwargs(items: list[tuple[str, str]]) -> str:
    return ", ".join(kw(items))


class _Builder:
    def __init__(self, raw: Plan) -> None:
        self.plan = plan = raw
        self.names = names = Names()
        self.models: dict[str, str] = {}
        self.tasks: dict[str, str] = {}
        if plan.model is not None:
            self.models["model"] = "model"
            self.tasks["model"] = plan.model.task
        for m in plan.models:  # `model` is the name of one model behind a web tier too
            self.models[m.name] = "model" if m.name == "model" else names.new(m.name, "_model")
            self.tasks[m.name] = m.config.task
        configs = [plan.model] if plan.model is not None else [m.config for m in plan.models]
        volumes = sorted({c.volume.name for c in configs if c.volume is not None})
        self.weights = {
            v: names.new(v if v.lower().endswith("weights") else f"{v}_weights") for v in volumes
        }
        self.shipped: dict[str, str] = {}
        self.setup: list[Setup] = []
        self.bodies: list[Body] = []
        self.handlers: dict[tuple[str, str], str] = {}
        self.auth_assigned = False
        self.checks: list[list[str]] = []  # each route's guards, before any are shared

    def build(self) -> View:
        plan = self.plan
        constants = [("APP_NAME", py(plan.app_name)), ("DESCRIPTION", py(plan.description))]
        if plan.model is not None:
            constants.append(("MODEL_ID", py(plan.model.id)))
            constants.append(("MODEL_REVISION", py(plan.model.revision)))
        if plan.gpu is not None:
            constants.append(("GPU", py(plan.gpu)))
        model_dir = plan.model.local_dir if plan.model is not None else None
        shipped = []
        dirs = {d.local for d in plan.shipped_dirs}
        for item in plan.shipped_dirs + plan.shipped_files:
            if item.local == model_dir:
                name = "MODEL_DIR"
            else:
                stem = item.local.rstrip("/").rsplit("/", 1)[-1].split(".")[0]
                kind = "_DIR" if item.local in dirs else "_FILE"
                name = self.names.new(stem.upper() + kind)
            self.shipped[item.local] = name
            shipped.append((name, py(item.local), py(item.remote), item.local in dirs))
        routes = self.create_app()
        metrics = self.names.new("prometheus") if plan.metrics is not None else None
        models = self.model_views()
        out = View(
            plan=plan,
            names=self.names,
            constants=constants,
            shipped=shipped,
            weights=self.weights,
            models=models,
            setup=self.setup,
            routes=routes,
            bodies=self.bodies,
            create_app_params=[f"{name}: tasks.Model" for name in self.models.values()],
            metrics_route=metrics,
            proxy=plan.auth.mode == "proxy",
        )
        self.modal(out)
        return out

    # --- create_app ---

    def create_app(self) -> list[RouteView]:
        plan = self.plan
        options: list[tuple[str, str]] = []
        if plan.cors is not None:
            keys = ("origins", "methods", "headers", "credentials", "max_age")
            options.append(
                ("cors", f"http.Cors({kwargs([(k, py(getattr(plan.cors, k))) for k in keys])})")
            )
        if plan.errors:
            mapped = {k: (v.status, v.message) for k, v in plan.errors.items()}
            options.append(("errors", py(mapped)))
        prefixes = [r.path for r in plan.routes if r.action == "openai"]
        if prefixes:
            formats = ", ".join(f"{py(p)}: openai.ERRORS" for p in prefixes)
            options.append(("formats", "{" + formats + "}"))
        if plan.metrics is not None:
            options.append(("metrics", "True"))
        if plan.tracing:
            options.append(("tracing", "True"))
        if plan.docs == "auth":
            options.append(("docs", self.require_auth()))
        elif plan.docs == "off":
            options.append(("docs", py("off")))
        self.setup.append(Setup("app", "web", {"options": options}))
        guards = self.guards()
        if plan.jobs is not None:
            self.setup.append(Setup("jobs", "app_jobs", {"options": self.jobs(plan.jobs)}))
        out = []
        for route, found in zip(plan.routes, guards, strict=True):
            name = self.names.new(function_name(route, plan.routes))
            decorator: list[tuple[str, str]] = []
            if socket_of(route) is not None:  # its checks are its `sockets.Socket`'s
                found = []
            if found == ["guards"]:
                decorator.append(("dependencies", "guards"))
            elif found:
                decorator.append(("dependencies", f"http.guards({', '.join(found)})"))
            if route.summary:
                decorator.append(("summary", py(route.summary)))
            model = self.models[route.model] if route.model is not None else None
            task = self.tasks[route.model] if route.model is not None else None
            view = RouteView(route, name, model, task, decorator)
            self.route(view)
            out.append(view)
        return out

    def require_auth(self) -> str:
        """`require_auth`, the app's auth check, assigned where it is first needed."""
        if not self.auth_assigned:
            self.auth_assigned = True
            auth = self.plan.auth
            options = [("env", py(auth.env))]
            if auth.mode == "api_key":
                options.append(("header", py(auth.header)))
            if auth.mode == "jwt":
                jwt = ("algorithm", "audience", "issuer", "leeway")
                options += [(k, py(getattr(auth, k))) for k in jwt]
            values = {"mode": auth.mode, "options": options}
            self.setup.append(Setup("auth", "require_auth", values))
        return "require_auth"

    def guards(self) -> list[list[str]]:
        """Each route's guards, in the order they run; the commonest list is `guards`.

        A limit by client address counts before auth, so guessing keys is throttled too;
        a limit by credential counts after auth has found it. A route lists its guards in
        `dependencies=http.guards(...)`, where a reader looks; the runtime's route class
        runs them itself, in order, before the body is read (`http.GuardedRoute`).
        """
        plan = self.plan
        guarded_metrics = plan.metrics is not None and plan.metrics.auth
        if any(r.auth != "none" for r in plan.routes) or guarded_metrics:
            self.require_auth()
        limits: dict[str, str] = {}
        for route in plan.routes:
            rule = route.rate_limit
            if rule is not None and rule.scope not in limits:
                app_wide = rule.scope == "app"
                name = "limit" if app_wide else self.names.new(f"limit_{rule.scope}")
                limits[rule.scope] = name
                self.setup.append(Setup("limit", name, self.rate_limit(rule)))
        out = []
        for route in plan.routes:
            rule = route.rate_limit
            found = []
            if rule is not None and rule.key == "ip":
                found.append(limits[rule.scope])
            if route.auth != "none":
                found.append("require_auth")
            if rule is not None and rule.key == "api_key":
                found.append(limits[rule.scope])
            if route.max_bytes != DEFAULT_MAX_BYTES:
                found.append(f"http.MaxBytes({py(route.max_bytes)})")
            if route.model is not None and route.action != "health":
                found.append(f"{self.models[route.model]}.ready")
            out.append(found)
        self.checks = [list(found) for found in out]
        on_http = [
            found for route, found in zip(plan.routes, out, strict=True) if not socket_of(route)
        ]
        shared = Counter(tuple(found) for found in on_http if len(found) > 1).most_common(1)
        if shared and shared[0][1] > 1:
            common = list(shared[0][0])
            self.setup.append(Setup("guards", "guards", {"guards": common}))
            out = [
                ["guards"] if found == common and not socket_of(route) else found
                for route, found in zip(plan.routes, out, strict=True)
            ]
        return out

    def rate_limit(self, rule: RateRule) -> dict[str, Any]:
        options = [("key", py(rule.key))]
        if rule.storage != "memory":
            options += [("storage", py(rule.storage)), ("app", "APP_NAME")]
            if rule.scope != "app":
                options.append(("scope", py(rule.scope)))
        if rule.storage == "redis":
            options.append(("url_env", py(rule.url_env)))
        return {"rate": py(f"{rule.limit}/{UNITS[rule.seconds]}"), "options": options}

    def jobs(self, settings: JobsPlan) -> list[tuple[str, str]]:
        """The app's job routes: run by the job worker on Modal, in this process elsewhere."""
        worker = "Server().job" if self.plan.model is not None else "JobRunner().job"
        options = [("worker", f"lambda: {worker}")]
        callbacks = settings.callbacks
        if callbacks is not None:
            extra = []
            if callbacks.env != "JOB_CALLBACK_SECRET":
                extra.append(("env", py(callbacks.env)))
            if callbacks.private:
                extra.append(("private", "True"))
            hosts = py(tuple(h.lower() for h in callbacks.hosts))
            options.append(("callbacks", f"jobs.Callbacks({', '.join([hosts, *kw(extra)])})"))
        if settings.concurrency != defaults.JOB_CONCURRENCY:
            options.append(("concurrency", py(settings.concurrency)))
        if settings.queue != defaults.JOB_QUEUE:
            options.append(("queue", py(settings.queue)))
        if settings.queue_mib != defaults.JOB_QUEUE_MIB:
            options.append(("queue_bytes", f"{py(settings.queue_mib)} * 1024 * 1024"))
        return options

    # --- what each action's macro needs beyond the route ---

    def route(self, view: RouteView) -> None:
        route, name = view.route, view.name
        if route.action == "openai":
            view.names["models"] = self.names.new(f"{name}_models")
            if view.task == "text-generation":
                view.names["completions"] = self.names.new(f"{name}_completions")
                view.names["chat"] = self.names.new(f"{name}_chat")
            else:
                view.names["embeddings"] = self.names.new(f"{name}_embeddings")
        elif isinstance(route, WebhookPlan):
            rule = route.webhook
            hook = self.names.new(f"{name}_hook")
            options = [("env", py(rule.env))]
            if rule.tolerance != DEFAULT_WEBHOOK_TOLERANCE:
                options.append(("tolerance", py(rule.tolerance)))
            if rule.signature is not None:
                signed = [(k, py(v)) for k, v in rule.signature.options() if v not in (None, "")]
                options.append(("signature", f"webhooks.Signature({kwargs(signed)})"))
            values = {"provider": py(rule.provider), "options": options}
            self.setup.append(Setup("webhook", hook, values))
            view.names["hook"] = hook
        elif isinstance(route, RespondPlan):
            view.body = self.body_class(route, route.request)
            view.params, view.values = self.parameters(route, {"body"})
        elif isinstance(route, HandlerPlan):
            assert route.handler is not None  # the checks refuse a handler route without one
            view.handler = self.handler(route.handler)
            view.body = self.body_class(route, route.request)
            view.params, view.values = self.parameters(route, {"body", view.handler})
        if socket_of(route) is not None:
            self.socket(view)
        elif isinstance(route, UploadPlan):
            view.handler = self.handler(route.handler) if route.handler else None
            taken = {"file", "upload", view.handler or "file"}
            view.params, view.values = self.parameters(route, taken)
        elif isinstance(route, FilePlan):
            self.folder(view, route)

    def socket(self, view: RouteView) -> None:
        """A WebSocket route's `sockets.Socket`: its path, the guards its HTTP twin would
        run (the body limit becomes the message limit), and its limits; and the guards
        of its ticket route, `POST <path>/ticket`, when it has one."""
        route = view.route
        socket = socket_of(route)
        assert socket is not None
        checks = [c for c in self.checks[self.plan.routes.index(route)] if "MaxBytes" not in c]
        name = self.names.new(f"{view.name}_socket")
        options = [
            ("max_bytes", py(route.max_bytes)),
            ("idle_timeout", py(socket.idle_timeout)),
            ("max_lifetime", py(socket.max_lifetime)),
        ]
        values = {"path": py(route.path), "checks": checks, "options": options}
        self.setup.append(Setup("socket", name, values))
        view.names["socket"] = name
        if socket.ticket:
            view.names["ticket"] = self.names.new(f"{view.name}_ticket")
            view.literals["ticket_path"] = py(route.path.rstrip("/") + "/ticket")
            minted = [c for c in checks if not c.endswith(".ready")]
            view.literals["ticket_guards"] = f"http.guards({', '.join(minted)})"

    def folder(self, view: RouteView, route: FilePlan) -> None:
        settings = route.file
        folder = self.names.new(f"{view.name}_folder")
        extra = []
        if settings.folder is not None:
            root = f"{self.shipped[settings.folder.local]}.path"
        else:
            assert settings.volume is not None
            root = py(settings.volume.mount)
            extra.append(("volume", py(settings.volume.name)))
        if settings.media_type:
            extra.append(("media_type", py(settings.media_type)))
        if settings.download_name:
            extra.append(("download_name", py(settings.download_name)))
        self.setup.append(Setup("folder", folder, {"root": root, "options": extra}))
        view.params, view.values = self.parameters(route, {folder})
        view.names["folder"] = folder
        (param,) = [p for p in route.params if p.name == settings.param]
        wanted = view.values[route.params.index(param)].split(": ", 1)[1]
        view.literals["wanted"] = wanted if param.type == "str" else f"str({wanted})"

    def handler(self, ref: HandlerRef) -> str:
        """The name the route's handler function is loaded under, loaded once per function."""
        key = (ref.local, ref.function)
        if key not in self.handlers:
            function = self.names.new(ref.function, "_handler")
            values = {
                "file": self.shipped[ref.local],
                "function": py(ref.function),
                "shown": py(ref.shown),
            }
            self.setup.append(Setup("handler", function, values))
            self.handlers[key] = function
        return self.handlers[key]

    def parameters(self, route: RoutePlan, taken: set[str]) -> tuple[list[Param], list[str]]:
        """The function's parameters (required first, as Python wants), and the
        `"name": value` items that hand them on by the names the spec gave them."""
        required: list[Param] = []
        optional: list[Param] = []
        items: list[str] = []
        for param in route.params:
            wire = param.name
            python = wire if wire not in taken and not keyword.iskeyword(wire) else wire + "_"
            options = constraints(param)
            if python != wire:
                options.append(("alias", py(wire)))
            made = Param(
                python,
                wire,
                annotation(param),
                SOURCES[param.where or "query"],
                options,
                param.required,
                "" if param.required else py(param.default),
            )
            (required if param.required else optional).append(made)
            items.append(f"{py(wire)}: {python}")
        return required + optional, items

    def body_class(self, route: RoutePlan, request: list[FieldPlan] | None) -> Body | None:
        """A pydantic class for the route's declared JSON body, at the module's top level."""
        if request is None:
            return None
        words = re.findall(r"[A-Za-z0-9]+", f"{route.method} {route.path}")
        name = self.names.new("".join(w.capitalize() for w in words) + "Request")
        fields = []
        for spec in request:
            wire = spec.name
            python = wire
            if keyword.iskeyword(wire) or wire in MODEL_ATTRIBUTES or wire.startswith("model_"):
                python = wire + "_"
            options = [] if spec.required else [("default", py(spec.default))]
            options += constraints(spec)
            if python != wire:
                options.append(("alias", py(wire)))
            fields.append(Param(python, wire, annotation(spec), None, options, True, ""))
        body = Body(name, fields)
        self.bodies.append(body)
        return body

    # --- Modal ---

    def model_views(self) -> list[ModelView]:
        plan = self.plan
        if plan.model is not None:
            return [self.model_view("model", "model", plan.model, single=True)]
        out = []
        for m in plan.models:
            made = self.model_view(self.models[m.name], m.name, m.config, single=False)
            made.class_name = m.class_name
            if len(plan.models) == 1:
                made.doc = "The model, on its GPU; the CPU web tier (`web`) calls it."
            else:
                made.doc = f"The model `{m.name}`, on its own GPU type; the web tier calls it."
            made.snapshot = m.snapshot
            out.append(made)
        return out

    def model_view(self, name: str, plan_name: str, config: ModelConfig, single: bool) -> ModelView:
        """A `tasks.Model`: what to load, and how (the loading is in `@modal.enter`)."""
        arguments = ["MODEL_ID" if single else py(config.id), py(config.task)]
        options: list[tuple[str, str]] = []
        if single:
            options.append(("revision", "MODEL_REVISION"))
        elif config.revision is not None:
            options.append(("revision", py(config.revision)))
        if config.dtype != "auto":
            options.append(("dtype", py(config.dtype)))
        if config.variant is not None:
            options.append(("variant", py(config.variant)))
        if config.local_dir is not None:
            options.append(("path", f"{self.shipped[config.local_dir]}.path"))
        if config.volume is not None:  # mounted read-only where the class runs
            options.append(("path", py(config.volume.folder)))
        if config.batching:
            sizes = f"{py(config.batching.max_batch_size)}, {py(config.batching.wait_ms)}"
            options.append(("batching", f"tasks.Batching({sizes})"))
        if config.engine == "vllm":
            vllm = [(k, py(v)) for k, v in (config.vllm or {}).items()]
            options.append(("engine", f"tasks.Vllm({kwargs(vllm)})"))
        loader = config.loader
        if loader:
            ref = [f"{self.shipped[loader.local]}.path", py(loader.function), py(loader.shown)]
            if loader.text_engine:
                ref.append("text_engine=True")
            options.append(("loader", f"tasks.Loader({', '.join(ref)})"))
        return ModelView(name, plan_name, config, arguments, options)

    def modal(self, out: View) -> None:
        plan = self.plan
        secrets = self.secrets(plan.secrets)
        volumes = [(py(v.mount), f"modal.Volume.from_name({py(v.name)})") for v in plan.volumes]
        if plan.model is not None:
            volumes += self.weights_volume(plan.model)
            options = self.options(plan, secrets, volumes, plan.hf_cache, vllm=self.vllm())
            if plan.jobs is not None:  # the class's `job` method runs as long as a job may
                timeout = max(plan.timeout or 0, plan.jobs.timeout)
                options.items = _set(options.items, "timeout", py(timeout))
            options.items += snapshot_options(plan.snapshot)
            out.app_modal = options
        else:
            model_secrets = self.secrets(plan.model_secrets)
            for model, named in zip(out.models, plan.models, strict=True):
                weights = self.weights_volume(named.config)
                vllm = named.config.engine == "vllm"
                made = self.options(named, model_secrets, weights, plan.hf_cache, vllm=vllm)
                made.items += snapshot_options(named.snapshot)
                model.modal = made
            options = self.options(plan, secrets, volumes, hf=False, vllm=False)
            if plan.models:
                options.items.insert(0, ("image", "web_image"))
            out.app_modal = options
            if plan.jobs is not None:
                items = _set(list(options.items), "timeout", py(plan.jobs.timeout))
                out.job_modal = ModalOptions(items, options.max_inputs, options.target_inputs)
        configs = [plan.model] if plan.model is not None else [m.config for m in plan.models]
        out.downloads = [
            model.name
            for model, config in zip(out.models, configs, strict=True)
            if config.local_dir is None and config.volume is None
        ]
        download = [("volumes", f"{{{py(HF_CACHE_DIR)}: hf_cache}}")]
        if plan.model_secrets:
            download.append(("secrets", self.secrets(plan.model_secrets) or "[]"))
        download.append(("timeout", py(3600)))
        out.download_options = download

    def vllm(self) -> bool:
        return self.plan.model is not None and self.plan.model.engine == "vllm"

    def weights_volume(self, config: ModelConfig) -> list[tuple[str, str]]:
        """Where a model's weights Volume is mounted, and the module's name for it."""
        volume = config.volume
        return [] if volume is None else [(py(volume.mount), self.weights[volume.name])]

    def secrets(self, names: list[str]) -> str | None:
        """The Secrets, each with the keys the app reads from it."""
        if not names:
            return None
        made = []
        keys = self.plan.secret_keys
        # The spec's own first, then those the app reads a key from; each group sorted.
        for name in sorted(names, key=lambda n: (bool(keys.get(n)), n)):
            required = f", required_keys={py(keys[name])}" if keys.get(name) else ""
            made.append(f"modal.Secret.from_name({py(name)}{required})")
        return "[" + ", ".join(made) + "]"

    def options(
        self,
        settings: Plan | ModelDeployment,
        secrets: str | None,
        volumes: list[tuple[str, str]],
        hf: bool,
        vllm: bool,
    ) -> ModalOptions:
        """`@app.cls`/`@app.function` options: the app's (the plan) or one model's."""
        items: list[tuple[str, str]] = []
        if settings.gpu is not None:
            items.append(("gpu", "GPU" if settings is self.plan else py(settings.gpu)))
        for key in ("cpu", "memory", "timeout", "startup_timeout"):
            if value := getattr(settings, key):
                items.append((key, py(value)))
        if secrets is not None:
            items.append(("secrets", secrets))
        mounts = [f"{mount}: {value}" for mount, value in volumes]
        if hf:
            mounts.append(f"{py(HF_CACHE_DIR)}: hf_cache")
        if vllm:
            mounts.append(f"{py(VLLM_CACHE_DIR)}: vllm_cache")
        if mounts:
            items.append(("volumes", "{" + ", ".join(mounts) + "}"))
        items += [(key, py(value)) for key, value in settings.autoscaling.items()]
        if self.plan.region is not None:
            items.append(("region", py(self.plan.region)))
        return ModalOptions(items, settings.max_inputs, settings.target_inputs)


def _set(items: list[tuple[str, str]], key: str, value: str) -> list[tuple[str, str]]:
    """`items` with `key` set, as a dict sets it: in its place if there, else last."""
    if key in (k for k, _ in items):
        return [(k, value if k == key else v) for k, v in items]
    return [*items, (key, value)]


def snapshot_options(snapshot: str) -> list[tuple[str, str]]:
    """A class started from Modal's memory snapshot (and, for `gpu`, its GPU snapshot)."""
    if snapshot == "off":
        return []
    options = [("enable_memory_snapshot", "True")]
    if snapshot == "gpu":
        options.append(("experimental_options", py({"enable_gpu_snapshot": True})))
    return options


def constraints(spec: FieldPlan) -> list[tuple[str, str]]:
    names = ("ge", "le", "min_length", "max_length", "description")
    found = {name: getattr(spec, name) for name in names if getattr(spec, name) is not None}
    for bound in ("ge", "le"):  # an int's bounds read as ints
        if spec.type == "int" and bound in found and float(found[bound]).is_integer():
            found[bound] = int(found[bound])
    options = [(name, py(value)) for name, value in found.items()]
    if spec.type == "float" and spec.where in SOURCES:  # a query's "nan", "inf"
        options.append(("allow_inf_nan", "False"))
    return options


def annotation(spec: FieldPlan) -> str:
    kind = TYPES[spec.type]
    if spec.enum is not None and spec.type == "str":
        kind = f"Literal[{', '.join(py(v) for v in spec.enum)}]"
    elif spec.enum is not None:  # numbers arrive as text in a query: parse, then compare
        allowed = ", ".join(py(v) for v in spec.enum)
        kind = f"Annotated[{kind}, handlers.one_of({allowed})]"
    if not spec.required and spec.default is None:
        kind += " | None"
    return kind
