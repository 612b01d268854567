"""The gate in front of every route: Host allowlist (DNS rebinding) and the optional bearer token.

It wraps the whole ASGI app, so unknown paths are guarded too. Answers are problem+json.
"""

from __future__ import annotations

import hmac

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from sidecar.errors import PROBLEM_JSON, TITLES, Problem, problem_body
from sidecar.settings import Settings
from sidecar.validation import ascii_digits

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
OPEN_PATHS = frozenset({"/health"})
MAX_HEADER_BYTES = 64 * 1024
MAX_HOST_VERDICTS = 64


def split_host(header: str) -> tuple[str, str | None]:
    """ "example:80" → ("example", "80"); "[::1]:80" → ("[::1]", "80"); no port → None."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        if end == -1:
            return header, None
        rest = header[end + 1 :]
        if rest and not (rest.startswith(":") and ascii_digits(rest[1:]) is not None):
            return header, None  # "[::1]evil" is not "[::1]": the whole text is the name
        return header[: end + 1], rest[1:] if rest else None
    name, colon, port = header.rpartition(":")
    return (name, port) if colon and ascii_digits(port) is not None else (header, None)


class HostRule:
    """Loopback names with any port, plus SIDECAR_ALLOWED_HOSTS: `host`, `host:port` or `*`."""

    def __init__(self, extra: tuple[str, ...]) -> None:
        self.anything = "*" in extra
        self.any_port = set(LOOPBACK_NAMES)
        self.exact: set[str] = set()
        for entry in extra:
            name, port = split_host(entry)
            if port is None:
                self.any_port.add(name)
            else:
                self.exact.add(f"{name}:{port}")

    def allows(self, header: str | None) -> bool:
        if self.anything:
            return True
        if not header:
            return False
        name, port = split_host(header)
        return name in self.any_port or f"{name}:{port}" in self.exact


def _scan(scope: Scope) -> tuple[int, list[bytes], bytes | None]:
    """One pass over the headers: their size in bytes, every Host, the first Authorization."""
    size, hosts, authorization = 0, [], None
    for key, value in scope["headers"]:
        size += len(key) + len(value)
        if key == b"host":
            hosts.append(value)
        elif key == b"authorization" and authorization is None:
            authorization = value
    return size, hosts, authorization


async def _refuse(send: Send, status: int, code: str, extra: list[tuple[bytes, bytes]]) -> None:
    body = problem_body(Problem(status, code, TITLES[code]))
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": headers,
    }
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(end)


class Gate:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.hosts = HostRule(settings.allowed_hosts)
        # Host header → allowed?, for the few values clients send (each is checked only once).
        self._verdicts: dict[bytes, bool] = {}
        self.token = settings.token.encode() if settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        size, hosts, authorization = _scan(scope)
        # The server's parser sets no limit on headers; refuse what no client of ours sends.
        if size > MAX_HEADER_BYTES:
            await _refuse(send, 431, "HEADERS_TOO_LARGE", [(b"connection", b"close")])
            return
        # Exactly one Host (RFC 9112 3.2): a second one could smuggle a name past the check.
        if len(hosts) != 1 or not self._allows(hosts[0]):
            await _refuse(send, 400, "INVALID_HOST", [])
            return
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            scheme, _, given = (authorization or b"").decode("latin-1").partition(" ")
            # Constant time, so the token cannot be guessed byte by byte from response times.
            matches = hmac.compare_digest(given.strip().encode("latin-1"), self.token)
            if scheme.lower() != "bearer" or not matches:
                await _refuse(send, 401, "UNAUTHORIZED", [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)

    def _allows(self, host: bytes) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self.hosts.allows(host.decode("latin-1"))
            if len(self._verdicts) < MAX_HOST_VERDICTS:
                self._verdicts[host] = verdict
        return verdict
