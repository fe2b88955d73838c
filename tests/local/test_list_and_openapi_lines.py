"""What `list` and `openapi` print about routes and auth, as a user reads them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from endpointgen.cli import app

OPENAI = """\
name: chat
model: {id: gpt2, task: text-generation, revision: v1}
auth: {mode: bearer, secret: chat-keys}
routes:
  - {path: /v1, action: openai}
  - {path: /health, method: GET, action: health}
"""
EMBEDDINGS = """\
name: vectors
model: {id: sentence-transformers/all-MiniLM-L6-v2, task: embeddings, revision: v1}
auth: {mode: bearer, secret: vector-keys}
routes:
  - {path: /openai, action: openai}
"""


def test_list_shows_the_calls_an_openai_route_serves(tmp_path: Path) -> None:
    """docs/spec.md, OpenAI-compatible routes: one `openai` route is several calls, and
    `list` names each, with its method."""
    (tmp_path / "chat.yaml").write_text(OPENAI, encoding="utf-8")
    (tmp_path / "vectors.yaml").write_text(EMBEDDINGS, encoding="utf-8")
    result = CliRunner().invoke(app, ["list", str(tmp_path)])
    assert result.exit_code == 0, result.output
    chat, vectors = (line for line in result.output.splitlines() if "yaml" in line)
    assert "GET /v1/models, POST /v1/completions, POST /v1/chat/completions, GET /health" in chat
    assert "GET /openai/models, POST /openai/embeddings" in vectors


def test_openapi_says_nothing_about_unset_credentials(tmp_path: Path) -> None:
    """`openapi` serves no request, so an unset API_KEYS is not worth a warning there (the
    app itself still warns when it starts)."""
    spec = tmp_path / "chat.yaml"
    spec.write_text(OPENAI, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEYS", "JWT_SECRET")}
    done = subprocess.run(
        [sys.executable, "-m", "endpointgen", "openapi", str(spec)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert '"/v1/chat/completions"' in done.stdout
    assert "API_KEYS" not in done.stderr and done.stderr.strip() == ""
