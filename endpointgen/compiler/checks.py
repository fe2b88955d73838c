"""Rules beyond the schema: the spec is well-formed, but would the app be right and safe?"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from endpointgen.compiler import route_checks
from endpointgen.compiler.loader import Document
from endpointgen.compiler.route_checks import MODEL_PROCESSORS, pixels_key
from endpointgen.errors import Loc, Problem
from endpointgen.spec import (
    Batching,
    GenerateRoute,
    HandlerRoute,
    Model,
    RateLimit,
    Scaling,
    Spec,
    UploadRoute,
    WebhookRoute,
)
from endpointgen.spec.gpu import split as split_gpu
from endpointgen.spec.models import Route, job_of

# Each model action and the tasks it serves; `classify` answers as its model's task says.
MODEL_ACTIONS: dict[str, tuple[str, ...]] = {
    "generate": ("text-generation", "text2text-generation", "text-to-image"),
    "classify": ("text-classification", "zero-shot-classification", "token-classification"),
    "embed": ("embeddings", "image-text-embeddings"),
    "rerank": ("rerank",),
}
SMALLEST_IMAGE = 64 * 64  # the smallest width x height a text-to-image request may ask
LARGEST_IMAGE = 2048 * 2048  # and the largest (tasks.ImageRequest)
OPENAI_TASKS = ("text-generation", "embeddings")
_WEBHOOK_KEYS = ("provider", "secret", "env")


def check(spec: Spec, doc: Document) -> list[Problem]:
    return list(_all(spec, doc))


def local_model_dir(model_id: str, spec_dir: Path) -> Path | None:
    """A model id is a local directory when it looks like a path or names one that exists."""
    if model_id.startswith(("./", "../", "/", "~")) or model_id in (".", ".."):
        return (spec_dir / Path(model_id).expanduser()).resolve()
    candidate = spec_dir / model_id
    return candidate.resolve() if candidate.is_dir() else None


def route_auth(spec: Spec, route: Route) -> str:
    """The auth mode a route ends up with."""
    if route.action in ("health", "webhook") or route.auth == "none":
        return "none"  # a webhook's signature is its auth
    return spec.auth.mode


# The `auth` keys each mode reads; any other key set would be dropped from the build.
AUTH_KEYS = {
    "none": set(),
    "api_key": {"secret", "env", "header"},
    "bearer": {"secret", "env"},
    "jwt": {"secret", "env", "algorithm", "audience", "issuer", "leeway"},
    "proxy": {"env"},  # Modal checks the proxy tokens; `env` is for `serve`
}


def _ignored(spec: Spec, doc: Document) -> Iterator[Problem]:
    """Keys that validate but that the built app would not read: refused, not dropped."""
    mode = spec.auth.mode
    for key in sorted(spec.auth.model_fields_set - {"mode"} - AUTH_KEYS[mode]):
        reads = sorted(m for m, keys in AUTH_KEYS.items() if key in keys)
        yield doc.problem(
            ("auth", key),
            f"auth mode {mode} does not read `{key}` (modes that do: {', '.join(reads)})",
        )
    limits = [(("rate_limit",), spec.rate_limit)] + [
        (("routes", i, "rate_limit"), r.rate_limit) for i, r in enumerate(spec.routes)
    ]
    for loc, rule in limits:
        if rule is None or isinstance(rule, str) or rule.storage == "redis":
            continue
        for key in sorted({"url_env", "secret"} & rule.model_fields_set):
            yield doc.problem(
                (*loc, key),
                f"`{key}` is for `storage: redis`; this limit counts in {rule.storage}",
            )


# Tasks whose models take one request at a time, and why.
UNBATCHED = {
    "text2text-generation": "continuous batching is for decoder-only models; an "
    "encoder-decoder (text2text-generation) model generates one request at a time",
    "text-to-image": "a text-to-image model makes one image at a time, each with its own "
    "size, steps and seed",
}


def _batch_fits(
    doc: Document, at: Loc, task: str, batching: Batching | None, scaling: Scaling
) -> Iterator[Problem]:
    """A text generator's batch holds one request per row: a container that takes fewer
    requests at once (`max_inputs`) would never fill it."""
    most = scaling.max_inputs
    if task in UNBATCHED and batching is not None:
        yield doc.problem((*at, "batching"), f"{UNBATCHED[task]}: remove `batching`")
        return
    if task != "text-generation" or batching is None or most is None:
        return
    if batching.max_batch_size > most:
        yield doc.problem(
            (*at, "batching", "max_batch_size"),
            f"a batch of {batching.max_batch_size} generations needs as many requests at "
            f"once, and `scaling.max_inputs` lets a container take {most}; raise max_inputs "
            "or lower max_batch_size",
        )


def _weights(doc: Document, at: Loc, model: Model, spec_dir: Path) -> Iterator[Problem]:
    """`volume` and `path`: the weights on a Volume, `id` only the model's name."""

    if model.path is not None and model.volume is None:
        yield doc.problem((*at, "path"), "`path` is a folder inside `volume`: set `volume` too")
    if model.volume is not None and local_model_dir(model.id, spec_dir) is not None:
        yield doc.problem(
            (*at, "volume"),
            f"`id` {model.id} is a local directory, and `volume` says the weights are on a "
            "Volume: use one (with `volume`, `id` only names the model)",
        )
    if model.variant is not None and (model.loader is not None or model.engine == "vllm"):
        by = "a `loader`" if model.loader is not None else "vLLM"
        yield doc.problem(
            (*at, "variant"),
            f"{by} loads the weights itself, so `variant` would change nothing: remove it",
        )
    if model.volume is not None and model.revision is not None:
        yield doc.problem(
            (*at, "revision"),
            "`revision` is a Hub commit, and with `volume` the weights are the Volume's: "
            "nothing is downloaded from the Hub; remove `revision`",
        )


