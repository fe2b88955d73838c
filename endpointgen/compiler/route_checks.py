"""Rules between a route's keys, beyond the keys its action takes (the spec's route
classes say those), and that the files a spec names (handlers, loaders, folders) are
there and usable."""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from endpointgen.compiler.loader import Document
from endpointgen.compiler.shapes import path_params
from endpointgen.errors import Loc, Problem
from endpointgen.runtime import defaults
from endpointgen.spec import FileRoute, HandlerRoute, RespondRoute, Route, Spec, UploadRoute
from endpointgen.spec.models import (
    NEW_PIXELS,
    OLD_PIXELS,
    SHAPED_ROUTES,
    GenerateRoute,
    ShapedRoute,
    Socket,
    socket_of,
)

# Upload processors that run the route's model on an image, and the task each needs.
IMAGE_PROCESSORS = {
    "image-classification": "image-classification",
    "image-embeddings": "image-text-embeddings",
    "object-detection": "object-detection",
}
# Upload processors that run the route's model, and the task each needs.
MODEL_PROCESSORS = {**IMAGE_PROCESSORS, "speech-recognition": "automatic-speech-recognition"}

_BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
_RESERVED = {"request_body", "file"}
MODAL_TIMEOUT = defaults.MODAL_TIMEOUT  # a Modal function's timeout, `resources.timeout` unset
# A WebSocket route's keys that only an HTTP route reads, and why.
_HTTP_ONLY = {
    "stream": "a WebSocket sends its tokens as they come already",
    "job": "a WebSocket answers on its connection; it cannot be a job",
    "summary": "a WebSocket route is not in /openapi.json, where `summary` shows",
    "examples": "`endpointgen test` sends HTTP requests, which a WebSocket route does not take",
    "request": "a WebSocket handler gets the client's messages, not a body",
    "params": "a WebSocket handler gets the client's messages, not parameters",
    "response_type": "a WebSocket handler sends what it yields: text, bytes or JSON",
    "media_type": "a WebSocket handler sends what it yields: text, bytes or JSON",
}


def check(spec: Spec, doc: Document) -> Iterator[Problem]:
    for i, route in enumerate(spec.routes):
        yield from _route(spec, doc, ("routes", i), route)
    if spec.model is not None and spec.model.loader:
        yield from _python_function(doc, ("model", "loader"), spec.model.loader, spec.packages)
    for name, named in spec.models.items():
        if named.loader:
            loc = ("models", name, "loader")
            yield from _python_function(doc, loc, named.loader, spec.packages)
    for i, route in enumerate(spec.routes):
        model = spec.model_for(route)
        if model is None or not model.loader:
            continue
        text_engine = model.task == "text-generation" and route.action in ("generate", "openai")
        if (
            route.action in ("generate", "classify", "embed", "rerank", "openai")
            and not text_engine
        ):
            yield doc.problem(
                ("routes", i, "action"),
                f"a model from a custom loader serves handler routes (and, for "
                f"text-generation, `generate` and `openai`), not `{route.action}`: call your "
                "model from a `handler` route, or drop `loader` to use the built-in "
                f"{model.task} engine",
            )
        elif isinstance(route, UploadRoute) and route.processor in MODEL_PROCESSORS:
            yield doc.problem(
                ("routes", i, "processor"),
                f"a model from a custom loader cannot run `processor: {route.processor}`: "
                "give the upload a `handler` that calls your model, or drop `loader`",
            )


def _route(spec: Spec, doc: Document, here: Loc, route: Route) -> Iterator[Problem]:
    if isinstance(route, SHAPED_ROUTES):
        yield from _params(doc, here, route)
    if isinstance(route, RespondRoute | HandlerRoute):
        if route.request is not None and route.method not in _BODY_METHODS:
            message = f"a {route.method} request has no body; use params"
            yield doc.problem((*here, "request"), message)
    if isinstance(route, RespondRoute):
        if "response" not in route.model_fields_set:
            yield doc.problem(here, "a respond route needs `response`")
        if route.response_type == "binary":
            message = "a respond route answers JSON or text; binary answers come from a `handler`"
            yield doc.problem((*here, "response_type"), message)
    if isinstance(route, HandlerRoute):
        if route.handler is None:
            yield doc.problem(here, "a handler route needs `handler: file.py:function`")
        if route.media_type and route.response_type != "binary":
            message = "`media_type` applies with `response_type: binary`"
            yield doc.problem((*here, "media_type"), message)
    if isinstance(route, GenerateRoute | UploadRoute):
        yield from _old_pixels(doc, here, route)
    if isinstance(route, UploadRoute):
        yield from _upload(spec, doc, here, route)
    if isinstance(route, FileRoute):
        yield from _file(doc, here, route)
    if isinstance(route, HandlerRoute | UploadRoute) and route.handler is not None:
        yield from _python_function(doc, (*here, "handler"), route.handler, spec.packages)
    socket = socket_of(route)
    if socket is not None:
        yield from _socket(spec, doc, here, route, socket)


