"""The resolved, defaulted view of a spec: everything the template places, computed here."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypedDict

from endpointgen import __version__
from endpointgen.compiler import shapes
from endpointgen.compiler.checks import (
    effective_rate_limit,
    local_model_dir,
    route_auth,
)
from endpointgen.compiler.loader import Document
from endpointgen.compiler.resolved import (
    AuthPlan,
    BatchPlan,
    CallbacksPlan,
    CorsPlan,
    ErrorPlan,
    FieldPlan,
    FilePlan,
    GeneratePlan,
    HandlerPlan,
    HealthPlan,
    ImagePlan,
    JobPlan,
    JobsPlan,
    Loader,
    MetricsPlan,
    ModelConfig,
    ModelDeployment,
    OpenAIPlan,
    RateRule,
    RespondPlan,
    RoutePlan,
    Shipped,
    Signature,
    SocketPlan,
    UploadPlan,
    VllmOption,
    VolumeMount,
    WebhookPlan,
    WebhookRule,
    WeightsVolume,
)
from endpointgen.compiler.resolved import Batching as BatchingPlan
from endpointgen.compiler.route_checks import socket_lifetime, socket_tickets
from endpointgen.compiler.shapes import relative
from endpointgen.errors import Problem
from endpointgen.runtime import defaults, image_lock
from endpointgen.spec import (
    Batching,
    ClassifyRoute,
    EmbedRoute,
    FileRoute,
    GenerateRoute,
    HandlerRoute,
    Model,
    OpenAIRoute,
    RateLimit,
    RerankRoute,
    RespondRoute,
    Route,
    Scaling,
    Spec,
    UploadRoute,
    WebhookRoute,
)
from endpointgen.spec.gpu import split as split_gpu
from endpointgen.spec.models import NamedModel, Vllm, job_of, socket_of

# Packages the generated app installs in its Modal image. Pinned to the versions the
# test suite runs the generated code against, so a deploy runs what was tested.
WEB_PACKAGES = ("fastapi[standard]==0.165.0", "pydantic==2.14.4")
TORCH = "torch==2.13.0"
MODEL_PACKAGES = (TORCH, "transformers==5.24.0")
DIFFUSERS = "diffusers==0.42.1"  # text-to-image, in the model's container only
# `engine: vllm`: vLLM brings torch and transformers at its own pins, and allows only
# fastapi[standard] >=0.133,<0.137 (what `pip install vllm==0.33.0` resolves).
VLLM_PACKAGES = ("vllm==0.33.0",)
VLLM_WEB_PACKAGES = ("fastapi[standard]==0.136.3", "pydantic==2.14.4")
DEFAULT_VLLM_INPUTS = 64  # requests a vLLM container takes at once, for its scheduler
# vLLM's wheels are built against CUDA and compile kernels as they start: the image starts
# from NVIDIA's CUDA development image, as Modal's vLLM example does, and vLLM's compile
# cache is kept on a Volume, so later cold starts reuse what the first one compiled.
CUDA_IMAGE = "nvidia/cuda:13.0.0-devel-ubuntu22.04"  # vLLM's lock pins CUDA 13 wheels
VLLM_CACHE_VOLUME = "endpointgen-vllm-cache"
VLLM_CACHE_DIR = "/root/.cache/vllm"
# Where a model that runs on no GPU gets torch: the CPU build, not the CUDA stack.
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
# Installed only when a spec uses the feature that needs them.
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {
    "multi-gpu": ("accelerate==1.15.0",),  # device_map="auto": one model across the GPUs
    "redis": ("redis==8.1.0",),
    "jwt": ("pyjwt[crypto]==2.15.1",),
    "image-classification": ("pillow==13.0.0",),
    "image-text-embeddings": ("pillow==13.0.0",),
    "object-detection": ("pillow==13.0.0",),
    "automatic-speech-recognition": ("scipy==1.17.1", "soundfile==0.14.0"),
    "text-to-image": (DIFFUSERS, "pillow==13.0.0"),
    "metrics": ("prometheus-client==0.26.0",),
    "tracing": (
        "opentelemetry-exporter-otlp-proto-http==1.45.2",
        "opentelemetry-instrumentation-fastapi==0.66b2",
        "opentelemetry-sdk==1.45.2",
    ),
}
PYTHON_VERSION = "3.11"

# Defaults for the route-level limits, applied before any model work: the runtime's own
# (`runtime/defaults.py`, the one table of them).
DEFAULT_MAX_TOKENS = defaults.MAX_TOKENS
DEFAULT_MAX_CHARS = defaults.MAX_CHARS
DEFAULT_MAX_ITEMS = defaults.MAX_ITEMS
DEFAULT_MAX_BYTES = defaults.MAX_BYTES
DEFAULT_MAX_PIXELS = defaults.DRAWN_PIXELS  # text-to-image: width x height
DEFAULT_MAX_STEPS = defaults.DRAWN_STEPS
DEFAULT_WEBHOOK_TOLERANCE = defaults.WEBHOOK_TOLERANCE
DEFAULT_IDLE_TIMEOUT = defaults.SOCKET_IDLE  # seconds a WebSocket may sit idle

# Tasks that generate text token by token: `generate` routes, streaming, one at a time
# unless batched.
GENERATIVE = ("text-generation", "text2text-generation")
DEFAULT_WEB_INPUTS = 100  # concurrent requests per container of an app with no model
# A model that does not batch answers one call at a time (its engine holds a lock). Its
# container still takes several requests at once, so a 401, a 429, a /health probe or a
# request waiting its turn never needs a container of its own; the autoscaler aims for
# fewer, and adds containers rather than queueing long calls behind each other.
LONG_CALLS = (*GENERATIVE, "text-to-image", "automatic-speech-recognition")
LONG_CALL_INPUTS = (8, 1)  # (max_inputs, target_inputs): seconds per call
SHORT_CALL_INPUTS = (16, 4)  # a forward pass of milliseconds: a few may wait their turn
DEFAULT_MODEL_STARTUP = 600  # seconds for a model container to download and load weights
HF_CACHE_VOLUME = "endpointgen-hf-cache"
HF_CACHE_DIR = "/hf-cache"
MODEL_REMOTE_DIR = "/model"

# Modules a built module's container can import: the packages its image installs and
# Modal's own client (from the lock, `make lock`), and endpointgen. In a container the
# module sits first on sys.path, so an app named like one of them would shadow it.
_IMPORTED = image_lock("tested").modules | image_lock("vllm").modules | {"endpointgen"}


@dataclass(frozen=True)
class Plan:
    module: str
    app_name: str
    description: str
    source: str  # the spec, relative to the output folder, for the header
    version: str
    gpu: str | list[str] | None
    region: str | list[str] | None
    cpu: float | None
    memory: int | None
    timeout: int | None
    autoscaling: dict[str, int]
    max_inputs: int | None
    target_inputs: int | None
    startup_timeout: int | None
    secrets: list[str]
    # Each Secret with the env vars the app reads from it: Modal refuses a deploy whose
    # Secret lacks one, instead of an app that refuses every caller.
    secret_keys: dict[str, list[str]]
    # With several models, the model classes get only the spec's own `secrets:` (a Hub
    # token, say); auth, webhook and rate-limit secrets stay in the web tier.
    model_secrets: list[str]
    env: dict[str, str]
    packages: list[str]
    model: ModelConfig | None
    models: list[ModelDeployment]
    hf_cache: bool
    engine: str  # what runs the models: transformers, or vllm
    auth: AuthPlan
    cors: CorsPlan | None
    routes: list[RoutePlan]
    metrics: MetricsPlan | None = None  # /metrics: None when off
    # /docs, /redoc, /openapi.json: "auth" (the app's auth guards them), "public" or "off".
    docs: str = "public"
    tracing: bool = False  # OpenTelemetry spans for every request
    # Job routes' settings (`jobs:`): None when no route is a job.
    jobs: JobsPlan | None = None
    shipped_files: list[Shipped] = field(default_factory=list)
    shipped_dirs: list[Shipped] = field(default_factory=list)
    volumes: list[VolumeMount] = field(default_factory=list)
    errors: dict[str, ErrorPlan] = field(default_factory=dict)
    python_version: str = PYTHON_VERSION
    system_packages: list[str] = field(default_factory=list)  # apt, before pip
    commands: list[str] = field(default_factory=list)  # run after the packages install
    hf_cache_volume: str = HF_CACHE_VOLUME
    hf_cache_dir: str = HF_CACHE_DIR
    snapshot: str = "off"  # the single model's container: off, memory or gpu

    @property
    def cpu_torch(self) -> bool:
        """A model app on no GPU at all: its image takes torch's CPU build."""
        gpus = [self.gpu] if self.model is not None else [m.gpu for m in self.models]
        return bool(gpus) and all(gpu is None for gpu in gpus)

    @property
    def web_packages(self) -> list[str]:
        """With several models, what the CPU web tier installs: all but the model stack
        (and, in front of vLLM, the web packages the tests ran, not vLLM's)."""
        stack = {*MODEL_PACKAGES, DIFFUSERS, *VLLM_PACKAGES, *VLLM_WEB_PACKAGES} - {*WEB_PACKAGES}
        web = WEB_PACKAGES if self.engine == "vllm" else ()
        return sorted({*web, *(p for p in self.packages if p not in stack)})