def _engine(
    doc: Document,
    at: Loc,
    model: Model,
    gpu: list[str] | None,
    batching: tuple[Loc, Batching | None],
) -> Iterator[Problem]:
    """`engine: vllm` and its options: text generation, on a GPU, options that fit."""
    if model.engine != "vllm":
        if model.vllm is not None:
            yield doc.problem((*at, "vllm"), "`vllm` options apply with `engine: vllm`")
        return
    if model.task != "text-generation":
        yield doc.problem(
            (*at, "engine"),
            f"vLLM serves text generation; `task: {model.task}` runs on the transformers "
            "engine (remove `engine`)",
        )
    if not gpu:
        yield doc.problem(
            (*at, "engine"),
            "vLLM runs on CUDA GPUs only, and this model has no `gpu`: set one (e.g. `gpu: "
            "L4`), or remove `engine: vllm` for transformers, which also runs on a CPU "
            "(`endpointgen serve` uses transformers locally either way)",
        )
    if model.loader is not None:
        yield doc.problem(
            (*at, "loader"),
            "a `loader` makes its own model object, and vLLM loads the model itself: use "
            "one or the other",
        )
    if batching[1] is not None:
        yield doc.problem(
            batching[0],
            "vLLM batches generations itself (continuous batching); remove `batching`",
        )
    parallel = model.vllm.tensor_parallel_size if model.vllm else None
    counts = sorted({split_gpu(g)[1] for g in gpu or []})
    if parallel is not None and counts and counts != [parallel]:
        given = " or ".join(map(str, counts))
        yield doc.problem(
            (*at, "vllm", "tensor_parallel_size"),
            f"tensor_parallel_size {parallel} must equal the GPUs the model gets ({given}, "
            "from `gpu`); leave it out to use them all",
        )


def _snapshot(
    doc: Document, at: Loc, snapshot: str, model: Model | None, gpu: list[str] | None
) -> Iterator[Problem]:
    """`snapshot`: what a memory or GPU snapshot cannot hold is refused, with the reason."""
    if snapshot == "off":
        return
    where = (*at, "snapshot") if at else ("snapshot",)
    if model is None:
        yield doc.problem(
            where, "a snapshot saves a loaded model's container, and this app loads no model"
        )
        return
    if model.engine == "vllm":
        yield doc.problem(
            where,
            "vLLM sets up CUDA graphs and its KV cache on the GPU as it loads: a memory "
            "snapshot cannot hold them, and a GPU snapshot needs vLLM's sleep mode, which "
            "this engine does not drive; remove `snapshot` (`vllm.enforce_eager` shortens "
            "cold starts instead)",
        )
    if snapshot == "gpu" and not gpu:
        yield doc.problem(where, "a GPU snapshot needs a `gpu`; use `memory` on a CPU")
    if snapshot == "memory" and model.loader is not None:
        yield doc.problem(
            where,
            "a loader's object cannot be moved to the GPU after a restore: use `gpu` "
            "(which snapshots GPU memory too) or `off`",
        )
    spread = [g for g in gpu or [] if split_gpu(g)[1] > 1]
    if snapshot == "memory" and spread and model.engine == "transformers":
        yield doc.problem(
            where,
            f"on {spread[0]} the weights are spread over the GPUs as they load, so they "
            "cannot load on the CPU first: use `gpu` or `off`",
        )


