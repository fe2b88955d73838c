"""Several models (`models:`): a CPU web tier whose routes call each model's Modal class.

`remote.serve(writer, WriterModel)` makes the web tier's `writer` answer through the
`WriterModel` class: the same routes, checks and batching as in-process, with each engine
call a `.remote` call to a container on the model's own GPU type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from endpointgen.runtime.tasks import ENGINE_METHODS, Model

__all__ = ["RemoteEngine", "serve"]


class RemoteEngine:
    """The calls a local engine answers, answered by the model's own Modal class.

    Routes call engines from worker threads, so the blocking `.remote` calls here never
    hold up the web tier's event loop.
    """

    def __init__(self, cls: Any) -> None:
        self.model = cls()

    def __call__(self, items: list[Any]) -> Any:
        return self.model.call.remote("__call__", items)

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method not in ENGINE_METHODS:
            raise AttributeError(method)
        return lambda *args: self.model.call.remote(method, *args)

    def generate(
        self,
        request: Any,
        on_text: Callable[[str], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> Any:
        if on_text is None:
            return self.model.call.remote("generate", request)
        text = ""
        for kind, value in self.model.tokens.remote_gen(request):
            if kind == "done":
                return value
            on_text(value)
            text += value
            if cancelled is not None and cancelled.is_set():
                break  # leaving the generator ends the remote call
        counts = {"prompt_tokens": 0, "tokens_generated": 0}
        return {"text": text, **counts, "finish_reason": "cancelled"}


def serve(model: Model, cls: Any) -> Model:
    """`model`, answered by the Modal class `cls`: "ready" from the web tier's side; a
    model that failed to load answers its calls with an error, a 500 here."""
    model.serve(RemoteEngine(cls))
    return model
