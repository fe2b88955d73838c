"""`endpointgen plan` against real git repositories made in temporary folders.

Golden outputs live in tests/golden/plan/. After a deliberate change to the output,
regenerate them and review the diff:

    ENDPOINTGEN_REGEN_GOLDEN=1 .venv/bin/pytest tests/gitops/test_plan.py -k golden
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import GOLDEN
from repos import Repo
from typer.testing import CliRunner

from endpointgen.cli import app
from endpointgen.gitops import prices

runner = CliRunner()
PLAN_GOLDEN = GOLDEN / "plan"
REGEN = os.environ.get("ENDPOINTGEN_REGEN_GOLDEN") == "1"


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    monkeypatch.chdir(tmp_path)
    return Repo(tmp_path)


BASE = """\
    name: chat
    description: Chat with a small model
    model: {id: org/chat-small, task: text-generation}
    gpu: L40S
    resources: {cpu: 2, memory: 8192}
    scaling: {max_containers: 4, scaledown_window: 300}
    auth: {mode: bearer, secret: chat-auth}
    cors: {origins: ["https://a.example.com", "https://b.example.com"]}
    rate_limit: {limit: 60/minute, key: api_key}
    routes:
      - {path: /generate, method: POST, action: generate}
      - {path: /generate/stream, method: POST, action: generate, stream: true}
      - {path: /complete, method: POST, action: generate, max_tokens: 512}
      - {path: /legacy, method: POST, action: generate}
      - {path: /health, action: health}
    """

CHANGED = """\
    name: chat
    description: Chat with a larger model
    model: {id: org/chat-large, task: text-generation, revision: v2.0}
    gpu: ["H100:2", "A100-80GB:2"]
    resources: {cpu: 4, memory: 16384, timeout: 600}
    scaling: {min_containers: 1, max_containers: 8, scaledown_window: 300}
    secrets: [redis-url]
    auth: {mode: jwt, secret: chat-jwt}
    cors: {origins: ["https://a.example.com", "https://c.example.com"]}
    rate_limit: {limit: 120/minute, key: api_key, storage: redis}
    routes:
      - {path: /generate, method: POST, action: generate, max_tokens: 256}
      - path: /generate/stream
        method: POST
        action: generate
        stream: true
        auth: none
        public: true
        rate_limit: {limit: 10/minute, key: ip}
      - {path: /complete, method: POST, action: generate, max_tokens: 512, stream: true}
      - {path: /legacy, method: PUT, action: generate}
      - {path: /hooks/github, method: POST, action: webhook, provider: github,
         secret: gh-hook, env: GITHUB_WEBHOOK_SECRET, rate_limit: none}
      - {path: /health, action: health}
    """

EMBED = """\
    name: embed
    model: {id: org/embedder, task: embeddings}
    gpu: T4
    scaling: {max_containers: 2}
    auth: {mode: api_key, secret: embed-keys}
    routes:
      - {path: /embed, method: POST, action: embed}
      - {path: /health, action: health}
    """

CPU_ONLY = """\
    name: hello
    routes:
      - {path: /health, action: health}
    """


@pytest.fixture
def scenario(repo: Repo) -> Repo:
    """v1: chat, embed, same, cosmetic. Working tree: chat changed, embed deleted, hello new,
    cosmetic with only a comment added, same untouched."""
    repo.write("specs/chat.yaml", BASE)
    repo.write("specs/embed.yaml", EMBED)
    repo.write("specs/same.yaml", CPU_ONLY.replace("hello", "same"))
    repo.write("specs/cosmetic.yml", CPU_ONLY.replace("hello", "cosmetic"))
    repo.write("README.md", "not a spec\n")
    repo.commit("v1", tag="v1")
    repo.write("specs/chat.yaml", CHANGED)
    (repo.root / "specs/embed.yaml").unlink()
    repo.write("specs/team/hello.yaml", CPU_ONLY)
    repo.write(
        "specs/cosmetic.yml",
        "# a comment\n" + textwrap.dedent(CPU_ONLY).replace("hello", "cosmetic"),
    )
    return repo


@pytest.mark.parametrize(
    ("fmt", "golden"), [("table", "plan.txt"), ("markdown", "plan.md"), ("json", "plan.json")]
)
def test_golden_plan_of_a_folder(scenario: Repo, fmt: str, golden: str) -> None:
    result = runner.invoke(app, ["plan", "specs", "--base", "v1", "--format", fmt])
    assert result.exit_code == 0, result.output
    path = PLAN_GOLDEN / golden
    if REGEN:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(result.output, encoding="utf-8")
    assert path.is_file(), (
        "no golden plan: run ENDPOINTGEN_REGEN_GOLDEN=1 pytest tests/gitops/test_plan.py"
    )
    assert result.output == path.read_text(encoding="utf-8"), (
        f"{golden} differs: ENDPOINTGEN_REGEN_GOLDEN=1 pytest tests/gitops/test_plan.py -k golden, "
        "then review the diff"
    )


def _plan_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["plan", *args, "--format", "json"])
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return doc


def _texts(spec: dict[str, Any]) -> set[str]:
    out = set()
    for c in spec["changes"]:
        if c["kind"] == "added":
            out.add(f"+ {c['what']}" + (f": {c['after']}" if c["after"] else ""))
        elif c["kind"] == "removed":
            out.add(f"- {c['what']}")
        else:
            out.add(f"{c['what']}: {c['before']} -> {c['after']}")
    return out


def test_folder_lists_each_changed_spec_and_nothing_else(scenario: Repo) -> None:
    doc = _plan_json("specs", "--base", "v1")
    assert doc["estimate"]["prices_source"] == prices.PRICES_SOURCE
    by_file = {s["file"]: s for s in doc["specs"]}
    assert set(by_file) == {
        "specs/chat.yaml",
        "specs/cosmetic.yml",
        "specs/embed.yaml",
        "specs/team/hello.yaml",
    }
    assert by_file["specs/embed.yaml"]["status"] == "removed"
    assert by_file["specs/team/hello.yaml"]["status"] == "added"
    assert by_file["specs/cosmetic.yml"]["status"] == "unchanged"
    assert by_file["specs/cosmetic.yml"]["changes"] == []
    chat = by_file["specs/chat.yaml"]
    assert chat["status"] == "changed"
    assert chat["warnings"] == [
        "WARNING: route becomes public: POST /generate/stream (auth bearer -> none)"
    ]
    changes = _texts(chat)
    expected = {
        # routes: added, removed, changed (method, action, auth, rate limit, stream, limits)
        "- POST /legacy",
        "+ PUT /legacy: generate, auth jwt, rate limit 120/minute per api_key in redis",
        "+ POST /hooks/github: webhook, auth signature, github webhook",
        "POST /generate max_tokens: 1024 -> 256",
        "POST /complete stream: no -> yes",
        "POST /generate/stream auth: bearer -> none",
        "POST /generate/stream rate limit: 60/minute per api_key -> 10/minute per ip (own budget)",
        # auth, CORS, rate limit
        "auth mode: bearer -> jwt",
        "auth secret: chat-auth -> chat-jwt",
        "auth env: API_KEYS -> JWT_SECRET",
        "- CORS origin https://b.example.com",
        "+ CORS origin https://c.example.com",
        "app rate limit: 60/minute per api_key -> 120/minute per api_key in redis",
        # GPU, scaling, resources
        "GPU: L40S -> H100:2 or A100-80GB:2",
        "min_containers: Modal default -> 1",
        "max_containers: 4 -> 8",
        "cpu: 2 cores -> 4 cores",
        "memory: 8192 MiB -> 16384 MiB",
        "timeout: Modal default -> 600 s",
        # image and model
        "+ package pyjwt: pyjwt[crypto]==2.15.1",
        "+ package redis: redis==8.1.0",
        "model id: org/chat-small -> org/chat-large",
        "model revision: latest -> v2.0",
        "description: Chat with a small model -> Chat with a larger model",
        "- Modal Secret chat-auth",
        "+ Modal Secret chat-jwt",
        "+ Modal Secret redis-url",
        "+ Modal Secret gh-hook",
    }
    assert expected <= changes, sorted(expected - changes)
    # Routes on the app's budget follow the app-level line instead of repeating it.
    assert not any(t.startswith("POST /generate rate limit") for t in changes)
    # A route that follows the app's auth mode is not listed once per route.
    assert not any(t.startswith("POST /complete auth") for t in changes)


def test_cost_estimate_with_a_fallback_list_is_a_range(scenario: Repo) -> None:
    chat = _plan_json("specs/chat.yaml", "--base", "v1")["specs"][0]
    base = 2 * prices.CPU_CORE_HOURLY + 8 * prices.MEMORY_GIB_HOURLY
    before = chat["estimated_cost"]["before"]
    assert before["per_container"] == [round(base + 1.95, 4)] * 2
    assert before["always_on"] == [0.0, 0.0]
    assert before["ceiling"] == [round(4 * (base + 1.95), 4)] * 2
    after = chat["estimated_cost"]["after"]
    base = 4 * prices.CPU_CORE_HOURLY + 16 * prices.MEMORY_GIB_HOURLY
    low, high = base + 2 * 2.50, base + 2 * 3.95
    assert after["per_container"] == [round(low, 4), round(high, 4)]
    assert after["always_on"] == [round(low, 4), round(high, 4)]  # min_containers: 1
    assert after["ceiling"] == [round(8 * low, 4), round(8 * high, 4)]
    table = runner.invoke(app, ["plan", "specs/chat.yaml", "--base", "v1"]).output
    assert "$5.32-$8.22" in table and "(min_containers 1)" in table
    assert "Estimate from Modal list prices" in table and prices.PRICES_DATE in table


def test_every_price_in_the_table_is_dated_and_complete() -> None:
    from endpointgen.spec.gpu import GPU_TYPES

    assert set(prices.GPU_HOURLY) == set(GPU_TYPES)
    assert prices.PRICES_DATE and prices.PRICES_SOURCE.startswith("https://modal.com/")
    cost = prices.estimate(None, None, None, None, None)
    assert cost.ceiling is None and prices.money(cost.ceiling) == "no limit"
    assert cost.per_container[0] == round(0.125 * 0.047 + 0.125 * 0.008, 4)


# One commit per kind of change: (what the spec becomes, a change the plan must name).
ONE_CHANGE = [
    ("gpu: L40S", "gpu: H100:2", "GPU: L40S -> H100:2"),
    ("max_containers: 4", "max_containers: 6", "max_containers: 4 -> 6"),
    ("scaledown_window: 300", "scaledown_window: 60", "scaledown_window: 300 s -> 60 s"),
    ("cpu: 2,", "cpu: 0.5,", "cpu: 2 cores -> 0.5 cores"),
    ("org/chat-small", "org/chat-tiny", "model id: org/chat-small -> org/chat-tiny"),
    ("60/minute, key: api_key}", "5/second, key: api_key}", "app rate limit: 60/minute"),
    ('"https://b.example.com"', '"https://d.example.com"', "+ CORS origin https://d.example.com"),
    ("mode: bearer", "mode: api_key", "auth mode: bearer -> api_key"),
    ("/legacy, method: POST", "/legacy, method: DELETE", "+ DELETE /legacy"),
    ("max_tokens: 512}", "max_tokens: 100}", "POST /complete max_tokens: 512 -> 100"),
    ("stream: true}", "stream: false}", "POST /generate/stream stream: yes -> no"),
    (
        "{path: /health, action: health}",
        "{path: /health, action: health}\n  - {path: /x, action: health}",
        "+ GET /x: health, auth none",
    ),
    ("gpu: L40S", "gpu: L40S\nimage: {system_packages: [ffmpeg]}", "+ system package ffmpeg"),
    ("gpu: L40S", "gpu: L40S\nimage: {commands: [echo hi]}", "+ build command echo hi"),
    ("gpu: L40S", "gpu: L40S\nimage: {python: '3.12'}", "python: 3.11 -> 3.12"),
]


@pytest.mark.parametrize(("old", "new", "expected"), ONE_CHANGE, ids=[c[2] for c in ONE_CHANGE])
def test_each_kind_of_change_between_two_commits(
    repo: Repo, old: str, new: str, expected: str
) -> None:
    base = textwrap.dedent(BASE)
    assert old in base
    repo.write("specs/chat.yaml", base)
    repo.commit("base")
    repo.write("specs/chat.yaml", base.replace(old, new))
    repo.commit("one change")
    spec = _plan_json("specs/chat.yaml", "--base", "HEAD~1")["specs"][0]
    texts = _texts(spec)
    assert any(t.startswith(expected) for t in texts), sorted(texts)
    assert spec["status"] == "changed"
    again = _plan_json("specs/chat.yaml")["specs"][0]  # against HEAD: nothing left to deploy
    assert again["status"] == "unchanged" and again["changes"] == []


def test_app_removed_renamed_and_turned_public(repo: Repo) -> None:
    repo.write("specs/chat.yaml", BASE)
    repo.commit("base")
    open_app = textwrap.dedent(BASE).replace("name: chat", "name: chat-v2")
    open_app = open_app.replace("auth: {mode: bearer, secret: chat-auth}", "auth: {mode: none}")
    open_app = open_app.replace("key: api_key}", "key: ip}")
    open_app = open_app.replace("action: generate", "action: generate, public: true")
    repo.write("specs/chat.yaml", open_app)
    spec = _plan_json("specs/chat.yaml")["specs"][0]
    warnings = "\n".join(spec["warnings"])
    assert "app renamed: chat -> chat-v2" in warnings and "modal app stop chat" in warnings
    assert "WARNING: app auth turned off (auth mode bearer -> none)" in warnings
    for route in ("POST /generate", "POST /generate/stream", "POST /complete", "POST /legacy"):
        assert f"WARNING: route becomes public: {route} (auth bearer -> none)" in warnings
    (repo.root / "specs/chat.yaml").unlink()
    gone = _plan_json("specs/chat.yaml")["specs"][0]
    assert gone["status"] == "removed"
    assert _texts(gone) == {"- app chat"}
    assert gone["estimated_cost"]["after"] is None


def test_invalid_at_the_base_is_a_note_and_invalid_now_is_an_error(repo: Repo) -> None:
    repo.write("specs/chat.yaml", "name: chat\nroutes: []\n")
    repo.commit("broken")
    repo.write("specs/chat.yaml", BASE)
    spec = _plan_json("specs/chat.yaml")["specs"][0]
    assert spec["status"] == "added"
    assert (
        spec["notes"][0] == "at HEAD the spec did not build (1 problem(s)); compared as a new app"
    )
    repo.write("specs/chat.yaml", "name: chat\nroutes:\n  - {path: /h, action: helth}\n")
    result = runner.invoke(app, ["plan", "specs/chat.yaml"])
    assert result.exit_code == 1
    assert "specs/chat.yaml:3:24: routes[0].action:" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["specs/chat.yaml", "--base", "no-such-ref"], "'no-such-ref' names no commit"),
        (["specs/chat.yaml", "--base", "--output=/tmp/x"], "is not a git ref"),
        (["specs/nope.yaml"], "specs/nope.yaml: no such file, here or at HEAD"),
        (["specs/chat.yaml", "--format", "html"], "--format is one of table, markdown, json"),
        (["specs/chat.yaml", "--env", "prod"], "no environment named 'prod'"),
    ],
)
def test_usage_errors_are_one_line(repo: Repo, args: list[str], message: str) -> None:
    repo.write("specs/chat.yaml", BASE)
    repo.commit("base")
    result = runner.invoke(app, ["plan", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_outside_git_is_a_clear_error(tmp_path: Path) -> None:
    spec = tmp_path / "chat.yaml"
    spec.write_text(textwrap.dedent(BASE))
    result = runner.invoke(app, ["plan", str(spec)])
    assert result.exit_code == 1
    assert "is not in a git repository" in result.output


def test_environment_overlay_is_planned_on_both_sides(repo: Repo) -> None:
    text = textwrap.dedent(BASE) + "environments:\n  prod: {gpu: H100}\n"
    repo.write("specs/chat.yaml", text)
    repo.commit("base")
    repo.write("specs/chat.yaml", text.replace("prod: {gpu: H100}", "prod: {gpu: H200}"))
    base_only = _plan_json("specs/chat.yaml")["specs"][0]
    assert base_only["status"] == "unchanged"
    prod = _plan_json("specs/chat.yaml", "--env", "prod")["specs"][0]
    assert "GPU: H100 -> H200" in _texts(prod)


def test_folder_with_nothing_changed_says_so(repo: Repo) -> None:
    repo.write("specs/chat.yaml", BASE)
    repo.commit("base")
    table = runner.invoke(app, ["plan", "specs"])
    assert table.exit_code == 0 and table.output == "no spec under specs changed against HEAD\n"
    markdown = runner.invoke(app, ["plan", "specs", "--format", "markdown"])
    assert "No spec under specs changed against HEAD." in markdown.output
    assert _plan_json("specs")["specs"] == []


def test_plan_as_a_real_process_from_another_folder(scenario: Repo, tmp_path: Path) -> None:
    """git runs in the spec's repository, whatever the working directory."""
    elsewhere = tmp_path.parent
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "endpointgen",
            "plan",
            str(scenario.root / "specs/chat.yaml"),
            "--base",
            "v1",
            "--format",
            "markdown",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "> **WARNING: route becomes public: POST /generate/stream" in done.stdout
    assert "| gpu | GPU: L40S -> H100:2 or A100-80GB:2 |" in done.stdout