def _all(spec: Spec, doc: Document) -> Iterator[Problem]:
    yield from _secrets_in_plain_sight(spec, doc)
    yield from _ignored(spec, doc)
    yield from route_checks.check(spec, doc)
    yield from _models(spec, doc)
    if spec.cors and "*" in spec.cors.origins and spec.cors.credentials:
        yield doc.problem(
            ("cors", "credentials"),
            "`credentials: true` with origin '*' lets any site send your users' credentials; "
            "list the origins instead",
        )
    batched = {*MODEL_ACTIONS, "openai"} & {r.action for r in spec.routes} or any(
        isinstance(r, UploadRoute) and r.processor in MODEL_PROCESSORS for r in spec.routes
    )
    if spec.batching and not batched:
        yield doc.problem(
            ("batching",),
            "batching gathers generate, openai, classify, embed, rerank and image-upload "
            "requests, and this spec has none (handlers run one request at a time)",
        )
    spec_dir = Path(doc.file).parent
    if spec.model is not None:
        yield from _weights(doc, ("model",), spec.model, spec_dir)
    for name, named in spec.models.items():
        yield from _weights(doc, ("models", name), named, spec_dir)
    if spec.model is not None:
        yield from _batch_fits(doc, (), spec.model.task, spec.batching, spec.scaling)
        yield from _engine(doc, ("model",), spec.model, spec.gpu, (("batching",), spec.batching))
    for name, named in spec.models.items():
        at: Loc = ("models", name)
        yield from _engine(doc, at, named, named.gpu, ((*at, "batching"), named.batching))
    engines = {m.engine for m in spec.all_models}
    if len(engines) > 1:
        yield doc.problem(
            ("models",),
            "the models' containers share one image, and vLLM and the transformers engine "
            "need different torch builds: use one engine for all, or two apps",
        )
    for name, named in spec.models.items():
        yield from _batch_fits(doc, ("models", name), named.task, named.batching, named.scaling)
        yield from _snapshot(doc, ("models", name), named.snapshot, named, named.gpu)
    if spec.models and spec.snapshot != "off":
        yield doc.problem(("snapshot",), "with `models`, set `snapshot` on each model")
    elif not spec.models:
        yield from _snapshot(doc, (), spec.snapshot, spec.model, spec.gpu)
    if spec.rate_limit is not None and not any(
        r.rate_limit is None and r.action != "health" for r in spec.routes
    ):
        yield doc.problem(
            ("rate_limit",),
            "no route uses the app's `rate_limit`: each sets its own or `none` (and health "
            "routes have none); remove it, or drop a route's own limit",
        )
    seen: dict[tuple[str, str], int] = {}
    for i, route in enumerate(spec.routes):
        yield from _route(spec, doc, i, route)
        if route.key in seen:
            yield doc.problem(
                ("routes", i, "path"),
                f"{route.method} {route.path} is already defined by routes[{seen[route.key]}]",
            )
        seen.setdefault(route.key, i)
        if spec.metrics.enabled and route.method == "GET" and route.path == "/metrics":
            yield doc.problem(
                ("routes", i, "path"),
                "GET /metrics is where `metrics: {enabled: true}` serves Prometheus metrics; "
                "move this route, or turn metrics off",
            )
    if spec.metrics.public and not spec.metrics.enabled:
        yield doc.problem(("metrics", "public"), "`public: true` needs `enabled: true`")
    yield from _jobs(spec, doc)


