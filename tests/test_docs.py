"""The README's command blocks, run as a reader would run them, compared with what the
README shows (`...` stands for what varies)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT
from servers import Server

README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent


def console_blocks() -> list[list[tuple[str, list[str]]]]:
    """Each ```console block as (command, output lines) pairs."""
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", README, re.S):
        pairs: list[tuple[str, list[str]]] = []
        lines = body.splitlines()
        i = 0
        while i < len(lines):
            command = lines[i].removeprefix("$ ")
            while command.endswith("\\"):
                i += 1
                command = command[:-1] + lines[i].strip()
            output = []
            while i + 1 < len(lines) and not lines[i + 1].startswith("$ "):
                i += 1
                output.append(lines[i])
            pairs.append((command, output))
            i += 1
        blocks.append(pairs)
    return blocks


@pytest.mark.slow
def test_the_first_block_works_as_shown(tmp_path: Path) -> None:
    """validate, build, serve (its spec builds), and `deploy --env prod` (dry run: no token)."""
    (first,) = [b for b in console_blocks() if b[0][0].startswith("endpointgen validate")]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for command, _ in first:
        words = shlex.split(command.split("#")[0])
        if words[1] == "serve":
            continue  # served in test_the_demo_answers_as_shown and tests/served/test_serve.py
        if words[1] == "build":
            words += ["-o", str(tmp_path)]
        if words[1] == "deploy":
            words += ["--dry-run", "-o", str(tmp_path)]
        line = " ".join(w if "*" in w else shlex.quote(w) for w in words)  # globs stay
        done = subprocess.run(line, shell=True, cwd=ROOT, env=env, capture_output=True, text=True)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert (tmp_path / "gpt2.py").is_file()


@pytest.mark.slow
def test_the_demo_answers_as_shown(minilm: Path) -> None:
    """README, "make demo": the curl line gives a 384-dim embedding in the shown shape."""
    (block,) = [b for b in console_blocks() if b[0][0].startswith("curl")]
    ((command, shown),) = block
    server = Server(ROOT / "specs" / "minilm.yaml", env={"API_KEYS": "demo-key"})
    try:
        server.wait_ready()
        words = shlex.split(command.replace("http://127.0.0.1:8000", server.url))
        done = subprocess.run(words, capture_output=True, text=True, timeout=60)
    finally:
        server.stop()
    got = json.loads(done.stdout)
    pattern = re.escape(shown[0]).replace(r"\.\.\.", ".*").replace(r"\-", "-")
    pattern = re.sub(r"-?\d\\\.\d{4}", r"-?\\d\\.\\d+(?:e-?\\d+)?", pattern)
    assert re.fullmatch(pattern, done.stdout.strip()), (shown[0], done.stdout[:200])
    assert got["dim"] == 384 and len(got["embeddings"][0]) == 384


SPEC_MD = (ROOT / "docs" / "spec.md").read_text()


def spec_md_guarantees() -> list[tuple[str, str]]:
    """(section, key) for each row of every table in docs/spec.md: the key is the first
    `backticked` word of the row's first cell (`api_key`, `GET /models`, `max_tokens`)."""
    found = []
    section = ""
    for line in SPEC_MD.splitlines():
        if line.startswith("## ") or line.startswith("### "):
            section = line.lstrip("#").strip()
        elif line.startswith("| `"):
            first = line.split("|")[1]
            found.append((section, re.findall(r"`([^`]+)`", first)[0]))
    return found


def _citations() -> dict[str, str]:
    """Every test's name and docstring, by `file::name`, from the test files' source."""
    import ast

    out = {}
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                out[f"{path.name}::{node.name}"] = ast.get_docstring(node) or ""
    return out


def test_each_guarantee_in_spec_md_tables_has_a_test_that_cites_it() -> None:
    """docs/spec.md is the contract: each row of its tables (a key, an auth mode, a storage,
    an action, a provider, a metric) is proved by a test whose docstring cites it as
    ``docs/spec.md, <section> (`key`)``, so a reader can go from the promise to its proof."""
    docstrings = _citations()
    missing = []
    for section, key in spec_md_guarantees():
        cited = f"spec.md, {section}"
        if not any(cited in doc and f"`{key}`" in doc for doc in docstrings.values()):
            missing.append(f"{section}: `{key}`")
    assert not missing, "no test cites:\n" + "\n".join(missing)
