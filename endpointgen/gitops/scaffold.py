"""`endpointgen init`: a starter spec that validates and builds, and optionally GitOps CI.

The files come from templates/init/. They use `[[ ]]` for values, since GitHub's own
`${{ }}` expressions must pass through the workflow untouched.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import jinja2

from endpointgen import __version__
from endpointgen.compiler import pipeline
from endpointgen.compiler.render import templates_dir
from endpointgen.errors import UsageError
from endpointgen.gitops import config, install
from endpointgen.spec import json_schema

TASKS = ("text-generation", "text-classification", "embeddings")
DEFAULT_NAME = "my-endpoint"
SPECS_DIR = "specs"
BUILD_DIR = "build"
SCHEMA_FILE = "schema/endpointgen.schema.json"
WORKFLOW_FILE = ".github/workflows/endpointgen.yml"
REQUIREMENTS_FILE = "requirements-endpointgen.txt"
DEFAULT_ENVIRONMENTS = ("dev", "prod")
_NAME = re.compile(r"[a-z][a-z0-9-]{0,47}")


@dataclass
class Scaffold:
    """What `init` did: files written, files it left as they were, and what to do next."""

    written: list[Path] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def init(
    name: str = DEFAULT_NAME,
    task: str = "text-generation",
    gitops: bool = False,
    root: Path = Path("."),
    branch: str = "main",
    environments: tuple[str, ...] = DEFAULT_ENVIRONMENTS,
    previews: bool = False,
) -> Scaffold:
    """Write specs/NAME.yaml (+ schema, built module, and the workflow with `gitops`).

    With `gitops`, the spec gets an (empty) overlay per environment, and the workflow
    plans and deploys each into the Modal environment of the same name; `prod` deploys
    only behind the GitHub environment `prod`, after the one before it. The workflow's
    settings (environments, merge gates) go in .endpointgen/gitops.yaml. `previews`: pull
    requests deploy their changed apps into the first environment, under names ending
    in -pr-<number>.
    """
    if previews and not gitops:
        raise UsageError("--previews is part of --gitops: give both")
    for env in environments:
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", env):
            raise UsageError(
                f"'{env}' cannot name an environment: lowercase letters, digits, - and _"
            )
    if gitops and not environments:
        raise UsageError("--gitops needs at least one environment")
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"'{name}' cannot name an app: use lowercase letters, digits and '-', starting "
            "with a letter, at most 48 characters"
        )
    if task not in TASKS:
        raise UsageError(f"unknown task '{task}' (tasks: {', '.join(TASKS)})")
    spec_path = root / SPECS_DIR / f"{name}.yaml"
    module_path = root / BUILD_DIR / f"{name.replace('-', '_')}.py"
    schema_path = root / SCHEMA_FILE
    gitops_files = [root / WORKFLOW_FILE, root / REQUIREMENTS_FILE, root / config.FILE]
    targets = [spec_path, module_path] + (gitops_files if gitops else [])
    existing = [str(p) for p in targets if p.exists()]
    if existing:
        raise UsageError(
            f"will not overwrite existing files: {', '.join(existing)}; "
            "move them or choose another NAME"
        )

    done = Scaffold()
    schema_ref = Path("..") / SCHEMA_FILE  # from specs/ to the schema
    text = _render(f"{task}.yaml.jinja", name=name, schema=schema_ref.as_posix())
    if gitops:
        overlays = "".join(f"  {env}: {{}}\n" for env in environments)
        text += f"environments:  # what differs per environment, merged over the above\n{overlays}"
    _write(spec_path, text, done)
    problems = pipeline.validate(spec_path)
    if problems:  # a name the language refuses (one that shadows a module, say)
        spec_path.unlink()
        done.written.remove(spec_path)
        raise UsageError("; ".join(p.message for p in problems))
    built = pipeline.build(spec_path, root / BUILD_DIR)
    _write(built.path, built.source, done)
    schema_text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if schema_path.exists():
        done.kept.append(schema_path)
    else:
        _write(schema_path, schema_text, done)
    if gitops:
        workflow = (
            _environment()
            .get_template("workflow.yml.jinja")
            .render(
                version=__version__,
                branch=branch,
                specs=SPECS_DIR,
                build=BUILD_DIR,
                requirements=REQUIREMENTS_FILE,
                environments=list(environments),
                gated=[env for env in environments if env == "prod"],
                config=config.FILE,
                record=config.DEFAULT_RECORD,
                previews=previews,
            )
        )
        _write(root / WORKFLOW_FILE, workflow, done)
        _write(root / config.FILE, config.render(environments), done)
        pinned = install.pin(root)  # the requirement, and the wheel it names if vendored
        for rel, data in pinned.files.items():
            _write_bytes(root / rel, data, done)
        _write(root / REQUIREMENTS_FILE, pinned.text, done)
    shown = spec_path.as_posix()
    done.next_steps = [
        *(
            [
                f"modal secret create {name}-auth API_KEYS=<a long random key> --env {env}"
                for env in environments
            ]
            if gitops
            else [f"modal secret create {name}-auth API_KEYS=<a long random key>"]
        ),
        f"API_KEYS=dev-key endpointgen serve {shown}",
        f"endpointgen deploy {shown}",
    ]
    if gitops:
        gated = [env for env in environments if env == "prod"]
        reviewers = f", and required reviewers to {', '.join(gated)}" if gated else ""
        done.next_steps += [
            f"create the GitHub environments {', '.join(environments)} (Settings > "
            "Environments); add MODAL_TOKEN_ID and MODAL_TOKEN_SECRET to each as environment "
            f"secrets, not repository secrets{reviewers}",
            f"commit {SPECS_DIR}/, {BUILD_DIR}/, schema/, .github/, .endpointgen/ and "
            f"{REQUIREMENTS_FILE}",
        ]
    return done


def _write(path: Path, text: str, done: Scaffold) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", encoding="utf-8", newline="\n") as f:  # "x": never overwrite
        f.write(text)
    done.written.append(path)


def _write_bytes(path: Path, data: bytes, done: Scaffold) -> None:
    """`_write` for a file's bytes; the same bytes already there are kept."""
    if path.is_file() and path.read_bytes() == data:
        done.kept.append(path)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("xb") as f:  # "x": never overwrite
            f.write(data)
    except FileExistsError:
        raise UsageError(f"will not overwrite existing file: {path}; move it") from None
    done.written.append(path)


def _render(template: str, **values: str) -> str:
    return _environment().get_template(template).render(**values)


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir() / "init")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        variable_start_string="[[",
        variable_end_string="]]",
        block_start_string="[%",
        block_end_string="%]",
        comment_start_string="[#",
        comment_end_string="#]",
    )
