"""Inside a model's own Modal class, called by the web tier (`models:`, `shape: split`).

The class has one typed `@modal.method()` per call the web tier makes, each calling the
model its `@modal.enter` loaded: `loaded`, the engine (`run` is its `__call__`;
`count_tokens`, `generate`, `chat_prompt`, ... its own methods), `checked_generate` (a
generation checked and run here, in one round trip) and `tokens` (the same, as it goes).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from endpointgen.runtime import http
from endpointgen.runtime.http import Rejected
from endpointgen.runtime.tasks.calls import Calls
from endpointgen.runtime.tasks.generate import Asked, preparing
from endpointgen.runtime.tasks.schemas import GenerateRequest

STOP_POLL = 0.5  # seconds between asking whether a stream's client went away


class Stop(Protocol):
    """Whether a stream's client went away (asked while it runs); `forget` once it ends."""

    def __call__(self) -> bool: ...

    def forget(self) -> None: ...


class Serving(Calls):
    """What a model class's methods run in its container."""

    @property
    def loaded(self) -> Any:
        """The engine, for the class's methods to call; a model that is not ready (it
        failed to load here, or the container is shutting down) raises."""
        if self.status != "ready" or self.engine is None:
            raise RuntimeError(f"model is not ready ({self.status}): {self.error}")
        return self.engine

    def checked_generate(self, asked: Asked) -> dict[str, Any] | Rejected:
        """The generation `asked` is for, checked first, then run: its totals. A request
        that fails a check is answered with its `Rejected` (a value, not a failure of
        the call: the web tier raises it, the route's 422)."""
        try:
            request = self._prepared_here(asked)
        except Rejected as exc:
            return exc
        totals: dict[str, Any] = self.loaded.generate(request)
        return totals

    def _prepared_here(self, asked: Asked) -> GenerateRequest:
        """`prepared`, with each engine call the checks ask for made in this thread."""
        steps = preparing(asked)
        answer: Any = None
        try:
            while True:
                method, args = steps.send(answer)
                answer = getattr(self.loaded, method)(*args)
        except StopIteration as done:
            prepared: GenerateRequest = done.value
            return prepared

    def tokens(
        self, request: Asked | GenerateRequest, stop: Stop | None = None
    ) -> Iterator[tuple[str, Any]]:
        """("token", text) pairs as a generation goes, then ("done", totals).

        For an `Asked`, its checks come first, and their outcome is the first item:
        ("checked", None), or ("rejected", the `Rejected`) and nothing more. A
        `GenerateRequest` was checked by the caller.

        `stop` is asked twice a second, apart from the stream (a caller that stops reading
        does not stop this): once it says so (the web tier's client went away), the
        generation stops at its next token. Closing this generator early stops it too.
        """
        if isinstance(request, Asked):
            try:
                checked = self._prepared_here(request)
            except Rejected as exc:
                yield "rejected", exc
                return
            yield "checked", None
            request = checked
        pieces: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        cancelled = threading.Event()

        def work() -> None:
            try:
                result = self.loaded.generate(request, on_text, cancelled)
            except Exception as exc:
                pieces.put(("error", f"{type(exc).__name__}: {exc}"))
            else:
                pieces.put(("done", result))
            finally:
                done.set()

        def on_text(piece: str) -> None:
            pieces.put(("token", piece))

        def watch(stop: Stop) -> None:  # apart from the stream: works if nobody reads it
            while not done.wait(STOP_POLL):
                if stop():
                    http.log.info("the web tier says the client went away: stopping")
                    cancelled.set()
                    break
            done.wait()
            stop.forget()

        done = threading.Event()
        threading.Thread(target=work, daemon=True).start()
        if stop is not None:
            threading.Thread(target=watch, args=(stop,), daemon=True).start()
        try:
            while True:
                kind, value = pieces.get()
                if kind == "error":
                    raise RuntimeError(value)
                yield kind, value
                if kind == "done":
                    return
        finally:
            if not done.is_set():  # closed early, here: stop the generation too
                cancelled.set()