def test_plan_says_what_the_deployed_app_does_that_the_spec_does_not_show(repo: Repo) -> None:
    """An unpinned model, a rate limit counted per container, a generator's concurrency."""
    spec = yaml.safe_load(BASE)
    spec["model"] = {"id": "org/gpt", "task": "text-generation"}
    spec["auth"] = {"mode": "bearer", "secret": "chat-keys"}
    spec["scaling"] = {"max_containers": 4, "max_inputs": 8}
    spec["rate_limit"] = {"limit": "10/minute", "key": "ip"}
    spec["routes"] = [{"path": "/g", "method": "POST", "action": "generate"}]
    repo.write("specs/chat.yaml", BASE)
    repo.commit("base")
    repo.write("specs/chat.yaml", yaml.safe_dump(spec))
    notes = _plan_json("specs/chat.yaml")["specs"][0]["notes"]
    assert notes == [
        "model org/gpt has no revision: each cold start asks the Hub for the latest `main`; "
        "pin `revision` to deploy what was tested",
        "rate limit 10/minute is counted in memory, per container: across containers that is "
        "40 per minute (max_containers 4); use `storage: redis` or `modal-dict` for one count",
        "every request, refused ones (401, 429) and /health probes included, lands on the GPU "
        "containers and keeps them warm: one such request every 60 s (scaledown_window) "
        "keeps a GPU container up, $2.11/h ($50.59/day) with no model call; `shape: split` "
        "puts a CPU web tier in front ($0.0069/h), so only model calls reach a GPU",
    ]
    spec["model"]["revision"] = "v1"
    spec["rate_limit"]["storage"] = "modal-dict"
    spec["scaling"] = {"max_inputs": 8, "target_inputs": 8}
    spec["resources"] = {"timeout": 600}
    spec["shape"] = "split"
    repo.write("specs/chat.yaml", yaml.safe_dump(spec))
    notes = _plan_json("specs/chat.yaml")["specs"][0]["notes"]
    assert notes == [
        "resources.timeout is 600 s, but Modal answers a web request that runs past 150 s "
        "with a redirect the client must follow; keep routes below that, or stream",
    ]
    changes = _plan_json("specs/chat.yaml")["specs"][0]["changes"]
    (concurrency,) = [c for c in changes if c["what"] == "concurrency"]
    assert concurrency["before"] == "8 requests per container, autoscaler aims for 1"
    assert concurrency["after"] == "8 requests per container, autoscaler aims for 8"
    shape = [
        c for c in _plan_json("specs/chat.yaml")["specs"][0]["changes"] if c["what"] == "shape"
    ]
    assert shape[0]["after"] == "CPU web tier + model class"


