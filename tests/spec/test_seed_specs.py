"""Every example spec in specs/, served by a real `endpointgen serve` process over HTTP.

One server per spec (module-scoped), reused by every test of that spec. Each spec's happy
paths first, then the bad inputs each new key must refuse: wrong types, missing values,
enum and range violations, oversize and chunked bodies, wrong media types, unreadable
uploads, and every way out of a file route's folder.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import httpx
import modal
import pytest
from conftest import SPECS, import_file, write_spec
from PIL import Image
from servers import Server

from endpointgen.compiler import pipeline
from endpointgen.local import contract
from endpointgen.runtime import files

pytestmark = pytest.mark.slow

KEY = "key-one"
API_KEY = {"X-API-Key": KEY}
BEARER = {"Authorization": f"Bearer {KEY}"}
HOOK_SECRETS = {
    "GITHUB_WEBHOOK_SECRET": "github-signing-secret",
    "STRIPE_WEBHOOK_SECRET": "whsec_stripe-signing-secret",
    "SLACK_SIGNING_SECRET": "slack-signing-secret",
}
SECRET_TEXT = "TOP-SECRET: the launch codes are 0000"
REPORT = (SPECS / "files" / "report.txt").read_text()


def serving(spec: Path) -> Iterator[Server]:
    server = Server(spec, env={"API_KEYS": KEY, **HOOK_SECRETS})
    server.wait_ready()
    yield server
    server.stop()


def assert_error(r: httpx.Response, status: int, error: str | None = None) -> dict[str, Any]:
    """A JSON error body with the request id the response header carries; no stack trace."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = r.json()
    assert isinstance(body["error"], str) and body["error"]
    assert body["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    if error is not None:
        assert body["error"] == error
    return body


def assert_422(r: httpx.Response, *loc: str) -> None:
    body = assert_error(r, 422, "invalid request")
    assert [tuple(d["loc"]) for d in body["detail"]] == [loc], body


# --- hello: constant and templated answers, typed query parameters ---------------------


@pytest.fixture(scope="module")
def hello() -> Iterator[Server]:
    yield from serving(SPECS / "hello.yaml")


def test_hello_answers(hello: Server) -> None:
    """docs/spec.md, Top level (`auth`): without `auth` the mode is none: hello.yaml sets none, and
    its routes answer a client that sends no credential."""
    r = httpx.get(hello.url + "/hello")
    assert r.status_code == 200 and r.json() == "Hello, World!"
    assert r.headers["content-type"] == "application/json"
    r = httpx.get(hello.url + "/greet", params={"name": "Alice"})
    assert r.status_code == 200 and r.text == "Hello, Alice!"
    assert r.headers["content-type"].startswith("text/plain")
    assert httpx.get(hello.url + "/health").json() == {"status": "ok"}


def test_hello_placeholders_in_values_stay_text(hello: Server) -> None:
    """A value holding `{name}` is not expanded again: templates are filled once."""
    r = httpx.get(hello.url + "/greet", params={"name": "{name} {x}"})
    assert r.text == "Hello, {name} {x}!"


@pytest.mark.parametrize(
    "query",
    [{}, {"name": ""}, {"name": "x" * 101}, {"nam": "Alice"}],
    ids=["missing", "too-short", "too-long", "misspelt"],
)
def test_hello_refuses_a_bad_name(hello: Server, query: dict[str, str]) -> None:
    assert_422(httpx.get(hello.url + "/greet", params=query), "query", "name")


def test_hello_keeps_the_callers_request_id(hello: Server) -> None:
    r = httpx.get(hello.url + "/greet", headers={"X-Request-ID": "trace-greet-1"})
    assert assert_error(r, 422)["request_id"] == r.headers["X-Request-ID"]
    assert r.headers["X-Client-Request-ID"] == "trace-greet-1"


# --- items: typed path parameters, a declared JSON body, 201 -------------------------


@pytest.fixture(scope="module")
def items() -> Iterator[Server]:
    yield from serving(SPECS / "items.yaml")


def test_items_read_and_create(items: Server) -> None:
    """docs/spec.md, Routes (`respond`) and docs/spec.md, Routes without a model (`respond`):
    answers `response` with the route's `status` (201); `{name}` placeholders take body fields,
    and one that is only a placeholder keeps the value's type (`{item_id}` gives a number)."""
    r = httpx.get(items.url + "/items/7", headers=API_KEY)
    assert r.status_code == 200 and r.json() == {"id": 7, "data": "..."}
    body = {"name": "lamp", "price": 12.5, "tags": ["home"]}
    r = httpx.post(items.url + "/items", json=body, headers=API_KEY)
    assert r.status_code == 201
    assert r.json() == {"id": 123, "status": "created", "name": "lamp", "price": 12.5}


def test_items_need_the_key(items: Server) -> None:
    assert_error(httpx.get(items.url + "/items/7"), 401)
    assert_error(httpx.post(items.url + "/items", json={"name": "a", "price": 1}), 401)


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/items/seven", ("path", "item_id")),
        ("/items/1.5", ("path", "item_id")),
        ("/items/0", ("path", "item_id")),
        ("/items/-3", ("path", "item_id")),
    ],
)
def test_items_refuse_a_bad_id(items: Server, path: str, loc: tuple[str, str]) -> None:
    assert_422(httpx.get(items.url + path, headers=API_KEY), *loc)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "lamp", "price": "cheap"}, ("body", "price")),
        ({"name": "lamp", "price": -1}, ("body", "price")),
        ({"name": "lamp"}, ("body", "price")),
        ({"price": 3}, ("body", "name")),
        ({"name": "", "price": 3}, ("body", "name")),
        ({"name": "x" * 201, "price": 3}, ("body", "name")),
        ({"name": ["lamp"], "price": 3}, ("body", "name")),
        ({"name": "lamp", "price": 3, "tags": "home"}, ("body", "tags")),
        ({"name": "lamp", "price": 3, "tags": [str(i) for i in range(11)]}, ("body", "tags")),
        ({"name": "lamp", "price": 3, "colour": "red"}, ("body", "colour")),
        (["lamp", 3], ("body",)),
    ],
    ids=[
        "price-a-word",
        "price-below-min",
        "price-missing",
        "name-missing",
        "name-empty",
        "name-too-long",
        "name-a-list",
        "tags-a-string",
        "tags-over-max-items",
        "unknown-field",
        "body-a-list",
    ],
)
def test_items_refuse_a_bad_body(items: Server, body: Any, loc: tuple[str, ...]) -> None:
    assert_422(httpx.post(items.url + "/items", json=body, headers=API_KEY), *loc)


