"""The built module's code, computed from the plan; `templates/app.py.jinja` places it.

Every name, signature, decorator and call of the module is decided here and in
`routes.py`, and laid out by `pycode` as ruff would. The module holds only what the spec
says: its settings, image and app; `create_app` with its guards and one function per
route; the Modal function or classes that serve it. What every app shares is in the
runtime it imports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from endpointgen.compiler import routes
from endpointgen.compiler.plan import (
    CPU_TORCH_INDEX,
    CUDA_IMAGE,
    GENERATIVE,
    HF_CACHE_DIR,
    TORCH,
    VLLM_CACHE_DIR,
    VLLM_CACHE_VOLUME,
    Plan,
)
from endpointgen.compiler.pycode import (
    WIDTH,
    Group,
    Node,
    block,
    call,
    collection,
    flat,
    lines,
    literal,
    width,
)

RUNTIME_MODULES = (
    *("auth", "files", "handlers", "http", "jobs", "limits", "metrics", "openai", "remote"),
    *("tasks", "webhooks"),
)
FASTAPI_NAMES = ("Depends", "FastAPI", "File", "Header", "Path", "Query", "Request", "Response")
UNITS = {1: "second", 60: "minute", 3600: "hour", 86_400: "day"}
DEFAULT_MAX_BYTES = 1024 * 1024
DEFINITION = ("@", "def ", "class ")
DOWNLOAD_TIMEOUT = 3600  # seconds to fill the Hub cache with a model's weights
JOB_PARAMS = ["path: str", "values: dict[str, Any]", "job_id: str", "callback: str | None"]


def job_signature(method: bool) -> Group:
    """The job worker's signature: what `jobs.OnModal` spawns it with."""
    params: list[Node] = ["self", *JOB_PARAMS] if method else list(JOB_PARAMS)
    return Group("async def job(", params, ") -> dict[str, Any]:", params=True)


def job_run(app: Node) -> Node:
    return call("await jobs.run", app, "path", "values", "job_id", "callback")


@dataclass(frozen=True)
class Module:
    """What the template places, in the order a reader meets it."""

    imports: list[str]
    settings: str  # constants, and the files the image carries
    image: str  # the image, the app, volumes
    classes: str  # declared request bodies
    create_app: str  # the app: guards, then one function per route
    modal: str  # the models, and the Modal function or classes that serve the app


def build_module(plan: Plan) -> Module:
    return _Builder(plan).build()