def _route(spec: Spec, doc: Document, i: int, route: Route) -> Iterator[Problem]:
    here = ("routes", i)
    name = f"{route.method} {route.path}"
    tasks = MODEL_ACTIONS.get(route.action)
    model = spec.model_for(route)
    runs_a_model = tasks is not None or route.action == "openai"
    if runs_a_model and spec.models and route.model is None:
        yield doc.problem(here, f"{name} runs a model: name it with `model:` (one of `models`)")
    elif tasks:
        if model is None and not spec.models:
            yield doc.problem(
                (*here, "action"),
                f"{name} runs `{route.action}` but the spec has no `model`",
            )
        elif model is not None and model.task not in tasks:
            wanted = ", ".join(tasks[:-1]) + " or " + tasks[-1] if len(tasks) > 1 else tasks[0]
            yield doc.problem(
                (*here, "action"),
                f"{name}: `{route.action}` needs {_article(tasks[0])} {wanted} model, "
                f"but model.task is {model.task}",
            )
    if route.action == "openai":
        if (model is None and not spec.models) or (model and model.task not in OPENAI_TASKS):
            yield doc.problem(
                (*here, "action"),
                f"{name}: `openai` serves a text-generation or embeddings model",
            )
        if spec.auth.mode == "api_key":
            yield doc.problem(
                (*here, "action"),
                "OpenAI clients send `Authorization: Bearer`; use auth mode bearer or jwt",
            )
        if "method" in route.model_fields_set:
            yield doc.problem(
                (*here, "method"),
                "an `openai` route serves GET <path>/models and POST for the rest, whatever "
                "`method` says; remove it",
            )
        if model is not None and model.task in OPENAI_TASKS:
            unread = "max_items" if model.task == "text-generation" else "max_tokens"
            if getattr(route, unread) is not None:
                yield doc.problem(
                    (*here, unread),
                    f"`{unread}` is not read by an `openai` route serving {_article(model.task)} "
                    f"{model.task} model",
                )
    # Handlers and uploads get the model too, so they count as running it.
    uses_model = tasks or route.action == "openai"
    uses_model = uses_model or (route.action in ("handler", "upload") and model is not None)
    if uses_model and route_auth(spec, route) == "none" and not route.public:
        yield doc.problem(
            here,
            f"{name} runs the model with no auth; set `auth.mode` for the app, "
            "or mark this route `public: true` to serve it openly",
        )
    if route.public and route_auth(spec, route) != "none":
        yield doc.problem(
            (*here, "public"),
            f"{name} is behind the app's auth ({spec.auth.mode}): `public: true` does not "
            "open a route, `auth: none` does",
        )
    if spec.auth.mode == "proxy" and route.auth == "none" and route.action != "health":
        yield doc.problem(
            (*here, "auth"),
            "with auth mode `proxy` Modal guards the whole app at its edge; "
            "a route cannot opt out with `auth: none`",
        )
    if isinstance(route, GenerateRoute) and model is not None:
        yield from _generate(doc, here, name, route, model)
    if isinstance(route, WebhookRoute):
        for key in _WEBHOOK_KEYS:
            if getattr(route, key) is None:
                yield doc.problem(here, f"webhook route {name} needs `{key}`", key=False)
        if route.provider == "generic" and route.signature is None:
            yield doc.problem(
                here, f"webhook route {name} with provider generic needs `signature: {{header}}`"
            )
        if route.provider not in (None, "generic") and route.signature is not None:
            yield doc.problem(
                (*here, "signature"),
                f"`signature` applies to provider generic; {route.provider} signs its own way",
            )
    limit = effective_rate_limit(spec, route)
    if limit is not None and limit.key == "api_key" and route_auth(spec, route) == "none":
        yield doc.problem(
            (*here, "rate_limit") if route.rate_limit else ("rate_limit", "key"),
            f"{name} has no auth, so `key: api_key` has no credential to count by; use `key: ip`",
        )


def _generate(
    doc: Document, here: Loc, name: str, route: GenerateRoute, model: Model
) -> Iterator[Problem]:
    """A generate route's keys, by what its model makes: an image or text."""
    pixels = route.image_pixels
    if model.task == "text-to-image":
        if route.stream:
            yield doc.problem((*here, "stream"), f"{name} makes an image, which is not streamed")
        if route.max_tokens is not None:
            yield doc.problem(
                (*here, "max_tokens"),
                f"`max_tokens` is not read by {name}, which makes images",
            )
        if pixels is not None and pixels < SMALLEST_IMAGE:
            yield doc.problem(
                (*here, pixels_key(route)),
                f"must be at least {SMALLEST_IMAGE}: the smallest image is 64x64",
            )
        if pixels is not None and pixels > LARGEST_IMAGE:
            yield doc.problem(
                (*here, pixels_key(route)),
                f"must be at most {LARGEST_IMAGE}: the largest image is 2048x2048",
            )
        return
    for key, value in ((pixels_key(route), pixels), ("max_steps", route.max_steps)):
        if value is not None:
            yield doc.problem(
                (*here, key),
                f"`{key}` applies to a text-to-image model's generate routes; {name} makes text",
            )