def test_items_refuse_a_body_that_is_not_json(items: Server) -> None:
    r = httpx.post(
        items.url + "/items",
        content=b"name=lamp&price=3",
        headers={**API_KEY, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_error(r, 422, "invalid request")


# --- batch: a validated body handed to a handler; exceptions mapped by `errors:` -----


@pytest.fixture(scope="module")
def batch() -> Iterator[Server]:
    yield from serving(SPECS / "batch.yaml")


def test_batch_results(batch: Server) -> None:
    r = httpx.post(batch.url + "/batch", json={"texts": ["hello", "world"]}, headers=BEARER)
    assert r.status_code == 200 and r.json() == {"results": ["hello", "world"], "count": 2}
    body = {"texts": ["hello", "there"], "model": "shout"}
    r = httpx.post(batch.url + "/batch", json=body, headers=BEARER)
    assert r.json() == {"results": ["HELLO", "THERE"], "count": 2}
    r = httpx.post(batch.url + "/batch", json={"texts": ["x"] * 100}, headers=BEARER)
    assert r.status_code == 200 and r.json()["count"] == 100


def test_batch_maps_the_handlers_value_error_to_400(batch: Server) -> None:
    """docs/spec.md, Top level (`errors`): an exception class named under `errors` answers with its
    status and the spec's message, never the exception's."""
    r = httpx.post(batch.url + "/batch", json={"texts": ["ok", ""]}, headers=BEARER)
    assert_error(r, 400, "the input could not be processed")
    assert "empty text" not in r.text  # the spec's message, not the exception's


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"texts": []}, ("body", "texts")),
        ({"texts": ["x"] * 101}, ("body", "texts")),
        ({"texts": "hello"}, ("body", "texts")),
        ({"texts": [1, 2]}, ("body", "texts", "0")),
        ({}, ("body", "texts")),
        ({"texts": ["a"], "model": "whisper"}, ("body", "model")),
        ({"texts": ["a"], "model": None}, ("body", "model")),
    ],
    ids=[
        "below-min-items",
        "over-max-items",
        "not-a-list",
        "numbers-not-texts",
        "missing",
        "enum-violation",
        "enum-null",
    ],
)
def test_batch_refuses_bad_bodies(batch: Server, body: Any, loc: tuple[str, ...]) -> None:
    r = httpx.post(batch.url + "/batch", json=body, headers=BEARER)
    detail = assert_error(r, 422, "invalid request")["detail"]
    assert tuple(str(part) for part in detail[0]["loc"]) == loc, detail


def test_batch_needs_the_token(batch: Server) -> None:
    assert_error(httpx.post(batch.url + "/batch", json={"texts": ["a"]}), 401)