class _Builder:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        names = routes.Names()
        models = {"model": "model"} if plan.model is not None else {}
        for m in plan.models:  # `model` is the name of one model behind a web tier too
            models[m["name"]] = "model" if m["name"] == "model" else names.new(m["name"], "_model")
        tasks = {"model": plan.model["task"]} if plan.model is not None else {}
        tasks |= {m["name"]: m["config"]["task"] for m in plan.models}
        self.scope = routes.Scope(names, models, {}, tasks)
        configs = [plan.model] if plan.model is not None else [m["config"] for m in plan.models]
        # Volumes that hold a model's weights -> the module's name for each.
        volumes = sorted({c["volume"]["name"] for c in configs if c["volume"] is not None})
        self.weights = {
            v: names.new(v if v.lower().endswith("weights") else f"{v}_weights") for v in volumes
        }
        self.settings: list[list[str]] = []
        self.auth_assigned = False

    def constant(self, name: str, value: Node) -> None:
        self.settings.append(lines([f"{name} = ", value]))

    def build(self) -> Module:
        plan, scope = self.plan, self.scope
        self.constant("APP_NAME", literal(plan.app_name))
        self.constant("DESCRIPTION", literal(plan.description))
        if plan.model is not None:
            self.constant("MODEL_ID", literal(plan.model["id"]))
            if plan.model["resolved"]:
                note = "# The Hub's `main` when this module was built (`model.revision` unset)."
                self.settings.append([note])
            self.constant("MODEL_REVISION", literal(plan.model["revision"]))
        if plan.gpu is not None:
            self.constant("GPU", literal(plan.gpu))
        model_dir = plan.model["local_dir"] if plan.model is not None else None
        for item in plan.shipped_dirs + plan.shipped_files:
            if item["local"] == model_dir:
                name = "MODEL_DIR"
            else:
                stem = item["local"].rstrip("/").rsplit("/", 1)[-1].split(".")[0]
                kind = "_DIR" if item in plan.shipped_dirs else "_FILE"
                name = scope.names.new(stem.upper() + kind)
            scope.shipped[item["local"]] = name
            scope.use("files")
            self.constant(
                name,
                call("files.Shipped", "__file__", literal(item["local"]), literal(item["remote"])),
            )
        create_app = self.create_app()
        modal = self.modal()
        return Module(
            imports=self.imports(),
            settings=block(self.settings),
            image=self.image(),
            classes=block(scope.bodies, 2),
            create_app=create_app,
            modal=modal,
        )

    def imports(self) -> list[str]:
        uses = self.scope.uses
        out = []
        if "Iterator" in uses:
            out.append("from collections.abc import Iterator")
        typing = [n for n in ("Annotated", "Any", "Literal") if n in uses]
        if typing:
            out += from_import("typing", typing)
        if out:
            out.append("")
        # One block: to the project that keeps this module, endpointgen is an installed
        # package like fastapi, modal and pydantic.
        out += ["import modal", "from endpointgen import runtime"]
        out += from_import("endpointgen.runtime", [m for m in RUNTIME_MODULES if m in uses])
        fastapi = [n for n in (*FASTAPI_NAMES, "UploadFile") if n in uses or n == "FastAPI"]
        out += from_import("fastapi", fastapi)
        pydantic = [n for n in ("BaseModel", "Field") if n in uses]
        if pydantic:
            out += from_import("pydantic", pydantic)
        return out

    # --- the image and the app ---

    def image(self) -> str:
        plan = self.plan
        base = call("modal.Image.debian_slim", python_version=literal(plan.python_version))
        local: list[Node] = []
        dirs = {d["local"] for d in plan.shipped_dirs}
        for path, name in self.scope.shipped.items():
            method = ".add_local_dir" if path in dirs else ".add_local_file"
            local.append(call(method, f"{name}.local", f"{name}.remote"))
        # The runtime only: the compiler, gitops and the CLI stay where the module is built.
        source = call(
            ".add_local_python_source", literal("endpointgen"), ignore="runtime.not_shipped"
        )
        local.append(source)
        env = [call(".env", literal(plan.env))] if plan.env else []
        # Each step installs the spec's packages and, pinned from the lock, all they pull in.
        pinned = call("runtime.locked", *map(literal, plan.packages))
        packages: list[Node] = [call(".uv_pip_install", pinned)]
        model_base: Node = base
        if plan.engine == "vllm":  # vLLM's own stack (torch, transformers, ...), locked apart
            lock = call("runtime.locked", *map(literal, plan.packages), lock=literal("vllm"))
            packages = [call(".entrypoint", "[]"), call(".uv_pip_install", lock)]
            python = literal(plan.python_version)
            model_base = call("modal.Image.from_registry", literal(CUDA_IMAGE), add_python=python)
        if plan.cpu_torch:  # torch first, from its CPU index; then the rest, torch included
            index = literal(CPU_TORCH_INDEX)
            packages.insert(0, call(".uv_pip_install", literal(TORCH), index_url=index))
        # The spec's own steps: Debian packages first, its commands once Python's are in.
        system: list[Node] = []
        if plan.system_packages:
            system = [call(".apt_install", *map(literal, plan.system_packages))]
        commands: list[Node] = []
        if plan.commands:
            commands = [call(".run_commands", *map(literal, plan.commands))]
        out = [chain("image", model_base, [*system, *packages, *commands, *env, *local])]
        if plan.models:
            note = "# The web tier needs no model packages: it calls the models' own containers."
            web = call(".uv_pip_install", call("runtime.locked", *map(literal, plan.web_packages)))
            steps = [*system, web, *commands, *env, *local]
            out.append([note, *chain("web_image", base, steps)])
        if plan.hf_cache:
            note = "# Hub downloads are kept on a Volume, so new containers skip them."
            volume = call(
                "modal.Volume.from_name", literal(plan.hf_cache_volume), create_if_missing="True"
            )
            out.append([note, *lines(["hf_cache = ", volume])])
        if plan.engine == "vllm":
            note = "# vLLM's compiled kernels and CUDA graphs, kept for later cold starts."
            volume = call(
                "modal.Volume.from_name", literal(VLLM_CACHE_VOLUME), create_if_missing="True"
            )
            out.append([note, *lines(["vllm_cache = ", volume])])
        for name, variable in self.weights.items():
            note = "# The model's weights, on a Volume: mounted read-only, nothing can change them."
            volume = call("modal.Volume.from_name", literal(name))
            out.append(
                [note, *lines([f"{variable} = ", volume, ".with_mount_options(read_only=True)"])]
            )
        out.append(["app = modal.App(APP_NAME, image=image)"])
        note = "# The runtime the image carries must be the one that built this module."
        out.append([note, *lines(call("runtime.require", literal(plan.version)))])
        return block(out)

    # --- create_app ---

    def create_app(self) -> str:
        plan, scope = self.plan, self.scope
        scope.use("http")
        options: routes.Options = {}
        if plan.cors is not None:
            keys = ("origins", "methods", "headers", "credentials", "max_age")
            cors = {key: literal(plan.cors[key]) for key in keys}
            options["cors"] = call("http.Cors", **cors)
        if plan.errors:
            mapped = {k: (v["status"], v["message"]) for k, v in plan.errors.items()}
            options["errors"] = literal(mapped)
        prefixes = [r["path"] for r in plan.routes if r["action"] == "openai"]
        if prefixes:
            scope.use("openai")
            formats: list[Node] = [f"{literal(p)}: openai.ERRORS" for p in prefixes]
            options["formats"] = collection("{", formats, "}")
        if plan.metrics is not None:
            options["metrics"] = "True"
        if plan.tracing:
            options["tracing"] = "True"
        if plan.docs == "auth":
            options["docs"] = self.require_auth()
        elif plan.docs == "off":
            options["docs"] = literal("off")
        scope.assign("web", call("http.app", "APP_NAME", "DESCRIPTION", **options))
        guards = self.guards()
        if plan.jobs is not None:
            scope.assign("app_jobs", self.jobs(plan.jobs))
        functions = []
        for route, dependencies in zip(plan.routes, guards, strict=True):
            name = scope.names.new(routes.function_name(route, plan.routes))
            found: routes.Options = {}
            if dependencies == ["guards"]:
                found["dependencies"] = "guards"
            elif dependencies:
                found["dependencies"] = call("http.guards", *dependencies)
            functions.append(routes.write(scope, route, name, found))
        if plan.metrics is not None:
            functions.append(self.metrics_route())
        params: list[Node] = [f"{name}: tasks.Model" for name in scope.models.values()]
        if params:
            scope.use("tasks")
        head = lines([Group("def create_app(", params, ") -> FastAPI:", params=True)])
        doc = '    """The FastAPI app; Modal serves it, and so can any ASGI server."""'
        body = [block(scope.setup), "", block(functions, 1), "", "    return web"]
        return "\n".join([*head, doc, *body])

    def jobs(self, settings: dict[str, Any]) -> Node:
        """The app's job routes: run by the job worker on Modal, in this process elsewhere."""
        self.scope.use("jobs")
        options: dict[str, Node] = {"worker": f"lambda: {self.job_worker()}"}
        callbacks = settings["callbacks"]
        if callbacks is not None:
            extra: dict[str, Node] = {}
            if callbacks["env"] != "JOB_CALLBACK_SECRET":
                extra["env"] = literal(callbacks["env"])
            if callbacks["private"]:
                extra["private"] = "True"
            hosts = literal(tuple(h.lower() for h in callbacks["hosts"]))
            options["callbacks"] = call("jobs.Callbacks", hosts, **extra)
        if settings["concurrency"] != 4:
            options["concurrency"] = literal(settings["concurrency"])
        if settings["queue"] != 256:
            options["queue"] = literal(settings["queue"])
        if settings["queue_mib"] != 256:
            options["queue_bytes"] = f"{literal(settings['queue_mib'])} * 1024 * 1024"
        return call("jobs.Jobs", "APP_NAME", **options)

    def job_worker(self) -> str:
        """What runs a job on Modal: the model's class, or a class of its own on CPU."""
        return "Server().job" if self.plan.model is not None else "JobRunner().job"

    def guards(self) -> list[list[str]]:
        """Each route's guards, in the order they run; the commonest list is `guards`.

        A limit by client address counts before auth, so guessing keys is throttled too;
        a limit by credential counts after auth has found it. A route lists its guards in
        `dependencies=http.guards(...)`, where a reader looks; the runtime's route class
        runs them itself, in order, before the body is read (`http.GuardedRoute`).
        """
        plan, scope = self.plan, self.scope
        guarded_metrics = plan.metrics is not None and plan.metrics["auth"]
        if any(r["auth"] != "none" for r in plan.routes) or guarded_metrics:
            self.require_auth()
        limits: dict[str, str] = {}
        for route in plan.routes:
            rule = route["rate_limit"]
            if rule is not None and rule["scope"] not in limits:
                scope.use("limits")
                app_wide = rule["scope"] == "app"
                name = "limit" if app_wide else scope.names.new(f"limit_{rule['scope']}")
                limits[rule["scope"]] = name
                scope.assign(name, self.rate_limit(rule))
        out = []
        for route in plan.routes:
            rule = route["rate_limit"]
            found = []
            if rule is not None and rule["key"] == "ip":
                found.append(limits[rule["scope"]])
            if route["auth"] != "none":
                found.append("require_auth")
            if rule is not None and rule["key"] == "api_key":
                found.append(limits[rule["scope"]])
            if route["max_bytes"] != DEFAULT_MAX_BYTES:
                found.append(f"http.MaxBytes({literal(route['max_bytes'])})")
            if route["model"] is not None and route["action"] != "health":
                found.append(f"{scope.models[route['model']]}.ready")
            out.append(found)
        shared = Counter(tuple(found) for found in out if len(found) > 1).most_common(1)
        if shared and shared[0][1] > 1:
            common = list(shared[0][0])
            scope.assign("guards", call("http.guards", *common))
            out = [["guards"] if found == common else found for found in out]
        return out

    def require_auth(self) -> str:
        """`require_auth`, the app's auth check, assigned where it is first needed."""
        if not self.auth_assigned:
            self.auth_assigned = True
            self.scope.use("auth")
            self.scope.assign("require_auth", self.auth())
        return "require_auth"

    def metrics_route(self) -> list[str]:
        """GET /metrics: Prometheus' text format, behind the app's auth unless public;
        no rate limit (a scraper calls every few seconds) and not in /openapi.json."""
        scope = self.scope
        scope.use("metrics")
        options: routes.Options = {"include_in_schema": "False"}
        if self.plan.metrics and self.plan.metrics["auth"]:
            options = {"dependencies": call("http.guards", "require_auth"), **options}
        name = scope.names.new("prometheus")
        route = {"method": "GET", "path": "/metrics"}
        return routes.decorator(route, options) + routes.define(
            name, [], "http.Response", ["return metrics.exposition()"]
        )

    def auth(self) -> Group:
        auth = self.plan.auth
        options: routes.Options = {"env": literal(auth["env"])}
        if auth["mode"] == "api_key":
            options["header"] = literal(auth["header"])
        if auth["mode"] == "jwt":
            for key in ("algorithm", "audience", "issuer", "leeway"):
                options[key] = literal(auth[key])
        return call(f"auth.{auth['mode']}", **options)

    def rate_limit(self, rule: dict[str, Any]) -> Group:
        rate = f"{rule['limit']}/{UNITS[rule['seconds']]}"
        options: routes.Options = {"key": literal(rule["key"])}
        if rule["storage"] != "memory":
            options |= {"storage": literal(rule["storage"]), "app": "APP_NAME"}
            if rule["scope"] != "app":
                options["scope"] = literal(rule["scope"])
        if rule["storage"] == "redis":
            options["url_env"] = literal(rule["url_env"])
        return call("limits.RateLimit", literal(rate), **options)

    # --- Modal ---

    def modal(self) -> str:
        plan, scope = self.plan, self.scope
        out: list[list[str]] = []
        secrets = self.secrets(plan.secrets)
        volumes: dict[str, Node] = {
            v["mount"]: call("modal.Volume.from_name", literal(v["name"])) for v in plan.volumes
        }
        if plan.model is not None:
            volumes |= self.weights_volume(plan.model)
        proxy = "requires_proxy_auth=True" if plan.auth["mode"] == "proxy" else ""
        if plan.model is not None:
            out.append(lines(["model = ", self.model(plan.model)]))
            options = self.options(plan, secrets, volumes, plan.hf_cache)
            if plan.jobs is not None:  # the class's `job` method runs as long as a job may
                options["timeout"] = literal(max(plan.timeout or 0, plan.jobs["timeout"]))
            options |= snapshot_options(plan.snapshot)
            jobs = plan.jobs is not None
            api = ["        self.api = create_app(model)"] if jobs else []
            out.append(
                [
                    *lines(["@", call("app.cls", **options)]),
                    *concurrent(plan),
                    "class Server:",
                    *lifecycle("model", plan.snapshot, api),
                    "",
                    f"    @modal.asgi_app({proxy})",
                    "    def web(self) -> FastAPI:",
                    "        return self.api" if jobs else "        return create_app(model)",
                    *self.job_method(),
                ]
            )
            out.append(self.download())
            return toplevel([part for part in out if part])
        served: list[Node] = []
        for m in plan.models:
            out.append(lines([f"{scope.models[m['name']]} = ", self.model(m["config"])]))
        streams = any(m["config"]["task"] in GENERATIVE for m in plan.models)
        if streams:
            note = "# A stream whose client went away is stopped in the model's own container."
            out.append([note, "cancels = remote.Cancels(APP_NAME)"])
        for m in plan.models:
            out.append(self.model_class(m, self.secrets(plan.model_secrets)))
            text = m["config"]["task"] in GENERATIVE
            cancels = ["cancels"] if text else []
            served.append(call("remote.serve", scope.models[m["name"]], m["class_name"], *cancels))
        if plan.models:
            scope.use("remote")
        options = self.options(plan, secrets, volumes, hf=False)
        if plan.models:
            options = {"image": "web_image", **options}
        out.append(
            [
                *lines(["@", call("app.function", **options)]),
                *concurrent(plan),
                f"@modal.asgi_app({proxy})",
                "def web() -> FastAPI:",
                *lines(["return ", call("create_app", *served)], 4),
            ]
        )
        if plan.jobs is not None:
            options["timeout"] = literal(plan.jobs["timeout"])
            self.scope.use("Any", "jobs")
            out.append(
                [
                    *lines(["@", call("app.cls", **options)]),
                    *concurrent(plan),
                    "class JobRunner:",
                    '    """Runs each job of the job routes, for up to `jobs.timeout` seconds."""',
                    "",
                    "    @modal.enter()",
                    "    def start(self) -> None:",
                    *lines(["self.api = ", call("create_app", *served)], 8),
                    "",
                    "    @modal.method()",
                    *lines(job_signature(method=True), 4),
                    *lines(["return ", job_run("self.api")], 8),
                ]
            )
        out.append(self.download())
        return toplevel([part for part in out if part])

    def download(self) -> list[str]:
        """A function that fills the Hub cache Volume before the first cold start."""
        plan = self.plan
        configs = [plan.model] if plan.model is not None else [m["config"] for m in plan.models]
        names = [
            self.scope.models[name]
            for name, config in zip(self.scope.models, configs, strict=True)
            if config["local_dir"] is None and config["volume"] is None
        ]
        if not names:
            return []
        options: dict[str, Node] = {"volumes": f"{{{literal(HF_CACHE_DIR)}: hf_cache}}"}
        if plan.model_secrets:
            options["secrets"] = self.secrets(plan.model_secrets) or "[]"
        options["timeout"] = literal(DOWNLOAD_TIMEOUT)
        return [
            *lines(["@", call("app.function", **options)]),
            "def download() -> None:",
            '    """Fill the Hub cache Volume ahead of the first cold start:',
            f"    `modal run {plan.module}.py::download` (`endpointgen deploy --warm-cache`).",
            '    """',
            *[f"    {name}.download()" for name in names],
        ]

    def job_method(self) -> list[str]:
        """The model class's `job` method: one job of a job route, with the model loaded."""
        if self.plan.jobs is None:
            return []
        self.scope.use("Any", "jobs")
        return [
            "",
            "    @modal.method()",
            *lines(job_signature(method=True), 4),
            *lines(["return ", job_run("self.api")], 8),
        ]

    def weights_volume(self, config: dict[str, Any]) -> dict[str, Node]:
        """Where a model's weights Volume is mounted, and the module's name for it."""
        volume = config["volume"]
        return {} if volume is None else {volume["mount"]: self.weights[volume["name"]]}

    def secrets(self, names: list[str]) -> Node | None:
        """The Secrets, each with the keys the app reads from it."""
        if not names:
            return None
        made: list[Node] = []
        # The spec's own first, then those the app reads a key from; each group sorted.
        for name in sorted(names, key=lambda n: (bool(self.plan.secret_keys.get(n)), n)):
            keys = self.plan.secret_keys.get(name, [])
            required = {"required_keys": literal(keys)} if keys else {}
            made.append(call("modal.Secret.from_name", literal(name), **required))
        return collection("[", made, "]")

    def model_class(self, named: dict[str, Any], secrets: Node | None) -> list[str]:
        """One model's own Modal class, which the web tier calls."""
        self.scope.use("Any")
        model = self.scope.models[named["name"]]
        weights = self.weights_volume(named["config"])
        options = self.options(named, secrets, weights, self.plan.hf_cache)
        options |= snapshot_options(named["snapshot"])
        out = [
            *lines(["@", call("app.cls", **options)]),
            *concurrent(named),
            f"class {named['class_name']}:",
            f'    """{self.class_doc(named)}"""',
            "",
            *lifecycle(model, named["snapshot"]),
            "",
            "    @modal.method()",
            "    def call(self, method: str, *args: Any) -> Any:",
            f"        return {model}.call(method, *args)",
        ]
        if named["config"]["task"] in GENERATIVE:
            self.scope.use("Iterator")
            tokens = Group(
                "def tokens(",
                ["self", "request: tasks.Asked", "request_id: str"],
                ") -> Iterator[tuple[str, Any]]:",
            )
            out += ["", "    @modal.method()", *lines(tokens, 4)]
            out.append(f"        yield from {model}.tokens(request, cancels.watch(request_id))")
        return out

    def class_doc(self, named: dict[str, Any]) -> str:
        if len(self.plan.models) == 1:
            return "The model, on its GPU; the CPU web tier (`web`) calls it."
        return f"The model `{named['name']}`, on its own GPU type; the web tier calls it."

    def options(
        self, settings: Any, secrets: Node | None, volumes: dict[str, Node], hf: bool
    ) -> dict[str, Node]:
        """`@app.cls`/`@app.function` options: the app's (the plan) or one model's (a dict)."""
        found = settings if isinstance(settings, dict) else vars(settings)
        options: dict[str, Node] = {}
        if found["gpu"] is not None:
            options["gpu"] = "GPU" if settings is self.plan else literal(found["gpu"])
        for key in ("cpu", "memory", "timeout", "startup_timeout"):
            if found[key]:
                options[key] = literal(found[key])
        if secrets is not None:
            options["secrets"] = secrets
        mounts: list[Node] = [[literal(k), ": ", v] for k, v in volumes.items()]
        if hf:
            mounts.append(f"{literal(HF_CACHE_DIR)}: hf_cache")
        if self.runs_vllm(settings):
            mounts.append(f"{literal(VLLM_CACHE_DIR)}: vllm_cache")
        if mounts:
            options["volumes"] = collection("{", mounts, "}")
        autoscaling: dict[str, int] = found["autoscaling"]
        options |= {key: literal(value) for key, value in autoscaling.items()}
        if self.plan.region is not None:
            options["region"] = literal(self.plan.region)
        return options

    def runs_vllm(self, settings: Any) -> bool:
        """Whether the class these options are for runs a vLLM engine."""
        if settings is self.plan:  # the app's own function or class: Server, or web
            return self.plan.model is not None and self.plan.model["engine"] == "vllm"
        return isinstance(settings, dict) and settings["config"]["engine"] == "vllm"

    def model(self, config: dict[str, Any]) -> Group:
        """A `tasks.Model`: what to load, and how (the loading is in `@modal.enter`)."""
        self.scope.use("tasks")
        single = config is self.plan.model
        options: dict[str, Node] = {}
        if single:
            options["revision"] = "MODEL_REVISION"
        elif config["revision"] is not None:
            options["revision"] = literal(config["revision"])
        if config["dtype"] != "auto":
            options["dtype"] = literal(config["dtype"])
        if config["local_dir"] is not None:
            options["path"] = f"{self.scope.shipped[config['local_dir']]}.path"
        if config["volume"] is not None:  # mounted read-only where the class runs
            options["path"] = literal(config["volume"]["folder"])
        if config["batching"]:
            batching = config["batching"]
            sizes = (literal(batching["max_batch_size"]), literal(batching["wait_ms"]))
            options["batching"] = call("tasks.Batching", *sizes)
        if config["engine"] == "vllm":
            vllm = {key: literal(value) for key, value in config["vllm"].items()}
            options["engine"] = call("tasks.Vllm", **vllm)
        loader = config["loader"]
        if loader:
            file = self.scope.shipped[loader["local"]]
            ref = (f"{file}.path", literal(loader["function"]), literal(loader["shown"]))
            engine = {"text_engine": "True"} if loader["text_engine"] else {}
            options["loader"] = call("tasks.Loader", *ref, **engine)
        model_id = "MODEL_ID" if single else literal(config["id"])
        return call("tasks.Model", model_id, literal(config["task"]), **options)