def name_problems(spec: Spec, doc: Document) -> list[Problem]:
    """A module named like a Python module the app imports would shadow it at deploy."""
    module = spec.module_name
    if module in sys.stdlib_module_names or module in _IMPORTED:
        message = f"'{spec.name}' would make a module that shadows Python's `{module}`"
        return [doc.problem(("name",), message + "; choose another name")]
    return []


def make_plan(
    spec: Spec,
    spec_file: str | Path,
    out_dir: str | Path,
    resolved: dict[str, str] | None = None,
) -> Plan:
    """The plan of `spec`; `resolved` maps Hub model ids without a `revision` to the
    commit their `main` had when the module was built (`endpointgen deploy` pins it)."""
    out = Path(out_dir)
    spec_path = Path(spec_file)
    shipped = shapes.ShippedFiles(spec_path.parent, out)
    routes = [_route(spec, i, r, shipped) for i, r in enumerate(spec.routes)]
    model = None
    named = dict(spec.models)
    split = spec.serving_shape == "split" and spec.model is not None
    # A loader's object behind generate/openai routes must be a text engine: checked at load.
    texts = {r.model for r in routes if r.action in ("generate", "openai")}
    if spec.model is not None and split:
        # One model behind a CPU web tier: the model's settings go to its own class.
        named[SINGLE_MODEL] = NamedModel(
            **spec.model.model_dump(),
            gpu=spec.gpu,
            resources=spec.resources,
            scaling=spec.scaling,
            batching=spec.batching,
            snapshot=spec.snapshot,
        )
    elif spec.model is not None:
        model = model_config(
            spec.model,
            spec.batching,
            spec_path.parent,
            out,
            shipped,
            scaling=spec.scaling,
            resolved=resolved,
            text_engine=SINGLE_MODEL in texts,
        )
        if model.local_dir is not None:
            shipped.dirs.insert(0, Shipped(model.local_dir, MODEL_REMOTE_DIR))
    job_routes = any(job_of(r) for r in spec.routes)
    jobs = _jobs(spec) if job_routes else None
    models = [
        _named_model(name, m, spec_path.parent, out, shipped, resolved, name in texts, jobs)
        for name, m in named.items()
    ]
    configs = [model] if model else [m.config for m in models]
    auth = auth_settings(spec)
    secret_keys = _secret_keys(spec, auth)
    # With several models, the top-level scaling is the web tier's: it runs no model.
    web = Scaling() if split else spec.scaling  # split: Modal's defaults for the CPU tier
    single = spec.model if spec.model and not split else None
    concurrency = _concurrency(web, single, spec.batching)
    if split:
        models[0] = replace(models[0], class_name="Inference")
    secrets = sorted(secret_keys)
    env = dict(sorted(spec.env.items()))
    hf_cache = any(c.local_dir is None and c.volume is None for c in configs)
    if hf_cache:
        env.setdefault("HF_HOME", HF_CACHE_DIR)
        env.setdefault("HF_XET_HIGH_PERFORMANCE", "1")  # faster first downloads
        env = dict(sorted(env.items()))
    engine = "vllm" if any(c.engine == "vllm" for c in configs) else "transformers"
    stack = (VLLM_PACKAGES if engine == "vllm" else MODEL_PACKAGES) if configs else ()
    packages = sorted(
        set(
            (VLLM_WEB_PACKAGES if engine == "vllm" else WEB_PACKAGES)
            + stack
            + tuple(_extra_packages(spec, routes))
            + tuple(spec.packages)
        )
    )
    return Plan(
        module=spec.module_name,
        app_name=spec.name,
        description=spec.description,
        source=relative(spec_path, out),
        version=__version__,
        gpu=None if split else _gpu(spec.gpu),
        region=_region(spec.region),
        cpu=None if split else spec.resources.cpu,
        memory=None if split else spec.resources.memory,
        timeout=spec.resources.timeout,
        autoscaling=_autoscaling(web),
        max_inputs=concurrency["max_inputs"],
        target_inputs=concurrency["target_inputs"],
        startup_timeout=None
        if split
        else _startup_timeout(spec.resources.startup_timeout, spec.model is not None),
        secrets=secrets,
        secret_keys=secret_keys,
        model_secrets=sorted(set(spec.secrets)),
        env=env,
        packages=packages,
        model=model,
        models=models,
        hf_cache=hf_cache,
        engine=engine,
        auth=auth,
        cors=_cors(spec),
        routes=routes,
        shipped_files=shipped.files,
        shipped_dirs=shipped.dirs,
        volumes=shapes.volumes(spec),
        errors=shapes.errors(spec),
        metrics=(
            MetricsPlan(auth=not spec.metrics.public and spec.auth.mode != "none")
            if spec.metrics.enabled
            else None
        ),
        docs="public" if spec.docs == "auth" and spec.auth.mode == "none" else spec.docs,
        tracing=spec.tracing.enabled,
        jobs=jobs,
        snapshot="off" if split else spec.snapshot,
        python_version=spec.image.python,
        system_packages=list(spec.image.system_packages),
        commands=list(spec.image.commands),
    )