# --- responses: JSON, text, streams, Server-Sent Events and files ---------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of specs/responses.yaml and what it names, with symlinks planted in the
    served folder that point outside it, and a secret file outside it."""
    root = tmp_path_factory.mktemp("responses")
    site = root / "site"
    site.mkdir()
    shutil.copy(SPECS / "responses.yaml", site / "responses.yaml")
    shutil.copytree(SPECS / "handlers", site / "handlers")
    shutil.copytree(SPECS / "files", site / "files")
    (root / "secret.txt").write_text(SECRET_TEXT)
    (site / "secret.txt").write_text(SECRET_TEXT)
    (site / "files" / "escape.txt").symlink_to(root / "secret.txt")
    (site / "files" / "relative-escape.txt").symlink_to(Path("..", "secret.txt"))
    (site / "files" / "outside").symlink_to(root, target_is_directory=True)
    (site / "files" / "linked-report.txt").symlink_to("report.txt")  # stays inside
    return site


@pytest.fixture(scope="module")
def responses(site: Path) -> Iterator[Server]:
    yield from serving(site / "responses.yaml")


def raw_get(server: Server, target: str) -> tuple[int, bytes]:
    """GET with the request target sent byte for byte: no client normalises `..` away."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.putrequest("GET", target, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_responses_json_and_text(responses: Server) -> None:
    """docs/spec.md, Routes without a model (`respond`): `response_type` `json` or `text`."""
    r = httpx.get(responses.url + "/json")
    assert r.status_code == 200 and r.json() == {"status": "ok", "data": [1, 2, 3]}
    r = httpx.get(responses.url + "/text")
    assert r.text == "Plain text response"
    assert r.headers["content-type"].startswith("text/plain")


def test_responses_badge_is_svg_bytes(responses: Server) -> None:
    """docs/spec.md, Routes without a model (`handler`): `response_type: binary` sends the
    handler's bytes as the route's `media_type`, escaped by the handler."""
    r = httpx.get(responses.url + "/badge.svg", params={"label": "<v1>"})
    assert r.status_code == 200 and r.headers["content-type"] == "image/svg+xml"
    assert r.content.startswith(b"<svg ") and b"&lt;v1&gt;" in r.content


def test_responses_stream_lines_as_they_come(responses: Server) -> None:
    with httpx.stream("GET", responses.url + "/stream", params={"count": 3}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "content-length" not in r.headers  # sent as it is made
        lines = list(r.iter_lines())
    assert lines == ["Line 0", "Line 1", "Line 2"]
    r = httpx.get(responses.url + "/stream")  # the default count
    assert r.text.count("\n") == 100


def test_responses_server_sent_events(responses: Server) -> None:
    with httpx.stream("GET", responses.url + "/events", params={"count": 3}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        data = [line.removeprefix("data: ") for line in r.iter_lines() if line]
    assert [json.loads(item) for item in data] == ["Line 0\n", "Line 1\n", "Line 2\n"]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/stream", {"count": "0"}),
        ("/stream", {"count": "1001"}),
        ("/stream", {"count": "three"}),
        ("/events", {"count": "101"}),
        ("/events", {"count": "2.5"}),
    ],
)
def test_responses_refuse_a_bad_count(responses: Server, path: str, query: dict[str, str]) -> None:
    assert_422(httpx.get(responses.url + path, params=query), "query", "count")


def test_responses_download(responses: Server) -> None:
    """docs/spec.md, Routes without a model (`file`): the path ends with the file's name; the file
    comes with the route's `media_type`, as an attachment named after it; a missing one is a
    404."""
    r = httpx.get(responses.url + "/download/report.txt")
    assert r.status_code == 200 and r.text == REPORT
    assert r.headers["content-type"].startswith("text/plain")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith("attachment") and 'filename="report.txt"' in disposition
    # A symlink that stays inside the folder is an ordinary file.
    assert httpx.get(responses.url + "/download/linked-report.txt").text == REPORT
    assert_error(httpx.get(responses.url + "/download/nothing.txt"), 404)


TRAVERSALS = [
    "/download/../responses.yaml",
    "/download/../../secret.txt",
    "/download/files/../../secret.txt",
    "/download/%2e%2e/responses.yaml",
    "/download/%2E%2E/%2E%2E/secret.txt",
    "/download/..%2fsecret.txt",
    "/download/..%2F..%2Fsecret.txt",
    "/download/%2e%2e%2fsecret.txt",
    "/download/%252e%252e/secret.txt",
    "/download/%252e%252e%252fsecret.txt",
    "/download/..%5csecret.txt",
    "/download/..%5C..%5Csecret.txt",
    "/download/..\\secret.txt",
    "/download//etc/passwd",
    "/download/%2fetc%2fpasswd",
    "/download/%2Fetc/passwd",
    "/download/report.txt%00",
    "/download/%00../secret.txt",
    "/download/..%00/secret.txt",
    "/download/escape.txt",
    "/download/relative-escape.txt",
    "/download/outside/secret.txt",
    "/download/outside/site/responses.yaml",
    "/download/",
    "/download/.",
    "/download/..",
]


@pytest.mark.parametrize("target", TRAVERSALS)
def test_responses_file_route_never_leaves_its_folder(
    responses: Server, site: Path, target: str
) -> None:
    """docs/spec.md, Routes without a model (`file`): a requested path never leaves its folder:
    `..`, encoded forms and symlinks pointing outside are all answered 404, as the doc says,
    and nothing from outside comes back."""
    status, body = raw_get(responses, target)
    assert status == 404, (status, body[:200])
    assert SECRET_TEXT.encode() not in body
    assert b"name: responses" not in body and b"root:" not in body