def socket_lifetime(spec: Spec, socket: Socket) -> int:
    """A WebSocket's lifetime: its own, else the function's timeout, which ends it."""
    return socket.max_lifetime or spec.resources.timeout or MODAL_TIMEOUT


def socket_tickets(spec: Spec, route: Route) -> bool:
    """Whether a WebSocket route serves `POST <path>/ticket`: behind auth that holds a
    secret to sign tickets with (keys, tokens, an HS256 JWT secret)."""
    if route.auth == "none" or spec.auth.mode not in ("api_key", "bearer", "jwt"):
        return False
    return spec.auth.mode != "jwt" or spec.auth.algorithm == "HS256"


def ticket_path(route: Route) -> str:
    return route.path.rstrip("/") + "/ticket"


def _socket(
    spec: Spec, doc: Document, here: Loc, route: Route, socket: Socket
) -> Iterator[Problem]:
    """A WebSocket route: opened with GET, none of the keys only HTTP reads, a handler
    that is an async generator, a lifetime within what Modal lets a call run."""
    name = f"{route.method} {route.path}"
    if route.method != "GET":
        yield doc.problem((*here, "method"), "a WebSocket opens with GET; remove `method`")
    for key, why in _HTTP_ONLY.items():
        if key in route.model_fields_set and getattr(route, key, None):
            yield doc.problem((*here, key), f"`{key}` does not apply to a WebSocket: {why}")
    model = spec.model_for(route)
    if isinstance(route, GenerateRoute) and model is not None and model.task == "text-to-image":
        yield doc.problem(
            (*here, "websocket"), f"{name} makes images; a WebSocket route streams text"
        )
    if isinstance(route, HandlerRoute) and route.handler is not None:
        problem = _async_generator(doc, route.handler)
        if problem:
            yield doc.problem((*here, "handler"), problem)
    lifetime = socket.max_lifetime
    if lifetime is not None and lifetime > (spec.resources.timeout or MODAL_TIMEOUT):
        timeout = spec.resources.timeout
        said = (
            f"`resources.timeout`, {timeout} s"
            if timeout
            else f"{MODAL_TIMEOUT} s: Modal's default, as `resources.timeout` is unset"
        )
        yield doc.problem(
            (*here, "websocket", "max_lifetime"),
            f"Modal ends a connection at its function's timeout ({said}), with no close "
            f"code; set `resources.timeout` to at least {lifetime}, or lower `max_lifetime`",
        )
    if socket_tickets(spec, route):
        wanted = ticket_path(route)
        for i, other in enumerate(spec.routes):
            if other.path == wanted and other.method == "POST":
                yield doc.problem(
                    ("routes", i, "path"),
                    f"POST {wanted} is where {name} gives WebSocket tickets; move one of them",
                )