def _jobs(spec: Spec) -> JobsPlan:
    jobs, callbacks = spec.jobs, spec.jobs.callbacks
    return JobsPlan(
        timeout=jobs.timeout,
        concurrency=jobs.concurrency,
        queue=jobs.queue,
        queue_mib=jobs.queue_mib,
        callbacks=CallbacksPlan(
            hosts=list(callbacks.hosts),
            secret=callbacks.secret,
            env=callbacks.env,
            private=callbacks.private,
        )
        if callbacks is not None
        else None,
    )


def model_config(
    model: Model,
    batching: Batching | None,
    spec_dir: Path,
    out: Path,
    shipped: shapes.ShippedFiles,
    remote_dir: str = MODEL_REMOTE_DIR,
    scaling: Scaling | None = None,
    resolved: dict[str, str] | None = None,
    text_engine: bool = False,
) -> ModelConfig:
    """What the app needs to load and run one model."""
    local = local_model_dir(model.id, spec_dir)
    scaling = scaling or Scaling()
    resolved = resolved or {}
    loader = None
    if model.loader:
        ref = shipped.handler(model.loader)
        loader = Loader(**vars(ref), text_engine=text_engine)
    return ModelConfig(
        id=model.id,
        task=model.task,
        revision=model.revision or resolved.get(model.id),
        resolved=model.revision is None and model.id in resolved,
        dtype=model.dtype,
        variant=model.variant,
        local_dir=relative(local, out) if local is not None else None,
        remote_dir=remote_dir,
        loader=loader,
        batching=BatchingPlan(batching.max_batch_size, batching.wait_ms) if batching else None,
        volume=_weights_volume(model),
        engine=model.engine,
        vllm=_vllm(model.vllm or Vllm(), scaling) if model.engine == "vllm" else None,
    )


