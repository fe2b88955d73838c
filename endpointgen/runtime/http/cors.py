"""Who may call from a browser (`Cors`, as a spec says it) and the policy that answers
preflights and adds the CORS headers to every answer (`CorsPolicy`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.middleware.cors import CORSMiddleware

# Headers a browser lets a cross-origin caller read.
EXPOSED = [
    *("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "Retry-After"),
    *("X-Request-ID", "X-Client-Request-ID"),
    "X-Seed",  # the seed of an image a text-to-image route made
]


@dataclass(frozen=True)
class Cors:
    """Who may call from a browser. Preflights never need auth; errors carry the headers too."""

    origins: list[str]
    methods: list[str] = field(default_factory=lambda: ["GET", "POST"])
    headers: list[str] = field(default_factory=lambda: ["Content-Type", "X-Request-ID"])
    credentials: bool = False
    max_age: int = 600


VARY_ORIGIN = (b"vary", b"Origin")


class CorsPolicy(CORSMiddleware):
    """Starlette's CORS rules, applied inside `RequestContext` rather than as one more
    layer: its preflight answer as it is; on other answers the same headers, added as
    raw pairs. Every answer passes through, errors included."""

    def __init__(self, cors: Cors) -> None:
        super().__init__(
            app=None,  # type: ignore[arg-type]  # never called as a layer
            allow_origins=cors.origins,
            allow_methods=cors.methods,
            allow_headers=cors.headers,
            allow_credentials=cors.credentials,
            expose_headers=EXPOSED,
            max_age=cors.max_age,
        )
        # With credentials, a "*" origin is answered with the caller's own.
        self.explicit_any = self.allow_all_origins and self.allow_credentials
        self.simple = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in self.simple_headers.items()
            if not (self.explicit_any and name == "Access-Control-Allow-Origin")
        ]
        self.by_origin: dict[str, list[tuple[bytes, bytes]]] = {}  # the headers per origin

    def add(self, origin: str | None, headers: list[tuple[bytes, bytes]]) -> None:
        """The CORS headers of an answer to a request from `origin` (None: no Origin)."""
        for name, _ in headers:
            if name == b"vary":  # the answer varies already: add Origin to the list
                vary = [value for name, value in headers if name == b"vary"]
                headers[:] = [(name, value) for name, value in headers if name != b"vary"]
                headers.append((b"vary", b", ".join([*vary, b"Origin"])))
                break
        else:
            headers.append(VARY_ORIGIN)
        if origin is not None:
            found = self.by_origin.get(origin)
            if found is None:
                found = list(self.simple)
                if self.explicit_any or (
                    not self.allow_all_origins and self.is_allowed_origin(origin=origin)
                ):
                    found.append((b"access-control-allow-origin", origin.encode("latin-1")))
                if len(self.by_origin) < 1000:  # origins are the caller's to choose
                    self.by_origin[origin] = found
            headers.extend(found)