def _async_generator(doc: Document, ref: str) -> str | None:
    """Why a WebSocket handler cannot serve: not an `async def` that yields."""
    file, function = ref.rsplit(":", 1)
    try:
        tree = ast.parse((doc.folder / file).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return None  # said by `_python_function`
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            yields = any(isinstance(n, ast.Yield) for n in _own_nodes(node))
            if isinstance(node, ast.AsyncFunctionDef) and yields:
                return None
            return (
                f"a WebSocket handler is an `async def` that yields its answers; "
                f"{function} in {file} is not"
            )
    return None


def _own_nodes(function: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's body, not those of functions or classes inside it."""
    for child in ast.iter_child_nodes(function):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            continue
        yield child
        yield from _own_nodes(child)


def pixels_key(route: GenerateRoute | UploadRoute) -> str:
    """The key that bounds a route's image pixels, as the spec wrote it: the old name
    `max_pixels`, or the action's own."""
    return OLD_PIXELS if OLD_PIXELS in route.model_fields_set else NEW_PIXELS[route.action]


def _old_pixels(doc: Document, here: Loc, route: GenerateRoute | UploadRoute) -> Iterator[Problem]:
    new = NEW_PIXELS[route.action]
    if {OLD_PIXELS, new} <= route.model_fields_set:
        yield doc.problem(
            (*here, OLD_PIXELS), f"`{OLD_PIXELS}` is the old name of `{new}`: keep `{new}` only"
        )


def _params(doc: Document, here: Loc, route: ShapedRoute) -> Iterator[Problem]:
    in_path = path_params(route.path)
    for name, param in route.params.items():
        loc = (*here, "params", name)
        if name in _RESERVED:
            yield doc.problem(loc, f"`{name}` is reserved; name the parameter otherwise")
        if param.where == "path" and name not in in_path:
            yield doc.problem(loc, f"path parameter `{name}` is not in the path {route.path}")
        if name in in_path and param.where not in (None, "path"):
            yield doc.problem(loc, f"`{name}` is in the path, so it is a path parameter")
        if name in in_path and not param.required:
            yield doc.problem(loc, "a path parameter cannot have a default")
    if isinstance(route, RespondRoute | HandlerRoute):
        for name in route.request or {}:
            if name in route.params:
                yield doc.problem((*here, "request", name), f"`{name}` is also a parameter")


def _upload(spec: Spec, doc: Document, here: Loc, route: UploadRoute) -> Iterator[Problem]:
    if route.method not in ("POST", "PUT"):
        yield doc.problem((*here, "method"), "an upload route takes POST or PUT")
    if route.processor is None:
        yield doc.problem(
            here,
            "an upload route needs `processor`: csv, image-classification, image-embeddings, "
            "object-detection, speech-recognition or handler",
        )
    elif route.processor == "handler" and route.handler is None:
        yield doc.problem(here, "`processor: handler` needs `handler: file.py:function`")
    elif route.processor != "handler" and route.handler is not None:
        yield doc.problem((*here, "handler"), "`handler` applies with `processor: handler`")
    model = spec.model_for(route)
    task = MODEL_PROCESSORS.get(route.processor or "")
    if task is not None and (model is None or model.task != task):
        yield doc.problem((*here, "processor"), f"{route.processor} needs an {task} model")
    task = IMAGE_PROCESSORS.get(route.processor or "")
    if route.max_rows is not None and route.processor != "csv":
        yield doc.problem((*here, "max_rows"), "`max_rows` applies with `processor: csv`")
    if route.upload_pixels is not None and task is None:
        key = pixels_key(route)
        yield doc.problem(
            (*here, key),
            f"`{key}` applies with `processor: image-classification`, image-embeddings "
            "or object-detection",
        )


def _file(doc: Document, here: Loc, route: FileRoute) -> Iterator[Problem]:
    if route.method != "GET":
        yield doc.problem((*here, "method"), "a file route answers GET")
    if (route.folder is None) == (route.volume is None):
        yield doc.problem(here, "a file route needs exactly one of `folder` and `volume`")
    names = list(path_params(route.path))
    if len(names) != 1 or not route.path.endswith("}"):
        yield doc.problem(
            (*here, "path"),
            "a file route's path ends with the file's name, e.g. /files/{name:path}",
        )
    if route.folder is not None:
        outside = escapes(doc, route.folder)
        if outside:
            yield doc.problem((*here, "folder"), outside)
        elif any(part.startswith(".") for part in Path(route.folder).parts if part != "."):
            yield doc.problem(
                (*here, "folder"),
                f"{route.folder} is a hidden folder (it may hold credentials or a .git); "
                "serve a folder whose name starts with a letter",
            )
        elif not (doc.folder / route.folder).is_dir():
            yield doc.problem((*here, "folder"), f"no folder {route.folder} next to the spec")


def escapes(doc: Document, relative: str) -> str | None:
    """Why a path a spec names is not allowed to ship: absolute, or out of the spec's
    folder (`..`, or a link that leads out). None when it stays inside."""
    if Path(relative).is_absolute() or re.match(r"^[A-Za-z]:", relative):
        return f"{relative} is an absolute path; name a path inside the spec's folder"
    root = doc.folder.resolve()
    target = (doc.folder / relative).resolve()
    if target != root and root not in target.parents:
        return f"{relative} leads out of the spec's folder; keep what the app ships beside the spec"
    return None


def _python_function(doc: Document, loc: Loc, ref: str, packages: list[str]) -> Iterator[Problem]:
    """The file exists, parses, and defines the function: checked without running it."""
    file, function = ref.rsplit(":", 1)
    outside = escapes(doc, file)
    if outside:
        yield doc.problem(loc, outside)
        return
    path = doc.folder / file
    try:
        tree = ast.parse(Path(path).read_bytes(), filename=file)
    except OSError:
        yield doc.problem(loc, f"no file {file} next to the spec")
        return
    except SyntaxError as exc:
        line = f" (line {exc.lineno})" if exc.lineno else ""
        yield doc.problem(loc, f"{file} is not valid Python{line}: {exc.msg}")
        return
    except ValueError as exc:  # e.g. NUL bytes
        yield doc.problem(loc, f"{file} is not valid Python: {exc}")
        return
    defined = {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    if function not in defined:
        yield doc.problem(loc, f"{file} defines no function `{function}`")
    for name in _missing_imports(tree, packages):
        yield doc.problem(
            loc,
            f"{file} imports `{name}`, which is not installed here and not in `packages`",
        )


def _missing_imports(tree: ast.Module, packages: list[str]) -> list[str]:
    """Top-level imports (not guarded by try) that would fail when the app starts."""
    listed = {re.split(r"[\[<>=!~]", p)[0].lower().replace("-", "_") for p in packages}
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module.split(".")[0])
    return sorted(
        {n for n in names if n.lower() not in listed and importlib.util.find_spec(n) is None}
    )