def _vllm(options: Vllm, scaling: Scaling) -> dict[str, VllmOption]:
    """vLLM's options as the spec sets them; `enforce_eager` defaults to on for a model
    that scales to zero (its cold starts skip CUDA graph capture, as Modal's vLLM example
    does), off for one kept warm (`min_containers`), where graphs speed every token."""
    out: dict[str, VllmOption] = options.model_dump(exclude_defaults=True)
    if options.enforce_eager is None:
        out["enforce_eager"] = not scaling.min_containers
    return out


def _region(region: str | list[str] | None) -> str | list[str] | None:
    if isinstance(region, list):
        return region[0] if len(region) == 1 else list(region)
    return region


def _weights_volume(model: Model) -> WeightsVolume | None:
    """Where a model on a Volume is: the Volume, where it is mounted, the model's folder."""
    if model.volume is None:
        return None
    mount = f"{shapes.VOLUMES_DIR}/{model.volume}"
    folder = f"{mount}/{model.path}" if model.path else mount
    return WeightsVolume(model.volume, mount, folder)


def _named_model(
    name: str,
    model: NamedModel,
    spec_dir: Path,
    out: Path,
    shipped: shapes.ShippedFiles,
    resolved: dict[str, str] | None,
    text_engine: bool,
    jobs: JobsPlan | None,
) -> ModelDeployment:
    """One model of several: its config, and the Modal class that serves it."""
    remote = f"{MODEL_REMOTE_DIR}/{name}"
    config = model_config(
        model, model.batching, spec_dir, out, shipped, remote, model.scaling, resolved, text_engine
    )
    if config.local_dir is not None:
        shipped.dirs.append(Shipped(config.local_dir, remote))
    concurrency = _concurrency(model.scaling, model, model.batching)
    timeout = model.resources.timeout
    if jobs is not None:  # a job's model call may run as long as the job
        timeout = max(timeout or 0, jobs.timeout)
    return ModelDeployment(
        name=name,
        class_name="".join(part.capitalize() for part in name.split("_")) + "Model",
        config=config,
        gpu=_gpu(model.gpu),
        cpu=model.resources.cpu,
        memory=model.resources.memory,
        timeout=timeout,
        autoscaling=_autoscaling(model.scaling),
        max_inputs=concurrency["max_inputs"],
        target_inputs=concurrency["target_inputs"],
        startup_timeout=_startup_timeout(model.resources.startup_timeout, True),
        snapshot=model.snapshot,
    )


