"""Callbacks: a job's end announced to the URL its submit named.

A submit may name `?callback_url=`: when the job ends, its status body is POSTed there,
signed as a `generic` webhook verifies (`Callbacks`), with retries and backoff. Only hosts
the spec lists are called, and never a private, loopback or link-local address (nor an
IPv6 one that reaches an IPv4 address: NAT64, IPv4-compatible or -mapped) unless the spec
allows it (`private: true`, for a receiver on the same machine). A callback connects to
the address its check resolved, and reads at most 64 KiB of the receiver's answer.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from endpointgen.runtime import http

MAX_CALLBACK_ANSWER = 64 * 1024  # bytes of a callback receiver's answer read, at most
SIGNATURE_HEADER = "X-Endpointgen-Signature"
TIMESTAMP_HEADER = "X-Endpointgen-Timestamp"


@dataclass(frozen=True)
class Callbacks:
    """Where a job's end may be announced, and how it is signed.

    The body is the job's status (`JobStatus`), sent with `X-Endpointgen-Timestamp` (Unix
    seconds) and `X-Endpointgen-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`
    under the key in env var `env`: what a `generic` webhook route checks with
    `signature: {header: X-Endpointgen-Signature, prefix: "sha256=", timestamp_header:
    X-Endpointgen-Timestamp}`. A delivery is tried `tries` times, waiting `backoff`
    seconds, then twice that, and so on, until the receiver answers 2xx."""

    hosts: tuple[str, ...]
    env: str = "JOB_CALLBACK_SECRET"
    private: bool = False
    tries: int = 5
    backoff: float = 1.0
    timeout: float = 10.0

    def refusal(self, url: str) -> str | None:
        """Why `url` may not be called back (None: it may). Its host is resolved here, and
        again before each delivery, so a name that later points inside is caught too."""
        return self.checked(url)[0]

    def checked(self, url: str) -> tuple[str | None, list[str]]:
        """`refusal`'s answer, and the addresses the host resolved to (those a delivery
        connects to, so a name cannot point elsewhere between the check and the call)."""
        if not os.environ.get(self.env):
            return f"this app sends no callbacks: {self.env} is not set", []
        try:
            parts = urlsplit(url)
            scheme, hostname, port = parts.scheme, parts.hostname, parts.port
            credentials = parts.username or parts.password
        except ValueError:  # brackets left open, a character NFKC turns into `#`, a bad port
            return "callback_url is not a valid URL", []
        if scheme not in ("http", "https") or not hostname:
            return "callback_url must be an http or https URL", []
        if credentials:
            return "callback_url may not carry credentials", []
        host = hostname.lower()
        if "%" in host:  # an IPv6 zone id names an interface of this machine
            return "callback_url is not a valid URL", []
        if host not in self.hosts:
            return f"callback_url's host {host} is not one this app calls back", []
        try:
            found = addresses(host, port or (443 if scheme == "https" else 80))
        except (OSError, ValueError, OverflowError):
            return f"callback_url's host {host} cannot be resolved", []
        if not found:
            return f"callback_url's host {host} cannot be resolved", []
        for address in found:
            if private(address) and not self.private:
                return f"callback_url's host {host} is a private address", []
        return None, found

    def signed(self, body: bytes, now: float | None = None) -> dict[str, str]:
        stamp = str(int(time.time() if now is None else now))
        key = os.environ.get(self.env, "").encode()
        digest = hmac.new(key, stamp.encode() + b"." + body, "sha256").hexdigest()
        return {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: stamp,
            SIGNATURE_HEADER: f"sha256={digest}",
        }

    async def deliver(self, url: str, status: dict[str, Any]) -> bool:
        """POST `status` to `url` until it answers 2xx or the tries run out. Each try
        connects to an address the check just resolved (the next one on each try; TLS
        still checks the host's name), and reads at most `MAX_CALLBACK_ANSWER` bytes of
        the receiver's answer."""
        import httpx

        body = json.dumps(status).encode()
        wait = self.backoff
        for attempt in range(1, self.tries + 1):
            problem, found = await asyncio.to_thread(self.checked, url)
            if problem is not None:
                http.log.warning("job %s: callback not sent: %s", status["id"], problem)
                return False
            transport = pinned_transport()(found[(attempt - 1) % len(found)])
            try:
                async with (
                    httpx.AsyncClient(  # no proxy or netrc from the environment
                        transport=transport,
                        timeout=self.timeout,
                        follow_redirects=False,
                        trust_env=False,
                    ) as client,
                    client.stream("POST", url, content=body, headers=self.signed(body)) as answer,
                ):
                    read = 0
                    async for chunk in answer.aiter_raw():
                        read += len(chunk)
                        if read >= MAX_CALLBACK_ANSWER:
                            break
                    if 200 <= answer.status_code < 300:
                        return True
                    reason = f"answered {answer.status_code}"
            except httpx.HTTPError as exc:
                reason = type(exc).__name__
            http.log.warning(
                "job %s: callback try %d of %d failed (%s)",
                status["id"],
                attempt,
                self.tries,
                reason,
            )
            if attempt < self.tries:
                await asyncio.sleep(wait)
                wait *= 2
        return False


def addresses(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order, zone ids left off."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in found))


# IPv6 ranges that reach an IPv4 address by other means: NAT64 (RFC 6052, RFC 8215) and
# IPv4-compatible `::a.b.c.d`. `ipaddress` calls them global; a callback may not use them.
EMBEDDED_V4 = tuple(
    ipaddress.ip_network(net) for net in ("64:ff9b::/96", "64:ff9b:1::/48", "::/96")
)


def private(address: str) -> bool:
    """Whether a callback to `address` could reach inside: not a global address, an
    IPv6 one embedding an IPv4 address (NAT64, IPv4-compatible, IPv4-mapped), or 6to4
    onto a private IPv4 address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if any(ip in net for net in EMBEDDED_V4) or ip.ipv4_mapped is not None:
            return True
        if ip.sixtofour is not None and not ip.sixtofour.is_global:
            return True
    return not ip.is_global


@functools.cache
def pinned_transport() -> type[Any]:
    """The transport class a callback is sent with (made on first use, as httpx is
    imported only where callbacks are sent)."""
    import httpx

    class PinnedTransport(httpx.AsyncHTTPTransport):
        """Connects to one address, whatever the URL's host resolves to now; the request
        keeps its `Host` header, and TLS its server name, so the receiver and its
        certificate are checked as for the name."""

        def __init__(self, address: str) -> None:
            super().__init__()
            self.address = address

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            host = request.url.host
            request.extensions = {**request.extensions, "sni_hostname": host}
            request.url = request.url.copy_with(host=self.address)
            return await super().handle_async_request(request)

    return PinnedTransport