def from_import(module: str, names: Sequence[str]) -> list[str]:
    """`from module import a, b`: one line when it fits, else one name per line."""
    line = f"from {module} import {', '.join(names)}"
    if width(line) <= WIDTH:
        return [line]
    return [f"from {module} import (", *[f"    {name}," for name in names], ")"]


def snapshot_options(snapshot: str) -> dict[str, Node]:
    """A class started from Modal's memory snapshot (and, for `gpu`, its GPU snapshot)."""
    if snapshot == "off":
        return {}
    options: dict[str, Node] = {"enable_memory_snapshot": "True"}
    if snapshot == "gpu":
        options["experimental_options"] = literal({"enable_gpu_snapshot": True})
    return options


def lifecycle(model: str, snapshot: str, then: Sequence[str] = ()) -> list[str]:
    """A model class's `@modal.enter` and `@modal.exit` methods. With a memory snapshot
    the weights load on the CPU before it, and move to the GPU after each restore."""
    if snapshot == "memory":
        enter = [
            "    @modal.enter(snap=True)",
            "    def load(self) -> None:",
            f"        {model}.load(snapshot=True)",
            "",
            "    @modal.enter(snap=False)",
            "    def start(self) -> None:",
            f"        {model}.start()",
        ]
    elif snapshot == "gpu":
        enter = [
            "    @modal.enter(snap=True)",
            "    def load(self) -> None:",
            f"        {model}.load()",
        ]
    else:
        enter = ["    @modal.enter()", "    def load(self) -> None:", f"        {model}.load()"]
    return [
        *enter,
        *then,
        "",
        "    @modal.exit()",
        "    def stop(self) -> None:",
        f"        {model}.close()",
    ]


def concurrent(settings: Any) -> list[str]:
    found = settings if isinstance(settings, dict) else vars(settings)
    if not found["max_inputs"]:
        return []
    target = found["target_inputs"]
    extra = f", target_inputs={target}" if target else ""
    return [f"@modal.concurrent(max_inputs={found['max_inputs']}{extra})"]


def toplevel(statements: list[list[str]]) -> str:
    """Top-level statements: two blank lines around definitions, one between the rest."""
    out: list[str] = []
    previous = False
    for statement in statements:
        definition = statement[0].startswith(DEFINITION)
        if out:
            out += [""] * (2 if definition or previous else 1)
        out += statement
        previous = definition
    return "\n".join(out)


def chain(name: str, base: Node, steps: list[Node]) -> list[str]:
    """`name = base.step().step()`: on one line when it fits, else as ruff chains it."""
    one = f"{name} = {flat(base)}" + "".join(flat(step) for step in steps)
    if width(one) <= WIDTH:
        return [one]
    out = [f"{name} = (", *lines(base, 4)]
    for step in steps:
        out += lines(step, 4)
    return [*out, ")"]