def _concurrency(
    scaling: Scaling, model: Model | None, batching: Batching | None = None
) -> dict[str, int | None]:
    """`@modal.concurrent` for a container: what the spec says, else a default that fits.

    An app without a model is async code that waits on I/O: many requests per container.
    A batching model takes as many requests as a batch holds: with Modal's default of one
    per container there would be nothing to batch. vLLM schedules its own batches: it
    takes DEFAULT_VLLM_INPUTS requests at once. Any other model answers one call at a
    time, and its container still takes several requests (LONG_CALL_INPUTS for
    generations, images and speech, SHORT_CALL_INPUTS for the rest), so cheap requests
    never wait for a container of their own; the autoscaler aims for fewer, adding
    containers rather than queueing model calls. A text or image generator given only
    `max_inputs` above 1 aims for 1, as before.
    """
    task = model.task if model is not None else None
    max_inputs, target = scaling.max_inputs, scaling.target_inputs
    if model is not None and model.engine == "vllm" and max_inputs is None:
        max_inputs = DEFAULT_VLLM_INPUTS
    if task is None and max_inputs is None:
        max_inputs = DEFAULT_WEB_INPUTS
    if task is not None and batching is not None and max_inputs is None:
        max_inputs = batching.max_batch_size
    one_at_a_time = batching is None and (model is None or model.engine != "vllm")
    if task is not None and one_at_a_time and max_inputs is None and target is None:
        max_inputs, target = LONG_CALL_INPUTS if task in LONG_CALLS else SHORT_CALL_INPUTS
    if (
        task in (*GENERATIVE, "text-to-image")
        and one_at_a_time
        and target is None
        and (max_inputs or 1) > 1
    ):
        target = 1
    return {"max_inputs": max_inputs, "target_inputs": target}


def _startup_timeout(given: int | None, loads_a_model: bool) -> int | None:
    """A container that loads a model gets its own time to start (download and load),
    apart from the per-request `timeout`."""
    return given if given is not None or not loads_a_model else DEFAULT_MODEL_STARTUP


def _gpu(names: list[str] | None) -> str | list[str] | None:
    if not names:
        return None
    return names[0] if len(names) == 1 else list(names)


def _autoscaling(scaling: Scaling) -> dict[str, int]:
    pairs = (
        ("min_containers", scaling.min_containers),
        ("max_containers", scaling.max_containers),
        ("buffer_containers", scaling.buffer_containers),
        ("scaledown_window", scaling.scaledown_window),
    )
    return {k: v for k, v in pairs if v is not None}


def _secret_keys(spec: Spec, auth: AuthPlan) -> dict[str, list[str]]:
    keys: dict[str, set[str]] = {name: set() for name in spec.secrets}
    if spec.auth.secret and auth.env:
        keys.setdefault(spec.auth.secret, set()).add(auth.env)
    for route in spec.routes:
        if isinstance(route, WebhookRoute) and route.secret and route.env:
            keys.setdefault(route.secret, set()).add(route.env)
    for limit in _rate_limits(spec):
        if limit.secret:
            keys.setdefault(limit.secret, set()).add(limit.url_env)
    callbacks = spec.jobs.callbacks
    if callbacks is not None and callbacks.secret:
        keys.setdefault(callbacks.secret, set()).add(callbacks.env)
    return {name: sorted(keys[name]) for name in sorted(keys)}


