"""One explicit FastAPI function per route: the code of each action, computed from the plan.

Each `write_<action>` returns the route's decorator and function, laid out by `pycode`;
what a route needs before it (a handler loaded, a webhook's secret read, a folder) goes
into `Scope.setup`, the statements at the top of `create_app`.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from endpointgen.compiler.plan import DEFAULT_WEBHOOK_TOLERANCE as DEFAULT_TOLERANCE
from endpointgen.compiler.pycode import Group, Node, call, collection, flat, lines, literal

Route = dict[str, Any]
Options = dict[str, Node]

# Names the module defines or imports at its top, or uses inside route functions.
TAKEN = {
    *("auth", "files", "handlers", "http", "limits", "openai", "remote", "tasks", "webhooks"),
    *("modal", "runtime", "app", "image", "web_image", "hf_cache", "create_app", "web"),
    *("Annotated", "Any", "Depends", "FastAPI", "File", "Header", "Iterator", "Literal"),
    *("Path", "Query", "Request", "Response", "UploadFile", "BaseModel", "Field"),
    *("APP_NAME", "DESCRIPTION", "MODEL_ID", "MODEL_REVISION", "GPU", "MODEL_DIR", "secrets"),
    *("body", "request", "file", "upload", "guards", "limit", "require_auth", "model"),
    *("jobs", "job", "app_jobs", "Server"),
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
RESPONSE_CLASSES = {"text": "http.Text", "stream": "http.TextStream", "sse": "http.EventStream"}
# Attributes of pydantic's BaseModel that a body field may not take as its name.
MODEL_ATTRIBUTES = {"copy", "dict", "json", "schema", "construct", "validate", "fields"}


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


@dataclass
class Scope:
    """What the routes share with the rest of the module."""

    names: Names
    models: dict[str, str]  # the plan's model name -> its Python name
    shipped: dict[str, str]  # a shipped file's local path -> its constant
    tasks: dict[str, str]  # the plan's model name -> its task
    uses: set[str] = field(default_factory=set)  # names the module imports
    setup: list[list[str]] = field(default_factory=list)  # statements atop create_app
    bodies: list[list[str]] = field(default_factory=list)  # request classes, top level
    handlers: dict[tuple[str, str], str] = field(default_factory=dict)

    def use(self, *names: str) -> None:
        self.uses.update(names)

    def assign(self, name: str, value: Node) -> None:
        self.setup.append(lines([f"{name} = ", value], 4))


def function_name(route: Route, routes: list[Route]) -> str:
    """From the path's fixed words; with the method first when another route shares them."""

    def words(path: str) -> list[str]:
        fixed = re.sub(r"\{[^}]*\}", "", path)
        return [w.lower() for w in re.findall(r"[A-Za-z0-9]+", fixed)]

    mine = words(route["path"])
    if not mine or sum(words(r["path"]) == mine for r in routes) > 1:
        mine.insert(0, route["method"].lower())
    return "_".join(mine)