def test_responses_absolute_path_to_a_real_file(responses: Server, site: Path) -> None:
    secret = site.parent / "secret.txt"
    assert secret.read_text() == SECRET_TEXT  # the target exists and is readable
    for target in ("/download/" + str(secret), "/download/" + str(secret).replace("/", "%2f")):
        status, body = raw_get(responses, target)
        assert status == 404 and SECRET_TEXT.encode() not in body


# --- sentiment: a handler around a loaded text classifier ----------------------------


@pytest.fixture(scope="module")
def sentiment() -> Iterator[Server]:
    yield from serving(SPECS / "sentiment.yaml")


def test_sentiment_with_the_model(sentiment: Server) -> None:
    body = {"text": "what a lovely day"}
    r = httpx.post(sentiment.url + "/sentiment", json=body, headers=API_KEY, timeout=30)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"sentiment", "confidence"}
    assert answer["sentiment"] in {"negative", "neutral", "positive"}
    assert 1 / 3 <= answer["confidence"] <= 1  # the top of three labels
    again = httpx.post(sentiment.url + "/sentiment", json=body, headers=API_KEY, timeout=30)
    assert again.json() == answer
    assert httpx.get(sentiment.url + "/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "body",
    [{}, {"text": ""}, {"text": "x" * 5001}, {"text": 5}, {"text": ["a"]}],
    ids=["missing", "empty", "too-long", "a-number", "a-list"],
)
def test_sentiment_refuses_bad_text(sentiment: Server, body: dict[str, Any]) -> None:
    r = httpx.post(sentiment.url + "/sentiment", json=body, headers=API_KEY)
    assert_422(r, "body", "text")


def test_sentiment_needs_the_key(sentiment: Server) -> None:
    assert_error(httpx.post(sentiment.url + "/sentiment", json={"text": "hi"}), 401)


# --- uploads: CSV summaries and image classification, size- and type-checked ---------


@pytest.fixture(scope="module")
def uploads() -> Iterator[Server]:
    yield from serving(SPECS / "uploads.yaml")


def image_bytes(kind: str = "PNG", size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, kind)
    return buffer.getvalue()


def upload(server: Server, path: str, name: str, content: bytes, kind: str) -> httpx.Response:
    files = {"file": (name, content, kind)}
    return httpx.post(server.url + path, files=files, headers=API_KEY, timeout=30)


def test_uploads_classify_an_image(uploads: Server) -> None:
    """docs/spec.md, Routes without a model (`upload`): the `image-classification` processor answers
    `{label, score}` from the spec's image model."""
    for kind, media in (("PNG", "image/png"), ("JPEG", "image/jpeg")):
        r = upload(uploads, "/upload/image", f"photo.{kind.lower()}", image_bytes(kind), media)
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["filename"] == f"photo.{kind.lower()}"
        assert answer["content_type"] == media
        assert answer["label"] in {"cat", "dog", "bird"}
        assert 0 < answer["score"] <= 1


def test_uploads_summarise_a_csv(uploads: Server) -> None:
    """docs/spec.md, Routes without a model (`upload`): the `csv` processor answers
    `{filename, content_type, rows, columns}` for the uploaded multipart field."""
    content = b"name,price,tags\nlamp,12.5,home\nchair,40,\n"
    r = upload(uploads, "/upload/csv", "items.csv", content, "text/csv")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "filename": "items.csv",
        "content_type": "text/csv",
        "rows": 2,
        "columns": ["name", "price", "tags"],
    }
    bom = "\ufeffcafé,b\n1,2\n".encode()
    r = upload(uploads, "/upload/csv", "bom.csv", bom, "text/csv; charset=utf-8")
    assert r.status_code == 200 and r.json()["columns"] == ["café", "b"]
    at_limit = b"n\n" + b"1\n" * 10_000
    r = upload(uploads, "/upload/csv", "full.csv", at_limit, "text/csv")
    assert r.status_code == 200 and r.json()["rows"] == 10_000


def test_uploads_refuse_a_csv_over_max_rows(uploads: Server) -> None:
    content = b"n\n" + b"1\n" * 10_001
    assert_error(upload(uploads, "/upload/csv", "big.csv", content, "text/csv"), 413)


def test_uploads_refuse_a_csv_that_is_not_utf8(uploads: Server) -> None:
    content = "name\ncafé\n".encode("latin-1")
    assert_error(upload(uploads, "/upload/csv", "latin.csv", content, "text/csv"), 422)
    content = b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x00"
    assert_error(upload(uploads, "/upload/csv", "binary.csv", content, "text/csv"), 422)


@pytest.mark.parametrize(
    ("path", "name", "kind"),
    [
        ("/upload/image", "anim.gif", "image/gif"),
        ("/upload/csv", "photo.png", "application/octet-stream"),  # known as a PNG
        ("/upload/image", "items.csv", "text/csv"),
        ("/upload/csv", "photo.png", "image/png"),
        ("/upload/csv", "items.csv", "application/vnd.ms-excel"),
        ("/upload/csv", "items.csv", "text/plain"),
    ],
)
def test_uploads_refuse_other_media_types(uploads: Server, path: str, name: str, kind: str) -> None:
    """docs/spec.md, Routes without a model (`upload`): a media type not in `content_types` is a
    415."""
    assert_error(upload(uploads, path, name, image_bytes(), kind), 415)


