"""The typed library that built modules import inside their Modal container.

Everything that is the same in every app lives here: request ids, JSON errors and body
limits (`http`), auth, rate limits (`limits`), signed webhooks, dynamic batching, the
model tasks and their engines, files and uploads, the OpenAI-compatible routes and the
CPU web tier that calls model classes (`remote`). A built module holds only what its spec
says and calls into these.

The runtime imports fastapi, pydantic and starlette, and torch and transformers only
inside a model's loader. It never imports the compiler (loader, plan, templates), typer
or jinja2: a container carries it as it is.
"""

from __future__ import annotations

__all__ = ["RuntimeMismatch", "require"]


class RuntimeMismatch(RuntimeError):
    """A module built by one endpointgen version, about to run on another runtime."""


def require(built_with: str) -> None:
    """Refuse to go on when the installed runtime is not the one that built the module.

    A module's image ships the `endpointgen` package installed where `modal deploy` runs,
    so an upgrade between `build` and `deploy` would otherwise run routes against a
    runtime they were not written for.
    """
    from endpointgen import __version__

    if __version__ != built_with:
        raise RuntimeMismatch(
            f"this module was built by endpointgen {built_with}, but endpointgen "
            f"{__version__} is installed: rebuild it (`endpointgen build`), or "
            f"`pip install endpointgen=={built_with}` to deploy it as it is"
        )