def _jobs(spec: Spec, doc: Document) -> Iterator[Problem]:
    """`job:` on a POST model action or handler; `jobs:` only with a job route."""
    jobs = [i for i, r in enumerate(spec.routes) if job_of(r) is not None]
    for i in jobs:
        route = spec.routes[i]
        name = f"{route.method} {route.path}"
        streams = isinstance(route, GenerateRoute) and route.stream
        streams |= isinstance(route, HandlerRoute) and route.response_type in ("stream", "sse")
        if route.method != "POST":
            yield doc.problem(
                ("routes", i, "method"), f"{name}: a job route is submitted with POST"
            )
        elif streams:
            yield doc.problem(
                ("routes", i, "job"),
                f"{name}: a job keeps one answer; it cannot stream (drop `stream` or `job`)",
            )
        status = route.path.rstrip("/") + "/jobs/"
        for other in spec.routes:
            if other.path.startswith(status):
                yield doc.problem(
                    ("routes", i, "path"),
                    f"{name}: {other.path} is where this job route's jobs are read; "
                    "move one of them",
                )
    if not jobs and "jobs" in spec.model_fields_set:
        yield doc.problem(("jobs",), "`jobs` sets up job routes, and no route has `job:`")


def _models(spec: Spec, doc: Document) -> Iterator[Problem]:
    """Several models: each route names one, the web tier runs on CPU."""
    if spec.models and spec.model is not None:
        message = "use `model` for one model or `models` for several, not both"
        yield doc.problem(("models",), message)
    if spec.models and spec.gpu:
        yield doc.problem(
            ("gpu",), "with `models`, each model names its own GPU; the web tier runs on CPU"
        )
    if spec.models and spec.batching:
        yield doc.problem(("batching",), "with `models`, set `batching` on each model")
    if spec.shape == "split" and spec.model is None:
        yield doc.problem(
            ("shape",),
            "`shape: split` puts a web tier in front of `model`, and this spec has none"
            + ("; with `models` the web tier is always there" if spec.models else ""),
        )
    for i, route in enumerate(spec.routes):
        if route.model is None:
            continue
        if not spec.models:
            yield doc.problem(
                ("routes", i, "model"), "`model` names one of `models`, and this spec has none"
            )
        elif route.model not in spec.models:
            known = ", ".join(sorted(spec.models))
            yield doc.problem(("routes", i, "model"), f"no model '{route.model}' (models: {known})")


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def effective_rate_limit(spec: Spec, route: Route) -> RateLimit | None:
    """The route's own limit, the app's, or None (`none`, or a health route)."""
    if route.rate_limit == "none" or (route.rate_limit is None and route.action == "health"):
        return None
    return route.rate_limit if route.rate_limit is not None else spec.rate_limit


# Prefixes of well-known credentials: a value like these where a Secret *name* belongs
# means the credential itself was pasted into the spec, and would ship in the code.
_TOKEN_PREFIXES = (
    "sk-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "whsec_",
    "ghp_",
    "gho_",
    "ghs_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xapp-",
    "hf_",
    "AKIA",
    "eyJ",
    "ak-",
    "as-",
    "wk-",
    "ws-",
)
_SECRET_WORDS = {"KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIALS"}


def looks_like_a_credential(value: str) -> bool:
    """A pasted key or token, rather than the name of a Modal Secret."""
    if value.startswith(_TOKEN_PREFIXES) and len(value) >= 12:
        return True
    if len(value) < 24 or not value.isalnum():
        return False
    kinds = sum(any(test(c) for c in value) for test in (str.islower, str.isupper, str.isdigit))
    return kinds >= 2 and len(set(value)) >= 12


def _secrets_in_plain_sight(spec: Spec, doc: Document) -> Iterator[Problem]:
    names: list[tuple[Loc, str]] = [(("secrets", i), s) for i, s in enumerate(spec.secrets)]
    if spec.auth.secret:
        names.append((("auth", "secret"), spec.auth.secret))
    names += [
        (("routes", i, "secret"), r.secret)
        for i, r in enumerate(spec.routes)
        if isinstance(r, WebhookRoute) and r.secret
    ]
    for loc, name in names:
        if looks_like_a_credential(name):
            yield doc.problem(
                loc,
                "this looks like a key or token, not the name of a Modal Secret; "
                "store the value in a Modal Secret and put its name here",
            )
    for key, value in spec.env.items():
        parts = key.upper().split("_")
        # DB_PASSWORD: hunter2 -- any value under a name that ends like a credential;
        # a long one under a name that holds such a word anywhere.
        named = parts[-1] in _SECRET_WORDS
        mentions = any(part in _SECRET_WORDS for part in parts)
        if looks_like_a_credential(value) or (named and value) or (mentions and len(value) >= 8):
            yield doc.problem(
                ("env", key),
                f"`env` values ship in the built code; put {key} in a Modal Secret "
                "and list it under `secrets`",
            )
