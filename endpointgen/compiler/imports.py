"""The built module's import lines: which features need which names, in isort's order."""

from __future__ import annotations

# Standard-library modules the built module may import (isort puts them first).
_STDLIB = {
    "asyncio",
    "base64",
    "csv",
    "hashlib",
    "hmac",
    "importlib",
    "inspect",
    "io",
    "json",
    "logging",
    "os",
    "pathlib",
    "queue",
    "re",
    "struct",
    "sys",
    "threading",
    "time",
    "typing",
    "urllib",
    "uuid",
}


def import_lines(features: frozenset[str], auth_mode: str) -> list[str]:
    """The generated module's import lines, grouped and sorted as ruff's isort does."""
    need: set[tuple[str, str | None]] = {
        ("json", None),
        ("logging", None),
        ("time", None),
        ("uuid", None),
        ("typing", "Any"),
        ("modal", None),
        ("fastapi", "FastAPI"),
        ("starlette.exceptions", "HTTPException"),
        ("fastapi", "Request"),
        ("fastapi.exceptions", "RequestValidationError"),
        ("fastapi.responses", "JSONResponse"),
        # How each route's success answer is documented (templates/_routes: response_class).
        ("fastapi.responses", "FileResponse"),
        ("fastapi.responses", "PlainTextResponse"),
        ("fastapi.responses", "StreamingResponse"),
        ("pydantic", "BaseModel"),
        ("re", None),
        ("starlette.routing", "compile_path"),
    }
    has = features.__contains__
    if has("model"):
        need |= {("asyncio", None), ("threading", None), ("pathlib", "Path")}
        need |= {("pydantic", n) for n in ("BaseModel", "ConfigDict", "Field")}
        need.add(("typing", "Self"))
    if has("batching"):
        need.add(("asyncio", None))
    if has("classify"):
        need.add(("pydantic", "model_validator"))
    if has("stream"):
        need |= {("fastapi.responses", "StreamingResponse"), ("threading", None)}
    if has("auth") or has("rate_limit") or has("model"):
        need.add(("fastapi", "Depends"))
    if has("auth") or has("rate_limit"):
        need |= {("hashlib", None), ("typing", "Annotated")}
    if has("auth"):
        need |= {("hashlib", None), ("os", None), ("typing", "Annotated")}
        if auth_mode == "api_key":
            need.add(("fastapi.security", "APIKeyHeader"))
        elif auth_mode == "jwt":
            need |= {
                ("jwt", None),
                ("fastapi.security", "HTTPAuthorizationCredentials"),
                ("fastapi.security", "HTTPBearer"),
            }
        elif auth_mode == "bearer":
            need |= {
                ("fastapi.security", "HTTPAuthorizationCredentials"),
                ("fastapi.security", "HTTPBearer"),
            }
    if has("redis"):
        need.add(("os", None))
    if has("webhook"):
        need |= {("base64", None), ("hmac", None), ("os", None), ("urllib.parse", None)}
    if has("multi"):
        need |= {("queue", None), ("threading", None)}
    if has("openai"):
        need |= {("typing", "Literal"), ("base64", None), ("struct", None)}
    if has("shaped"):
        need |= {("inspect", None), ("re", None), ("fastapi", None), ("typing", "Annotated")}
        need |= {("typing", "Literal"), ("fastapi.encoders", "jsonable_encoder")}
        need |= {("fastapi.responses", "PlainTextResponse")}
        need |= {("pydantic", n) for n in ("AfterValidator", "ConfigDict", "Field", "create_model")}
    if has("streamed"):
        need |= {("fastapi.responses", "StreamingResponse")}
        need |= {("starlette.concurrency", "run_in_threadpool")}
    if has("shipped"):
        need |= {("importlib.util", None), ("sys", None), ("pathlib", "Path")}
        need |= {("inspect", None), ("starlette.concurrency", "run_in_threadpool")}
    if has("upload"):
        need |= {("csv", None), ("io", None), ("fastapi", "UploadFile")}
    if has("image-classification"):
        need.add(("io", None))
    if has("file"):
        need |= {("fastapi.responses", "FileResponse"), ("pathlib", "Path")}
    if has("cors"):
        need.add(("starlette.middleware.cors", "CORSMiddleware"))

    def lines(modules: set[tuple[str, str | None]]) -> list[str]:
        plain = sorted(m for m, n in modules if n is None)
        names: dict[str, list[str]] = {}
        for module, name in modules:
            if name is not None:
                names.setdefault(module, []).append(name)
        froms = [_from_import(m, sorted(names[m], key=_isort_key)) for m in sorted(names)]
        return [f"import {m}" for m in plain] + froms

    stdlib = {i for i in need if i[0].split(".")[0] in _STDLIB}
    third = need - stdlib
    out: list[str] = []
    for group in (stdlib, third):
        if out:
            out.append("")
        out.extend(lines(group))
    return out


def _from_import(module: str, names: list[str]) -> str:
    line = f"from {module} import {', '.join(names)}"
    if len(line) <= 88:
        return line
    inner = "".join(f"    {name},\n" for name in names)
    return f"from {module} import (\n{inner})"


def _isort_key(name: str) -> tuple[int, str]:
    # isort's default order inside `from x import ...`: CONSTANTS, Classes, functions.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return (kind, name)