def _rate_limits(spec: Spec) -> list[RateLimit]:
    routes = [r.rate_limit for r in spec.routes if isinstance(r.rate_limit, RateLimit)]
    return ([spec.rate_limit] if spec.rate_limit else []) + routes


def auth_settings(spec: Spec) -> AuthPlan:
    """The auth mode with its defaults filled in: what the app checks, and where."""
    auth = spec.auth
    if auth.mode == "none":
        return AuthPlan(mode="none")
    default_env = {
        "jwt": "JWT_PUBLIC_KEY" if auth.algorithm == "RS256" else "JWT_SECRET",
        "proxy": "MODAL_PROXY_TOKENS",
    }
    env = auth.env or default_env.get(auth.mode, "API_KEYS")
    if auth.mode == "api_key":
        return AuthPlan(mode=auth.mode, env=env, header=auth.header)
    if auth.mode == "jwt":
        return AuthPlan(
            mode=auth.mode,
            env=env,
            algorithm=auth.algorithm,
            audience=auth.audience,
            issuer=auth.issuer,
            leeway=auth.leeway,
        )
    return AuthPlan(mode=auth.mode, env=env)


def _cors(spec: Spec) -> CorsPlan | None:
    cors = spec.cors
    if cors is None:
        return None
    headers = set(cors.headers or ["Content-Type", "X-Request-ID"])
    if spec.auth.mode == "api_key":
        headers.add(spec.auth.header)
    elif spec.auth.mode in ("bearer", "jwt"):
        headers.add("Authorization")
    # An `openai` route serves POST /v1/completions, POST /v1/chat/completions (and the
    # embeddings) and GET /v1/models, whatever its own `method`; a WebSocket route with
    # tickets, POST <path>/ticket.
    both = {r.path for r in spec.routes if r.action == "openai" or _ticketed(spec, r)}
    served = {m for r in spec.routes for m in (("GET", "POST") if r.path in both else (r.method,))}
    methods = cors.methods or sorted(served)
    return CorsPlan(
        origins=sorted(cors.origins),
        methods=sorted(set(methods)),
        headers=sorted(headers, key=str.lower),
        credentials=cors.credentials,
        max_age=cors.max_age,
        # Clients read these from cross-origin responses only when they are exposed.
        expose=[
            "RateLimit-Limit",
            "RateLimit-Remaining",
            "RateLimit-Reset",
            "Retry-After",
            "X-Request-ID",
            "X-Client-Request-ID",
        ],
    )


def _rate(limit: RateLimit | None, scope: str) -> RateRule | None:
    if limit is None:
        return None
    return RateRule(
        scope=scope,
        limit=limit.amount,
        seconds=limit.seconds,
        key=limit.key,
        storage=limit.storage,
        url_env=limit.url_env if limit.storage == "redis" else None,
    )


class RouteCommon(TypedDict):
    """What every route's plan holds (`RoutePlan`)."""

    path: str
    method: str
    action: str
    summary: str | None
    auth: str
    rate_limit: RateRule | None
    max_bytes: int
    model: str | None
    job: JobPlan | None
    params: list[FieldPlan]


