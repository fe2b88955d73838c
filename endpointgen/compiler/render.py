"""The Jinja environment, and the module's rendering: `templates/module.py.jinja`.

`view.py` computes the values; the templates write the code, one statement per line;
the imports are those the code uses; `pycode.layout` lays out the long statements as
`ruff format` would.
"""

from __future__ import annotations

import ast
import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from endpointgen.compiler import plan as plans
from endpointgen.compiler import view as views
from endpointgen.compiler.pycode import WIDTH, PythonIdentifier, comment, layout, width

if TYPE_CHECKING:
    from endpointgen.compiler.plan import Plan

# What a module may import, by where from, in the order each import line lists them.
RUNTIME_MODULES = (
    *("auth", "files", "handlers", "http", "jobs", "limits", "metrics", "openai", "remote"),
    *("sockets", "tasks", "webhooks"),
)
FASTAPI_NAMES = (
    *("Depends", "FastAPI", "File", "Header", "Path", "Query", "Request", "Response"),
    *("UploadFile", "WebSocket"),
)
TYPING_NAMES = ("Annotated", "Any", "Literal")
PYDANTIC_NAMES = ("BaseModel", "Field")


def templates_dir() -> Path:
    """Inside an installed wheel the templates ship in the package; in a checkout, top level."""
    package = Path(__file__).parent.parent  # endpointgen/, this module is endpointgen/compiler/
    packaged = package / "templates"
    return packaged if packaged.is_dir() else package.parent / "templates"


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    """Compiled templates kept between runs (Jinja checks each against its source),
    which saves every `build` after the first the ~30 ms of compiling them."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = Path(base) / "endpointgen" / f"jinja-{jinja2.__version__}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(str(folder))


def _more(items: list[str]) -> str:
    """Arguments after others: `, a, b`, or nothing."""
    return "".join(f", {item}" for item in items)


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        bytecode_cache=_bytecode_cache(),
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["comment"] = comment
    env.filters["identifier"] = PythonIdentifier
    env.filters["py"] = views.py
    env.filters["kw"] = views.kw
    env.filters["kwargs"] = views.kwargs
    env.filters["more"] = _more
    env.globals |= {
        "CUDA_IMAGE": plans.CUDA_IMAGE,
        "TORCH": plans.TORCH,
        "CPU_TORCH_INDEX": plans.CPU_TORCH_INDEX,
        "VLLM_CACHE_VOLUME": plans.VLLM_CACHE_VOLUME,
    }
    return env


def render(plan: Plan) -> str:
    view = views.view(plan)
    env = environment()
    body = env.get_template("module/body.py.jinja").render(v=view, plan=view.plan)
    imports = _imports(_used(body))
    module = env.get_template("module.py.jinja").render(plan=plan, imports=imports, body=body)
    return layout(module)


def _used(code: str) -> set[str]:
    """The names the code reads (not those it only binds, nor attribute names)."""
    return {node.id for node in ast.walk(ast.parse(code)) if isinstance(node, ast.Name)}


def _imports(used: set[str]) -> dict[str, Any]:
    typing = []
    if "Iterator" in used:
        typing.append("from collections.abc import Iterator")
    if names := [n for n in TYPING_NAMES if n in used]:
        typing.append(_from("typing", names))
    # One block: to the project that keeps this module, endpointgen is an installed
    # package like fastapi, modal and pydantic.
    packages = ["import modal", "from endpointgen import runtime"]
    if names := [m for m in RUNTIME_MODULES if m in used]:
        packages.append(_from("endpointgen.runtime", names))
    packages.append(_from("fastapi", [n for n in FASTAPI_NAMES if n in used or n == "FastAPI"]))
    if names := [n for n in PYDANTIC_NAMES if n in used]:
        packages.append(_from("pydantic", names))
    return {"typing": typing, "packages": packages}


def _from(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    assert width(line) <= WIDTH or len(names) > 1
    return line