def test_each_version_of_a_spec_is_compiled_once(
    repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`plan` of a changed spec that ships a handler and has a committed module from an
    older endpointgen: the diff, the shipped files and the built module all read one
    compile of each version (two plans: the base's and today's, plus the module's own
    folder's)."""
    from endpointgen.compiler import plan as plans
    from endpointgen.gitops import gitplan

    repo.write("handlers/echo.py", "def echo(values):\n    return values\n")
    spec = """\
        name: echo
        routes:
          - {path: /echo, method: POST, action: handler, handler: handlers/echo.py:echo}
        """
    path = repo.write("echo.yaml", spec)
    built = subprocess.run(
        [sys.executable, "-m", "endpointgen", "build", str(path), "-o", str(repo.root / "build")],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    module = repo.root / "build" / "echo.py"
    module.write_text(module.read_text().replace("endpointgen 0.", "endpointgen 0.0.", 1))
    repo.commit("echo")
    repo.write("echo.yaml", spec + "description: echoes\n")
    made: list[str] = []

    def counted(spec: Any, spec_file: Any, out_dir: Any, *rest: Any) -> plans.Plan:
        made.append(str(out_dir))
        return plans.make_plan(spec, spec_file, out_dir, *rest)

    monkeypatch.setattr(gitplan, "make_plan", counted)
    monkeypatch.setattr(gitplan, "_COMPILED", {})
    result = gitplan.plan_spec(path)
    assert result.status == "changed"
    assert any(c.what == "built module build/echo.py" for c in result.changes)
    assert sorted(made) == sorted([str(repo.root), str(repo.root), str(repo.root / "build")])