def write(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    """The route's decorator and function."""
    if route.get("summary"):
        options["summary"] = literal(route["summary"])
    writer: Callable[[Scope, Route, str, Options], list[str]] = WRITERS[route["action"]]
    if route.get("job"):
        return job(scope, route, name, options, writer)
    return writer(scope, route, name, options)


def job(
    scope: Scope,
    route: Route,
    name: str,
    options: Options,
    writer: Callable[[Scope, Route, str, Options], list[str]],
) -> list[str]:
    """The route's function as its action writes it, registered as a job's work: POST
    submits it, GET and DELETE <path>/jobs/{job_id} read and cancel."""
    written = writer(scope, route, name, dict(options))
    start = next(i for i, line in enumerate(written) if line.startswith("    async def "))
    extra: Options = {"ttl": literal(route["job"]["ttl"])}
    for key in ("dependencies", "summary"):
        if key in options:
            extra[key] = options[key]
    if route["auth"] != "none":
        extra["owner_dependencies"] = call("http.guards", "require_auth")
    register = call("app_jobs.route", "web", literal(route["path"]), name, **extra)
    return [*written[start:], "", *lines(register, 4)]


def decorator(route: Route, options: Options, path: str | None = None) -> list[str]:
    method = route["method"].lower()
    return lines(["@", call(f"web.{method}", literal(path or route["path"]), **options)], 4)


def define(name: str, params: list[Node], returns: str, body: list[Node]) -> list[str]:
    head = lines([Group(f"async def {name}(", params, f") -> {returns}:", params=True)], 4)
    return head + [line for statement in body for line in lines(statement, 8)]


def limits(route: Route, *keys: str) -> Options:
    return {key: literal(route[key]) for key in keys}


# --- model routes ---


def write_health(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    if route["model"] is None:
        return decorator(route, options) + define(
            name, [], "dict[str, str]", ['return {"status": "ok"}']
        )
    model = scope.models[route["model"]]
    return decorator(route, options) + define(
        name, [], "http.JSONResponse", [f"return {model}.health()"]
    )


def write_generate(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("tasks")
    model = scope.models[route["model"]]
    if scope.tasks[route["model"]] == "text-to-image":
        scope.use("Response")
        options["responses"] = "tasks.IMAGE_ANSWERS"
        # The runtime's `max_pixels` is the route's `max_image_pixels`.
        bounds = {"max_pixels": literal(route["max_image_pixels"])}
        answer = call(
            f"await {model}.draw", "body", **bounds, **limits(route, "max_steps", "max_chars")
        )
        params: list[Node] = ["body: tasks.ImageRequest"]
        return decorator(route, options) + define(name, params, "Response", [["return ", answer]])
    text = limits(route, "max_tokens", "max_chars")
    if route["stream"]:
        scope.use("Request")
        options["response_class"] = "http.EventStream"
        params = ["body: tasks.GenerateRequest", "request: Request"]
        answer = call(f"await {model}.stream", "body", "request", **text)
        return decorator(route, options) + define(
            name, params, "http.EventStream", [["return ", answer]]
        )
    answer = call(f"await {model}.generate", "body", **text)
    params = ["body: tasks.GenerateRequest"]
    return decorator(route, options) + define(
        name, params, "tasks.GenerateResponse", [["return ", answer]]
    )


# What an image upload's processor calls on the route's model.
IMAGE_METHODS = {
    "image-classification": "classify_image",
    "image-embeddings": "embed_image",
    "object-detection": "detect_objects",
}
# What `classify` takes and answers, by its model's task: (method, request, result).
CLASSIFY = {
    "text-classification": ("classify", "ClassifyRequest", "Classification"),
    "zero-shot-classification": ("zero_shot", "ZeroShotRequest", "ZeroShotResult"),
    "token-classification": ("entities", "ClassifyRequest", "Entities"),
}


def write_classify(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("tasks")
    model = scope.models[route["model"]]
    method, request, result = CLASSIFY[scope.tasks[route["model"]]]
    answer = call(f"await {model}.{method}", "body", **limits(route, "max_items", "max_chars"))
    returns = f"tasks.{result} | list[tasks.{result}]"
    params: list[Node] = [f"body: tasks.{request}"]
    return decorator(route, options) + define(name, params, returns, [["return ", answer]])


def write_rerank(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("tasks")
    model = scope.models[route["model"]]
    answer = call(f"await {model}.rerank", "body", **limits(route, "max_items", "max_chars"))
    params: list[Node] = ["body: tasks.RerankRequest"]
    return decorator(route, options) + define(
        name, params, "list[tasks.Ranked]", [["return ", answer]]
    )


def write_embed(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("tasks")
    model = scope.models[route["model"]]
    answer = call(f"await {model}.embed", "body", **limits(route, "max_items", "max_chars"))
    params: list[Node] = ["body: tasks.EmbedRequest"]
    return decorator(route, options) + define(
        name, params, "tasks.EmbedResponse", [["return ", answer]]
    )


def write_openai(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    """The OpenAI routes under the spec's prefix, one function each."""
    scope.use("openai", "Any")
    model = scope.models[route["model"]]
    base = route["path"]
    get, post = {**route, "method": "GET"}, {**route, "method": "POST"}
    out = decorator(get, dict(options), base + "/models")
    listed = f"return openai.models({model}, owner=APP_NAME)"
    out += define(scope.names.new(f"{name}_models"), [], "dict[str, Any]", [listed])
    if scope.tasks[route["model"]] == "text-generation":
        scope.use("Request")
        text = limits(route, "max_tokens", "max_chars")
        streamed = {**options, "responses": "openai.STREAMED"}
        for path, kind, function in (
            ("/completions", "CompletionRequest", "completions"),
            ("/chat/completions", "ChatRequest", "chat"),
        ):
            answer = call(f"await openai.{function}", model, "body", "request", **text)
            params: list[Node] = [f"body: openai.{kind}", "request: Request"]
            out += ["", *decorator(post, dict(streamed), base + path)]
            out += define(
                scope.names.new(f"{name}_{function}"), params, "Any", [["return ", answer]]
            )
    else:
        texts = limits(route, "max_items", "max_chars")
        answer = call("await openai.embeddings", model, "body", **texts)
        out += ["", *decorator(post, dict(options), base + "/embeddings")]
        params = ["body: openai.EmbeddingRequest"]
        out += define(
            scope.names.new(f"{name}_embeddings"), params, "dict[str, Any]", [["return ", answer]]
        )
    return out


def write_webhook(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("webhooks", "Request")
    rule = route["webhook"]
    hook = scope.names.new(f"{name}_hook")
    settings: Options = {"env": literal(rule["env"])}
    if rule["tolerance"] != DEFAULT_TOLERANCE:
        settings["tolerance"] = literal(rule["tolerance"])
    if rule.get("signature"):
        signed = {k: literal(v) for k, v in rule["signature"].items() if v not in (None, "")}
        settings["signature"] = call("webhooks.Signature", **signed)
    scope.assign(hook, call("webhooks.Webhook", literal(rule["provider"]), **settings))
    options["responses"] = "webhooks.RESPONSES"
    return decorator(route, options) + define(
        name, ["request: Request"], "http.JSONResponse", [f"return await {hook}.receive(request)"]
    )


# --- routes with declared parameters and bodies ---


def parameters(scope: Scope, route: Route, taken: set[str]) -> tuple[list[Node], list[Node]]:
    """The function's parameters (required first, as Python wants), and the
    `"name": value` items that hand them on by the names the spec gave them."""
    required: list[Node] = []
    optional: list[Node] = []
    items: list[Node] = []
    for param in route["params"]:
        wire = param["name"]
        python = wire if wire not in taken and not keyword.iskeyword(wire) else wire + "_"
        options = constraints(param)
        if python != wire:
            options["alias"] = literal(wire)
        kind = annotation(scope, param)
        source = SOURCES[param["in"]]
        if options or source == "Header":
            scope.use("Annotated", source)
            kind = Group("Annotated[", [kind, call(source, **options)], "]")
        if param["required"]:
            required.append([f"{python}: ", kind])
        else:
            optional.append([f"{python}: ", kind, " = ", flat(literal(param["default"]))])
        items.append(f"{literal(wire)}: {python}")
    return required + optional, items


def constraints(field: dict[str, Any]) -> Options:
    names = ("ge", "le", "min_length", "max_length", "description")
    found = {name: field[name] for name in names if name in field}
    for bound in ("ge", "le"):  # an int's bounds read as ints
        if field["type"] == "int" and bound in found and float(found[bound]).is_integer():
            found[bound] = int(found[bound])
    options = {name: literal(value) for name, value in found.items()}
    if field["type"] == "float" and field.get("in") in SOURCES:  # a query's "nan", "inf"
        options["allow_inf_nan"] = "False"
    return options


def annotation(scope: Scope, field: dict[str, Any]) -> Node:
    kind: Node = TYPES[field["type"]]
    if "Any" in TYPES[field["type"]]:
        scope.use("Any")
    if "enum" in field and field["type"] == "str":
        scope.use("Literal")
        kind = Group("Literal[", [literal(v) for v in field["enum"]], "]")
    elif "enum" in field:  # numbers arrive as text in a query: parse, then compare
        scope.use("Annotated", "handlers")
        allowed = call("handlers.one_of", *map(literal, field["enum"]))
        kind = Group("Annotated[", [kind, allowed], "]")
    if not field["required"] and field["default"] is None:
        kind = [kind, " | None"]
    return kind


def body_class(scope: Scope, route: Route) -> str | None:
    """A pydantic class for the route's declared JSON body, at the module's top level."""
    if route["request"] is None:
        return None
    scope.use("BaseModel", "http")
    words = re.findall(r"[A-Za-z0-9]+", f"{route['method']} {route['path']}")
    name = scope.names.new("".join(w.capitalize() for w in words) + "Request")
    statements = [["    model_config = http.STRICT"]]
    for spec in route["request"]:
        wire = spec["name"]
        python = wire
        if keyword.iskeyword(wire) or wire in MODEL_ATTRIBUTES or wire.startswith("model_"):
            python = wire + "_"
        options: Options = {}
        if not spec["required"]:
            options["default"] = literal(spec["default"])
        options |= constraints(spec)
        if python != wire:
            options["alias"] = literal(wire)
        value: Node = ""
        if options:
            scope.use("Field")
            value = [" = ", call("Field", **options)]
        statements.append(lines([f"{python}: ", annotation(scope, spec), value], 4))
    scope.bodies.append([f"class {name}(BaseModel):", *[line for s in statements for line in s]])
    return name


def data(items: list[Node], body: str | None) -> Node | None:
    """The request's values, by the names the spec gave them (None when there are none)."""
    dumped = "body.model_dump(by_alias=True)"
    if body and not items:
        return dumped
    if not items:
        return None
    return collection("{", [*items, *([f"**{dumped}"] if body else [])], "}")


def handler(scope: Scope, route: Route) -> str:
    """The name the route's handler function is loaded under, loaded once per function."""
    scope.use("handlers")  # every route with a handler loads it through the runtime
    ref = route["handler"]
    key = (ref["local"], ref["function"])
    if key not in scope.handlers:
        function = scope.names.new(ref["function"], "_handler")
        file = scope.shipped[ref["local"]]
        scope.assign(
            function,
            call("handlers.load", f"{file}.path", literal(ref["function"]), literal(ref["shown"])),
        )
        scope.handlers[key] = function
    return scope.handlers[key]


def model_argument(scope: Scope, route: Route) -> list[Node]:
    model = route["model"]
    return [f"{scope.models[model]}.engine"] if model is not None else []


def write_respond(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("handlers", "Response")
    body = body_class(scope, route)
    params, items = parameters(scope, route, {"body"})
    if body:
        params.insert(0, f"body: {body}")
    kind = route["response_type"]
    if kind in RESPONSE_CLASSES:
        options["response_class"] = RESPONSE_CLASSES[kind]
    extra: Options = {}
    if kind != "json":
        extra["kind"] = literal(kind)
    if route["status"] != 200:
        options["status_code"] = extra["status"] = literal(route["status"])
    given = data(items, body)
    answer = call(
        "handlers.respond", literal(route["response"]), *[given] if given else [], **extra
    )
    return decorator(route, options) + define(name, params, "Response", [["return ", answer]])


def write_handler(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("handlers", "Response")
    function = handler(scope, route)
    body = body_class(scope, route)
    params, items = parameters(scope, route, {"body", function})
    if body:
        params.insert(0, f"body: {body}")
    kind = route["response_type"]
    if kind in RESPONSE_CLASSES:
        options["response_class"] = RESPONSE_CLASSES[kind]
    binary: Options = {}
    if kind == "binary":
        scope.use("http")
        binary["media_type"] = literal(route["media_type"])
        options["response_class"] = call("http.binary", binary["media_type"])
    given = data(items, body) or "{}"
    result = call("await handlers.call", function, given, *model_argument(scope, route), **binary)
    kinds = [literal(kind)] if kind != "json" else []
    answer = call("handlers.answer", result, *kinds, **binary)
    return decorator(route, options) + define(name, params, "Response", [["return ", answer]])


def write_upload(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("files", "Annotated", "UploadFile", "File", "Any")
    settings = route["upload"]
    function = handler(scope, route) if "handler" in route else None
    params, items = parameters(scope, route, {"file", "upload", function or "file"})
    params.insert(0, 'file: Annotated[UploadFile, File(description="the file")]')
    options["responses"] = "files.UPLOAD_RESPONSES"
    read = call("await files.read_upload", "file", literal(settings["content_types"]))
    statements: list[Node] = [["upload = ", read]]
    if settings["processor"] == "csv":
        summary: list[Node] = [
            "await ",
            call("files.csv_summary", "upload.content", literal(settings["max_rows"])),
        ]
        statements.append(["return ", collection("{", ["**upload.info", ["**", summary]], "}")])
    elif settings["processor"] in IMAGE_METHODS:
        cap = settings["max_upload_pixels"]
        pixels = f", max_pixels={literal(cap)}" if cap is not None else ""
        method = IMAGE_METHODS[settings["processor"]]
        result = f"**await {scope.models[route['model']]}.{method}(upload.content{pixels})"
        statements.append(["return ", collection("{", ["**upload.info", result], "}")])
    elif settings["processor"] == "speech-recognition":
        scope.use("Query")
        about = literal("add chunks with times")
        params.append(f"timestamps: Annotated[bool, Query(description={about})] = False")
        model = scope.models[route["model"]]
        result = f"**await {model}.transcribe(upload.content, timestamps)"
        statements.append(["return ", collection("{", ["**upload.info", result], "}")])
    else:
        given = collection("{", [*items, "**upload.info", '"content": upload.content'], "}")
        called = call("handlers.call", function or "", given, *model_argument(scope, route))
        statements.append(["return await ", called])
    return decorator(route, options) + define(name, params, "Any", statements)


def write_file(scope: Scope, route: Route, name: str, options: Options) -> list[str]:
    scope.use("files", "http")
    settings = route["file"]
    folder = scope.names.new(f"{name}_folder")
    extra: Options = {}
    if "folder" in settings:
        root: Node = f"{scope.shipped[settings['folder']['local']]}.path"
    else:
        root = literal(settings["volume"]["mount"])
        extra["volume"] = literal(settings["volume"]["name"])
    if settings["media_type"]:
        extra["media_type"] = literal(settings["media_type"])
    if settings["download_name"]:
        extra["download_name"] = literal(settings["download_name"])
    scope.assign(folder, call("files.Folder", root, **extra))
    params, items = parameters(scope, route, {folder})
    options["response_class"] = "http.FileResponse"
    options["responses"] = f"{folder}.responses"
    (param,) = [p for p in route["params"] if p["name"] == settings["param"]]
    wanted = flat(items[route["params"].index(param)]).split(": ", 1)[1]
    if param["type"] != "str":
        wanted = f"str({wanted})"
    return decorator(route, options) + define(
        name, params, "http.FileResponse", [f"return await {folder}.send({wanted})"]
    )


WRITERS: dict[str, Callable[[Scope, Route, str, Options], list[str]]] = {
    "health": write_health,
    "generate": write_generate,
    "classify": write_classify,
    "rerank": write_rerank,
    "embed": write_embed,
    "openai": write_openai,
    "webhook": write_webhook,
    "respond": write_respond,
    "handler": write_handler,
    "upload": write_upload,
    "file": write_file,
}