def test_uploads_refuse_a_non_image_as_an_image(uploads: Server) -> None:
    for content in (b"hello, this is text", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, b""):
        r = upload(uploads, "/upload/image", "fake.png", content, "image/png")
        assert_error(r, 422)


def test_uploads_need_a_file_and_the_key(uploads: Server) -> None:
    r = httpx.post(uploads.url + "/upload/csv", data={"other": "x"}, headers=API_KEY)
    assert_422(r, "body", "file")
    r = httpx.post(uploads.url + "/upload/csv", files={"file": ("a.csv", b"a\n1\n", "text/csv")})
    assert_error(r, 401)


def test_uploads_refuse_an_oversize_body(uploads: Server) -> None:
    content = b"a\n" + b"1\n" * (1 << 19)  # just over the csv route's 1 MiB
    assert_error(upload(uploads, "/upload/csv", "big.csv", content, "text/csv"), 413)
    big = image_bytes("BMP", (1400, 1400))  # about 5.9 MB, over the image route's 5 MiB
    assert len(big) > 5 * 1024 * 1024
    assert_error(upload(uploads, "/upload/image", "big.bmp", big, "image/png"), 413)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 response on a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), body


def multipart_head(boundary: str) -> bytes:
    return (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()


def test_oversize_upload_is_refused_before_the_body_is_read(uploads: Server) -> None:
    """docs/spec.md, Routes without a model (`upload`): over `max_bytes`, 413 before the body is
    read whole.

    Content-Length says 50 MiB; the client sends 1 KiB and waits. A server that read
    the body before deciding would wait forever; this one answers 413 at once."""
    boundary = "endpointgen-boundary"
    head = (
        "POST /upload/csv HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{uploads.port}\r\n"
        f"X-API-Key: {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {50 * 1024 * 1024}\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", uploads.port), timeout=10) as sock:
        sock.sendall(head + multipart_head(boundary) + b"a,b\n" * 256)
        status, body = read_response(sock)
    assert status == 413, body
    assert json.loads(body)["error"] == "request body too large"
    assert time.monotonic() - started < 5
    assert httpx.get(uploads.url + "/health").status_code == 200