def _route(spec: Spec, index: int, route: Route, shipped: shapes.ShippedFiles) -> RoutePlan:
    """The route's plan: its action's class, with every limit's default filled in."""
    limit = effective_rate_limit(spec, route)
    scope = "app" if limit is spec.rate_limit else f"route-{index}"
    job = job_of(route)
    common = RouteCommon(
        path=route.path,
        method=route.method,
        action=route.action,
        summary=route.summary,
        auth=route_auth(spec, route),
        rate_limit=_rate(limit, scope),
        max_bytes=route.max_bytes or DEFAULT_MAX_BYTES,
        model=model_of(spec, route),
        job=JobPlan(job.ttl) if job else None,
        params=shapes.params(route),
    )
    model = spec.model_for(route)
    if isinstance(route, GenerateRoute) and model is not None and model.task == "text-to-image":
        return ImagePlan(
            **common,
            max_chars=route.max_chars or DEFAULT_MAX_CHARS,
            max_image_pixels=route.image_pixels or DEFAULT_MAX_PIXELS,
            max_steps=route.max_steps or DEFAULT_MAX_STEPS,
        )
    if isinstance(route, GenerateRoute):
        return GeneratePlan(
            **common,
            stream=route.stream,
            max_tokens=route.max_tokens or DEFAULT_MAX_TOKENS,
            max_chars=route.max_chars or DEFAULT_MAX_CHARS,
            websocket=_socket(spec, route),
        )
    if isinstance(route, OpenAIRoute):
        return OpenAIPlan(
            **common,
            max_tokens=route.max_tokens or DEFAULT_MAX_TOKENS,
            max_chars=route.max_chars or DEFAULT_MAX_CHARS,
            max_items=route.max_items or DEFAULT_MAX_ITEMS,
        )
    if isinstance(route, ClassifyRoute | EmbedRoute | RerankRoute):
        return BatchPlan(
            **common,
            max_chars=route.max_chars or DEFAULT_MAX_CHARS,
            max_items=route.max_items or DEFAULT_MAX_ITEMS,
        )
    if isinstance(route, WebhookRoute):
        return WebhookPlan(**common, webhook=_webhook(route))
    if isinstance(route, RespondRoute):
        return RespondPlan(
            **common,
            request=shapes.request(route),
            response_type=route.response_type or "json",
            response=route.response,
            status=route.status or 200,
        )
    if isinstance(route, HandlerRoute):
        binary = route.response_type == "binary"
        return HandlerPlan(
            **common,
            request=shapes.request(route),
            response_type=route.response_type or "json",
            handler=shipped.handler(route.handler) if route.handler else None,
            media_type=(route.media_type or "application/octet-stream") if binary else None,
            websocket=_socket(spec, route),
        )
    if isinstance(route, UploadRoute):
        return UploadPlan(
            **common,
            upload=shapes.upload_settings(route),
            handler=shipped.handler(route.handler) if route.handler else None,
        )
    if isinstance(route, FileRoute):
        return FilePlan(**common, file=shapes.file_settings(route, shipped))
    return HealthPlan(**common)


def _ticketed(spec: Spec, route: Route) -> bool:
    return socket_of(route) is not None and socket_tickets(spec, route)


def _socket(spec: Spec, route: GenerateRoute | HandlerRoute) -> SocketPlan | None:
    socket = route.websocket
    if socket is None:
        return None
    return SocketPlan(
        idle_timeout=socket.idle_timeout or DEFAULT_IDLE_TIMEOUT,
        max_lifetime=socket_lifetime(spec, socket),
        ticket=socket_tickets(spec, route),
    )


SINGLE_MODEL = "model"  # the name of the one model of a spec with `model:`


def model_of(spec: Spec, route: Route) -> str | None:
    """The name of the model a route runs (or reports on), if any."""
    if spec.models:
        return route.model
    if spec.model is None:
        return None
    if route.action in ("webhook", "respond", "file"):
        return None
    if isinstance(route, UploadRoute) and route.processor == "csv":
        return None
    return SINGLE_MODEL


def _webhook(route: WebhookRoute) -> WebhookRule:
    signature = route.signature
    signed = None
    if route.provider == "generic" and signature is not None:
        timestamps = signature.timestamp_header
        signed = Signature(
            header=signature.header.lower(),
            algorithm=signature.algorithm,
            encoding=signature.encoding,
            prefix=signature.prefix,
            timestamp_header=timestamps.lower() if timestamps else None,
        )
    tolerance = route.tolerance or DEFAULT_WEBHOOK_TOLERANCE
    return WebhookRule(route.provider, route.env, tolerance, signed)


def _extra_packages(spec: Spec, routes: list[RoutePlan]) -> list[str]:
    """What the image installs besides fastapi, pydantic and the model stack."""
    needs = {r.rate_limit.storage for r in routes if r.rate_limit}
    if spec.metrics.enabled:
        needs.add("metrics")
    if spec.tracing.enabled:
        needs.add("tracing")
    needs |= {spec.auth.mode} | {m.task for m in spec.all_models}
    gpus = [*(spec.gpu or []), *(g for m in spec.models.values() for g in m.gpu or [])]
    on_transformers = any(m.engine == "transformers" for m in spec.all_models)
    if on_transformers and any(split_gpu(g)[1] > 1 for g in gpus):
        needs.add("multi-gpu")  # vLLM spans GPUs with its own tensor parallelism
    return [p for need in sorted(needs) for p in EXTRA_PACKAGES.get(need, ())]
