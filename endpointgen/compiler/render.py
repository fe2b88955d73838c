"""The Jinja environment; the template places what `module.py` computed."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2

from endpointgen.compiler.pycode import PythonIdentifier, comment

if TYPE_CHECKING:
    from endpointgen.compiler.plan import Plan


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
    return env


def render(plan: Plan) -> str:
    from endpointgen.compiler.module import build_module

    module = build_module(plan)
    return environment().get_template("app.py.jinja").render(plan=plan, module=module)