def test_chunked_upload_without_length_is_cut_off_at_the_limit(uploads: Server) -> None:
    """No Content-Length: the server counts what arrives and answers 413 once the body
    passes 1 MiB, without waiting for the end of the body (which never comes)."""
    boundary = "endpointgen-boundary"
    head = (
        "POST /upload/csv HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{uploads.port}\r\n"
        f"X-API-Key: {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()

    def chunk(data: bytes) -> bytes:
        return f"{len(data):x}\r\n".encode() + data + b"\r\n"

    piece = b"1,2\n" * 16384  # 64 KiB
    with socket.create_connection(("127.0.0.1", uploads.port), timeout=10) as sock:
        sock.sendall(head + chunk(multipart_head(boundary)))
        for _ in range(17):  # 17 x 64 KiB: just past 1 MiB; the final 0-chunk never comes
            sock.sendall(chunk(piece))
        status, body = read_response(sock)
    assert status == 413, body
    assert json.loads(body)["error"] == "request body too large"
    assert httpx.get(uploads.url + "/health").status_code == 200


# --- webhooks: signatures checked on the raw body ------------------------------------


@pytest.fixture(scope="module")
def webhooks() -> Iterator[Server]:
    yield from serving(SPECS / "webhooks.yaml")


def sign(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_webhooks_accept_signed_deliveries(webhooks: Server) -> None:
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    signature = "sha256=" + sign(HOOK_SECRETS["GITHUB_WEBHOOK_SECRET"], body)
    headers = {"X-Hub-Signature-256": signature, "X-GitHub-Event": "ping"}
    r = httpx.post(webhooks.url + "/webhook/github", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "received"

    stamp = str(int(time.time()))
    event = json.dumps({"id": "evt_1", "type": "invoice.paid"}).encode()
    v1 = sign(HOOK_SECRETS["STRIPE_WEBHOOK_SECRET"], stamp.encode() + b"." + event)
    headers = {"Stripe-Signature": f"t={stamp},v1={v1}"}
    r = httpx.post(webhooks.url + "/webhook/stripe", content=event, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "received"

    form = b"command=%2Fhello&text=hi"
    v0 = sign(HOOK_SECRETS["SLACK_SIGNING_SECRET"], f"v0:{stamp}:".encode() + form)
    headers = {
        "X-Slack-Signature": f"v0={v0}",
        "X-Slack-Request-Timestamp": stamp,
        "Content-Type": "application/x-www-form-urlencoded",
    }
    r = httpx.post(webhooks.url + "/webhook/slack", content=form, headers=headers)
    assert r.status_code == 200 and r.json()["status"] == "received"


def test_webhooks_refuse_bad_signatures(webhooks: Server) -> None:
    body = b'{"zen": "hi"}'
    wrong = "sha256=" + sign("not-the-secret", body)
    r = httpx.post(
        webhooks.url + "/webhook/github", content=body, headers={"X-Hub-Signature-256": wrong}
    )
    assert_error(r, 401, "invalid signature")
    stale = str(int(time.time()) - 3600)
    v1 = sign(HOOK_SECRETS["STRIPE_WEBHOOK_SECRET"], stale.encode() + b"." + body)
    headers = {"Stripe-Signature": f"t={stale},v1={v1}"}
    r = httpx.post(webhooks.url + "/webhook/stripe", content=body, headers=headers)
    assert_error(r, 401, "invalid signature")
    assert_error(httpx.post(webhooks.url + "/webhook/slack", content=body), 401)


# --- a handler spec of our own: an unmapped exception, a mapped base class, a loader --

CUSTOM_SPEC = """\
name: custom
model:
  id: ./weights
  task: text-classification
  loader: loader.py:load
auth:
  mode: api_key
errors:
  LookupError: {status: 404, message: no such thing here}
routes:
  - path: /shout
    method: POST
    action: handler
    handler: handler.py:shout
    request:
      text: {type: str, min_length: 1}
  - path: /crash
    action: handler
    handler: handler.py:crash
  - path: /missing
    action: handler
    handler: handler.py:missing
  - path: /slow
    action: handler
    handler: handler.py:slow
    response_type: stream
  - path: /ticks
    action: handler
    handler: handler.py:ticks
    response_type: sse
  - path: /notes/{note_id}
    method: PUT
    action: respond
    max_bytes: 200
    params:
      note_id: {type: int, min: 1}
    request:
      text: str
    response: {id: "{note_id}", text: "{text}"}
  - path: /pick
    action: respond
    params:
      size: {type: int, enum: [1, 2, 4], default: 1}
      ratio: {type: float, enum: [0.5, 1.5], default: 0.5}
      mode: {type: str, enum: [fast, slow], default: fast}
      verbose: {type: bool, default: false}
      x_trace: {in: header, default: none, max_length: 20}
    response: {size: "{size}", ratio: "{ratio}", mode: "{mode}", verbose: "{verbose}",
               trace: "{x_trace}"}
  - path: /health
    action: health
"""

CUSTOM_LOADER = """\
class Shouter:
    def __init__(self, where):
        self.where = where
        self.calls = 0

    def __call__(self, text):
        self.calls += 1
        return text.upper()


def load(where):
    return Shouter(where)
"""

CUSTOM_HANDLER = """\
import asyncio
import time
from pathlib import Path


def shout(data, model):
    return {"text": model(data["text"]), "where": Path(model.where).name, "calls": model.calls}


def crash(data):
    raise RuntimeError("database password is hunter2")


def missing(data):
    raise KeyError("item 9 of the secret table")


def slow(data):
    yield "first\\n"
    time.sleep(1.5)
    yield "second\\n"


async def ticks(data, model):
    for i in range(3):
        await asyncio.sleep(0)
        yield {"tick": i, "model": type(model).__name__}
"""


def write_custom(folder: Path) -> Path:
    (folder / "weights").mkdir(parents=True)
    (folder / "weights" / "weights.txt").write_text("not really weights")
    (folder / "loader.py").write_text(CUSTOM_LOADER)
    (folder / "handler.py").write_text(CUSTOM_HANDLER)
    return write_spec(folder, CUSTOM_SPEC)


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving(write_custom(tmp_path_factory.mktemp("custom")))


def test_custom_loader_feeds_the_handler_its_model(custom: Server) -> None:
    """docs/spec.md, Routes without a model (`handler`): your function gets one mapping of the body
    fields, and the loaded model as a second argument when it takes one."""
    health = httpx.get(custom.url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "weights"  # the folder, not a path
    answers = [
        httpx.post(custom.url + "/shout", json={"text": t}, headers=API_KEY).json()
        for t in ("hi", "there")
    ]
    assert [a["text"] for a in answers] == ["HI", "THERE"]
    assert answers[0]["where"] == "weights"  # the loader got the model's directory
    assert answers[1]["calls"] == answers[0]["calls"] + 1  # one model, loaded once


def test_unmapped_exception_is_a_500_without_details(custom: Server) -> None:
    r = httpx.get(custom.url + "/crash", headers={**API_KEY, "X-Request-ID": "crash-42"})
    assert r.status_code == 500
    rid = r.headers["X-Request-ID"]
    assert r.json() == {"error": "internal server error", "request_id": rid}
    assert "hunter2" not in r.text and "RuntimeError" not in r.text
    # The server log has the traceback, under the same request id and the client's.
    assert custom.wait_for("hunter2"), custom.output
    assert f"request {rid} (client id crash-42) failed" in custom.output
    assert "Traceback" in custom.output


def test_exception_mapped_through_its_base_class(custom: Server) -> None:
    """docs/spec.md, Top level (`errors`): an exception whose base class is named under `errors`
    answers with that status and message."""
    r = httpx.get(custom.url + "/missing", headers=API_KEY)
    assert_error(r, 404, "no such thing here")
    assert "secret table" not in r.text


def test_custom_handler_body_is_validated(custom: Server) -> None:
    assert_422(
        httpx.post(custom.url + "/shout", json={"text": ""}, headers=API_KEY), "body", "text"
    )
    assert_error(httpx.post(custom.url + "/shout", json={"text": "hi"}), 401)


def test_a_stream_sends_each_piece_as_it_is_made(custom: Server) -> None:
    """docs/spec.md, Routes without a model (`handler`): with `response_type: stream` what a
    generator yields is sent as it yields it."""
    started = time.monotonic()
    arrived = []
    with httpx.stream("GET", custom.url + "/slow", headers=API_KEY, timeout=10) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            arrived.append((line, time.monotonic() - started))
    assert [line for line, _ in arrived] == ["first", "second"]
    assert arrived[0][1] < 1.0 <= arrived[1][1]  # the first line did not wait for the second


def test_server_sent_events_from_an_async_handler(custom: Server) -> None:
    r = httpx.get(custom.url + "/ticks", headers=API_KEY)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(ln.removeprefix("data: ")) for ln in r.text.splitlines() if ln]
    assert events == [{"tick": i, "model": "Shouter"} for i in range(3)]


def test_enum_params_of_every_type(custom: Server) -> None:
    r = httpx.get(custom.url + "/pick", headers=API_KEY)
    assert r.status_code == 200, r.text
    assert r.json() == {"size": 1, "ratio": 0.5, "mode": "fast", "verbose": False, "trace": "none"}
    query = {"size": "4", "ratio": "1.5", "mode": "slow", "verbose": "true"}
    r = httpx.get(custom.url + "/pick", params=query, headers={**API_KEY, "X-Trace": "t-1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"size": 4, "ratio": 1.5, "mode": "slow", "verbose": True, "trace": "t-1"}


@pytest.mark.parametrize(
    ("query", "headers", "loc"),
    [
        ({"size": "3"}, {}, ("query", "size")),
        ({"size": "two"}, {}, ("query", "size")),
        ({"ratio": "0.7"}, {}, ("query", "ratio")),
        ({"mode": "medium"}, {}, ("query", "mode")),
        ({"mode": "FAST"}, {}, ("query", "mode")),
        ({"verbose": "maybe"}, {}, ("query", "verbose")),
        ({}, {"X-Trace": "t" * 21}, ("header", "x-trace")),
    ],
    ids=[
        "int-enum",
        "int-a-word",
        "float-enum",
        "str-enum",
        "str-enum-case",
        "bool",
        "header-long",
    ],
)
def test_enum_params_refuse_other_values(
    custom: Server, query: dict[str, str], headers: dict[str, str], loc: tuple[str, str]
) -> None:
    r = httpx.get(custom.url + "/pick", params=query, headers={**API_KEY, **headers})
    assert_422(r, *loc)


def test_body_limit_on_a_route_with_path_parameters(custom: Server) -> None:
    """`max_bytes` holds on /notes/{note_id} as on any other route: 413 over it."""
    r = httpx.put(custom.url + "/notes/3", json={"text": "short"}, headers=API_KEY)
    assert r.status_code == 200 and r.json() == {"id": 3, "text": "short"}
    assert_422(
        httpx.put(custom.url + "/notes/0", json={"text": "x"}, headers=API_KEY), "path", "note_id"
    )
    r = httpx.put(custom.url + "/notes/3", json={"text": "x" * 500}, headers=API_KEY)
    assert_error(r, 413, "request body too large")


# --- `endpointgen test SPEC --url`: the examples against each live server ------------


@pytest.mark.parametrize(
    "fixture", ["hello", "items", "batch", "responses", "sentiment", "webhooks"]
)
def test_examples_pass_against_the_live_server(
    request: pytest.FixtureRequest, fixture: str, site: Path
) -> None:
    server: Server = request.getfixturevalue(fixture)
    spec = site / "responses.yaml" if fixture == "responses" else SPECS / f"{fixture}.yaml"
    lines: list[str] = []
    outcomes = contract.run(spec, url=server.url, environ={"API_KEYS": KEY}, say=lines.append)
    assert outcomes, spec
    assert not [o.report() for o in outcomes if o.problems], "\n".join(lines)


# --- what the deployed app needs travels with it -------------------------------------


@pytest.fixture
def image_files(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Path, str]]:
    """(local path, remote path) of each file or folder added to a Modal image."""
    added: list[tuple[Path, str]] = []
    for method in ("add_local_file", "add_local_dir"):
        real = getattr(modal.Image, method)

        def spy(
            self: Any, local: Any, remote_path: Any, *a: Any, _real: Any = real, **k: Any
        ) -> Any:
            added.append((Path(local).resolve(), str(remote_path)))
            return _real(self, local, remote_path, *a, **k)

        monkeypatch.setattr(modal.Image, method, spy)
    return added


@pytest.mark.parametrize("name", ["batch", "responses", "sentiment", "custom"])
def test_deployed_image_carries_handlers_loaders_and_folders(
    name: str, tmp_path: Path, image_files: list[tuple[Path, str]]
) -> None:
    """On Modal the app reads handlers, the model loader and served folders from their
    remote paths; each must be added to the image from the file or folder next to the spec."""
    spec = write_custom(tmp_path / "spec") if name == "custom" else SPECS / f"{name}.yaml"
    out = tmp_path / "out"
    built = pipeline.build(spec, out)
    out.mkdir()
    built.path.write_text(built.source, encoding="utf-8")
    module = import_file(built.path)
    refs = [value for value in vars(module).values() if isinstance(value, files.Shipped)]
    assert refs
    for ref in refs:
        local, remote = ref.local, ref.remote
        assert local.exists(), local
        assert local.is_relative_to(spec.parent), "shipped from beside the spec"
        exact = [src for src, dst in image_files if dst == remote]
        inside = [
            src / PurePosixPath(remote).relative_to(dst)
            for src, dst in image_files
            if remote.startswith(dst.rstrip("/") + "/")
        ]
        assert exact or inside, f"{remote} is not in the image (added: {image_files})"
        assert (exact or inside)[0] == local


def test_deployed_app_mounts_the_volume_it_serves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A `volume:` file route reads from a folder where Modal must mount that Volume."""
    seen: list[dict[str, Any]] = []
    real = modal.App.function

    def spy(self: modal.App, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(modal.App, "function", spy)
    spec = {
        "name": "volume-files",
        "routes": [{"path": "/reports/{name:path}", "action": "file", "volume": "reports"}],
    }
    out = tmp_path / "out"
    built = pipeline.build(write_spec(tmp_path, spec), out)
    out.mkdir()
    built.path.write_text(built.source, encoding="utf-8")
    import_file(built.path)
    mount = "/volumes/reports"
    assert f'files.Folder("{mount}", volume="reports")' in built.source, "served from there"
    (settings,) = seen
    volumes = settings.get("volumes") or {}
    assert mount in volumes, f"{mount} is served but no Volume is mounted there: {settings}"
    assert isinstance(volumes[mount], modal.Volume)


def test_every_spec_builds_the_same_bytes_across_hash_seeds(tmp_path: Path) -> None:
    specs = sorted(str(p) for p in SPECS.glob("*.yaml"))
    outputs = []
    for seed in ("0", "4242"):
        out = tmp_path / seed
        subprocess.run(
            [sys.executable, "-m", "endpointgen", "build", *specs, "-o", str(out)],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.append({p.name: p.read_bytes() for p in sorted(out.glob("*.py"))})
    assert len(outputs[0]) == len(specs)
    assert outputs[0] == outputs[1]


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels in a few dozen bytes (no pixels)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def test_uploads_refuse_a_decompression_bomb_before_decoding(uploads: Server) -> None:
    """Hardening 4 (docs/security.md): a small PNG declaring 13000 x 13000 pixels is
    refused from its header (413), fast, and `/health` answers meanwhile."""
    import threading
    import time

    bomb = png_header(13_000, 13_000)
    assert len(bomb) < 2_000
    latencies: list[float] = []

    def probe() -> None:
        for _ in range(10):
            started = time.monotonic()
            httpx.get(uploads.url + "/health", timeout=10)
            latencies.append(time.monotonic() - started)

    prober = threading.Thread(target=probe)
    prober.start()
    started = time.monotonic()
    r = upload(uploads, "/upload/image", "bomb.png", bomb, "image/png")
    took = time.monotonic() - started
    prober.join()
    assert_error(r, 413)
    assert "13000x13000 pixels" in r.json()["error"]
    assert took < 2, took
    assert max(latencies) < 0.5, latencies
    # The route's own cap (`max_upload_pixels: 24000000`), under the default of 40 MP.
    r = upload(uploads, "/upload/image", "big.png", png_header(6001, 4000), "image/png")
    assert_error(r, 413)
    assert "at most 24000000 are accepted" in r.json()["error"]


def test_uploads_bound_a_csv_with_too_many_columns(uploads: Server) -> None:
    """Hardening 5: a CSV with a million columns is a 413, not a 3 MB answer; long column
    names come back cut."""
    wide = ",".join(f"c{i}" for i in range(1_001)).encode() + b"\n"
    assert_error(upload(uploads, "/upload/csv", "wide.csv", wide, "text/csv"), 413)
    long_name = b"x" * 5000 + b",b\n1,2\n"
    r = upload(uploads, "/upload/csv", "long.csv", long_name, "text/csv")
    assert r.status_code == 200
    first, second = r.json()["columns"]
    assert len(first) == 200 and first.endswith("…") and second == "b"
