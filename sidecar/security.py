"""The gate in front of every route: Host allowlist (DNS rebinding) and the optional bearer token.

It wraps the whole ASGI app, so unknown paths are guarded too. Answers are problem+json.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging

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

log = logging.getLogger("sidecar")

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "[::1]"})
OPEN_PATHS = frozenset({"/health"})
MAX_HEADER_BYTES = 64 * 1024
MAX_HOST_VERDICTS = 64
# Refused Host values remembered so that each is logged once; a caller rotating names gets no
# more log lines (nor memory) than this.
MAX_LOGGED_HOSTS = 64
ALLOWED_HOSTS_SETTING = "SIDECAR_ALLOWED_HOSTS"


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


def is_ip_literal(name: str) -> bool:
    """A dotted-quad IPv4 address or a bracketed IPv6 address (no zone), as split_host names them.

    DNS rebinding needs a name that an attacker's DNS can point at us; a page whose origin is an
    address can only be on that address, so an IP-literal Host is never a rebinding.
    """
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
        if "%" in name:  # a zone id names an interface, not an address
            return False
        version = 6
    else:
        version = 4
    try:
        return ipaddress.ip_address(name).version == version
    except ValueError:
        return False


class HostRule:
    """IP literals and loopback names with any port, plus SIDECAR_ALLOWED_HOSTS: `host`,
    `host:port` or `*`."""

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
        return name in self.any_port or f"{name}:{port}" in self.exact or is_ip_literal(name)


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


def quoted(value: bytes) -> str:
    """'value' with quotes, backslashes, control and non-ASCII characters escaped, so that a
    hostile Host cannot forge text in an answer or a log line."""
    text = value.decode("latin-1").encode("unicode_escape").decode("ascii")
    return "'" + text.replace("'", "\\'") + "'"


async def _refuse(
    send: Send,
    status: int,
    code: str,
    extra: list[tuple[bytes, bytes]],
    detail: str | None = None,
) -> None:
    body = problem_body(Problem(status, code, TITLES[code], detail))
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
        self._logged_hosts: set[bytes] = set()
        self._log_full = False
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
            await _refuse(send, 400, "INVALID_HOST", [], self._refusal(hosts))
            return
        if self.token is not None and scope["path"] not in OPEN_PATHS:
            scheme, _, given = (authorization or b"").decode("latin-1").partition(" ")
            # Constant time, so the token cannot be guessed byte by byte from response times.
            matches = hmac.compare_digest(given.strip().encode("latin-1"), self.token)
            if scheme.lower() != "bearer" or not matches:
                await _refuse(send, 401, "UNAUTHORIZED", [(b"www-authenticate", b"Bearer")])
                return
        await self.app(scope, receive, send)

    def _refusal(self, hosts: list[bytes]) -> str:
        """The detail of a refusal, naming what to set; logged once per distinct Host."""
        if len(hosts) > 1:
            return "A request must have exactly one Host header"
        if not hosts or not hosts[0]:
            return (
                "A Host header is required: 127.0.0.1, localhost, an IP address, or a name "
                f"in {ALLOWED_HOSTS_SETTING}"
            )
        host = quoted(hosts[0])
        if hosts[0] not in self._logged_hosts and not self._log_full:
            if len(self._logged_hosts) < MAX_LOGGED_HOSTS:
                self._logged_hosts.add(hosts[0])
                log.warning(
                    "refused Host %s; add it to %s to allow it", host, ALLOWED_HOSTS_SETTING
                )
            else:
                self._log_full = True
                log.warning(
                    "refused %d distinct Host values; further ones are not logged (each answer "
                    "still names its Host)",
                    MAX_LOGGED_HOSTS,
                )
        return f"Host {host} is not allowed; add it to {ALLOWED_HOSTS_SETTING}"

    def _allows(self, host: bytes) -> bool:
        verdict = self._verdicts.get(host)
        if verdict is None:
            verdict = self.hosts.allows(host.decode("latin-1"))
            if len(self._verdicts) < MAX_HOST_VERDICTS:
                self._verdicts[host] = verdict
        return verdict
