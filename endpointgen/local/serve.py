"""Serve a built module on this machine with uvicorn: the app Modal would run, minus Modal."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from endpointgen.compiler.pipeline import build
from endpointgen.errors import UsageError
from endpointgen.local import BODY_WITHIN, HEAD_WITHIN, KEEP_ALIVE

# A request's head (its request line and headers) may be this large, in bytes, and hold
# this many headers; past either it is refused with 431 and the connection closes. The
# parser joins a long header by copying it once per piece that arrives, so its cost grows
# as the square of the header's size: it must stop before that. (nginx reads up to 32 KiB
# of headers by default, h11 16 KiB; Apache takes 100 headers.)
HEAD_BYTES = 64 * 1024
HEAD_FIELDS = 100


def import_module(path: Path) -> ModuleType:
    """Import a built module from its file, under its own name."""
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def models_of(module: ModuleType) -> dict[str, Any]:
    """The module's models (`tasks.Model`), by the names `create_app` takes them under."""
    names = inspect.signature(module.create_app).parameters
    return {name: getattr(module, name) for name in names}


def load_app(module: ModuleType, say: Any = print, load: bool = True) -> Any:
    """The module's FastAPI app with its models loaded, as `@modal.enter` loads them.

    With several models, all load here, in this one process. With `load=False` the app
    is made around models that are not loaded (for its OpenAPI).
    """
    models = models_of(module)
    for model in models.values() if load else ():
        say(f"loading model {model.id} ({model.task}) ...")
        started = time.perf_counter()
        model.load()
        if model.status == "ready":
            say(f"model ready in {time.perf_counter() - started:.1f}s")
        else:
            say(f"model failed to load: {model.error}; its routes answer 503")
    return module.create_app(**models)


def serve(
    spec: str | Path,
    host: str,
    port: int,
    env: str | None = None,
    say: Any = print,
    head: float = HEAD_WITHIN,
    body: float = BODY_WITHIN,
) -> None:
    """Build the spec into a temporary folder, load its model once, serve until Ctrl-C.
    `head` and `body`: the read deadlines (`deadlines`), in seconds."""
    import uvicorn

    from endpointgen.runtime.handlers import HandlerError

    with tempfile.TemporaryDirectory(prefix="endpointgen-") as folder:
        built = build(spec, folder, env)
        if built.spec.all_models:
            missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
            if missing:
                raise UsageError(
                    f"serving a model needs {' and '.join(missing)}: "
                    "pip install 'endpointgen[models]'"
                )
        built.path.write_text(built.source, encoding="utf-8")
        module = import_module(built.path)
        try:
            app = load_app(module, say)
        except HandlerError as exc:
            raise UsageError(f"a handler cannot be imported: {exc}") from None
        say(f"serving {built.spec.name} on http://{host}:{port} (Ctrl-C stops)")
        # No proxy headers: X-Forwarded-For from a local client would otherwise be taken
        # as the client's address, and `key: ip` limits dodged with one header.
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="warning",
            proxy_headers=False,
            http=deadlines(head, body),
            timeout_keep_alive=KEEP_ALIVE,
        )


def deadlines(head: float = HEAD_WITHIN, body: float = BODY_WITHIN) -> Any:
    """uvicorn's httptools protocol with read deadlines: a request's head must arrive
    within `head` seconds (408, then the connection closes), its body within `body`
    seconds more (the connection closes; the app sees the client go). A head over
    `HEAD_BYTES` bytes or `HEAD_FIELDS` headers is refused (431, then the connection
    closes) before the parser reads further.

    Nothing runs per request: one sweep, a few times a second, reads each connection's
    phase from uvicorn's own state (a request begun whose headers are not complete; a
    request whose body is not complete) and cuts those that stayed in one phase past its
    deadline. A connection is cut between its deadline and one sweep later."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    HEAD, BODY = 1, 2
    limits = {HEAD: head, BODY: body}
    every = min(0.5, head / 4, body / 4)

    class Deadlines(HttpToolsProtocol):
        # (what the phase is about, the phase, when it was first seen); None when idle
        watch: tuple[Any, int, float] | None = None
        sweeping: asyncio.TimerHandle | None = None  # one sweep per server, on its loop
        heading = True  # the next bytes are a request's head (not a body)
        head_size = 0  # bytes received for the head being read
        heads = 0  # heads read on this connection
        too_large = False  # the head passed a limit: answer 431, not uvicorn's 400

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self.watch = (None, HEAD, self.loop.time())  # a head is due from now
            if Deadlines.sweeping is None:
                Deadlines.sweeping = self.loop.call_later(every, self.sweep)

        def data_received(self, data: bytes) -> None:
            if not self.heading:
                super().data_received(data)
                return
            size = self.head_size + len(data)
            if size <= HEAD_BYTES:
                self.head_size = size
                super().data_received(data)
                return
            # Feed what the limit allows; if no head ended within it, refuse. If one did,
            # the rest is a body or the next request, fed as any other bytes.
            allowed, heads = HEAD_BYTES - self.head_size, self.heads
            self.head_size = HEAD_BYTES
            super().data_received(data[:allowed])
            if self.transport.is_closing() or self.transport.get_protocol() is not self:
                return
            if self.heads == heads:
                self.refuse()
            else:
                self.data_received(data[allowed:])

        def on_header(self, name: bytes, value: bytes) -> None:
            super().on_header(name, value)
            if len(self.headers) > HEAD_FIELDS:
                self.too_large = True
                raise ValueError("too many headers")  # stops the parser: see send_400_response

        def on_headers_complete(self) -> None:
            self.heading = False
            self.head_size = 0
            self.heads += 1
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.heading = True  # the next bytes begin the next request
            super().on_message_complete()

        def send_400_response(self, msg: str) -> None:
            if self.too_large:
                self.refuse()
            else:
                super().send_400_response(msg)

        def refuse(self) -> None:
            self.watch = None
            if self.transport.is_closing():
                return
            message = b'{"error": "request header fields too large"}'
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                b"content-type: application/json\r\nconnection: close\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(message), message)
            )
            self.transport.close()

        def sweep(self) -> None:
            now = self.loop.time()
            for connection in list(self.connections):
                if isinstance(connection, Deadlines):
                    connection.check(now)
            Deadlines.sweeping = self.loop.call_later(every, self.sweep)

        def check(self, now: float) -> None:
            cycle = self.cycle
            about: Any
            if cycle is None or cycle.scope is not self.scope:
                # No request yet, or one whose headers are still coming (uvicorn makes
                # a request's cycle when they are complete).
                about, phase = self.scope, HEAD
            elif cycle.more_body:
                about, phase = cycle, BODY
            else:  # between requests: uvicorn's keep-alive timer closes it
                self.watch = None
                return
            watch = self.watch
            if watch is None or watch[0] is not about or watch[1] != phase:
                self.watch = (about, phase, now)
            elif now - watch[2] > limits[phase]:
                self.expired(phase)

        def expired(self, phase: int) -> None:
            self.watch = None
            if self.transport.is_closing():
                return
            if phase == HEAD:  # no answer has begun: say why before closing
                message = b'{"error": "request timeout: the headers took too long"}'
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(message), message)
                )
            self.transport.close()

    return Deadlines
