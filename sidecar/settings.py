"""One frozen Settings struct, read once from command-line flags and SIDECAR_* variables.

Every value is checked here, before anything is opened or bound: a bad one raises SettingError,
whose message names the setting (the flag or the variable it came from) and what it accepts.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import metadata
from typing import Any

import msgspec

DEFAULT_DB = "./achievements.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_STREAMS = 100
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_IDEMPOTENCY_TTL = 24 * 3600
DEFAULT_IDEMPOTENCY_BUDGET_MB = 256
MIB = 1024 * 1024


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    db_path: str = DEFAULT_DB
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # When set, every route but /health requires `Authorization: Bearer <token>`.
    token: str | None = None
    # Extra Host header entries beyond the loopback names: "host" (any port), "host:port", "*".
    allowed_hosts: tuple[str, ...] = ()
    # NORMAL survives a process crash (WAL); FULL also survives power loss, at one fsync per commit.
    synchronous: str = "NORMAL"
    max_body_bytes: int = MAX_BODY_BYTES
    # Open Server-Sent Event streams at most; one more is 503 TOO_MANY_STREAMS.
    max_streams: int = DEFAULT_MAX_STREAMS
    # Open connections at most; beyond it new connections are refused at once (503).
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    # A request whose headers and body have not arrived after this many seconds is dropped.
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    # Stored idempotent answers are kept this long, and purged oldest first past the budget.
    idempotency_ttl_seconds: int = DEFAULT_IDEMPOTENCY_TTL
    idempotency_budget_bytes: int = DEFAULT_IDEMPOTENCY_BUDGET_MB * MIB


class SettingError(ValueError):
    """A setting with a value it does not accept; the message is one line naming both."""


def version() -> str:
    """The installed package's version (a wheel, or `pip install -e`), else the source's."""
    try:
        return metadata.version("achievements-sidecar")
    except metadata.PackageNotFoundError:
        from sidecar import __version__

        return __version__


# --- the accepted values, one parser each ------------------------------------------------------

# ASCII digits only: int() and str.isdigit() also take fullwidth digits and "\u00b2".
_DIGITS = re.compile(r"[0-9]{1,19}")
_DURATION = re.compile(r"([0-9]{1,12}(?:\.[0-9]{1,9})?)([smhd]?)", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
# A DNS name (RFC 1123 labels, plus "_" as compose service names have it); IP literals are
# checked by the ipaddress module.
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(
    rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?",
    re.IGNORECASE,
)
# A bearer token goes in a header: visible ASCII, no spaces.
_TOKEN = re.compile(r"[\x21-\x7e]{1,4096}")


def _whole(low: int, high: int) -> tuple[Callable[[str], int], str]:
    """A parser of whole numbers in low..high, and its description."""

    def parse(text: str) -> int:
        if not _DIGITS.fullmatch(text) or not low <= int(text) <= high:
            raise ValueError
        return int(text)

    return parse, f"a whole number {low}-{high}"


_port, PORTS = _whole(1, 65535)


def _is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return bool(_HOST_NAME.fullmatch(text))
    return True


def _host(text: str) -> str:
    if not _is_host(text):
        raise ValueError
    return text


def _allowed_entry(entry: str) -> str:
    """`*`, `host`, `host:port`, `[v6]`, `[v6]:port` (lower-cased, as the Host check compares)."""
    entry = entry.strip().lower()
    if entry == "*":
        return entry
    if entry.startswith("["):
        address, bracket, port = entry[1:].partition("]")
        if not bracket or not _is_host(address) or ":" not in address:
            raise ValueError
        if port:
            if not port.startswith(":"):
                raise ValueError
            _port(port[1:])
        return entry
    name, colon, port = entry.rpartition(":")
    if not colon:
        name = entry
    elif port:
        _port(port)
    else:
        raise ValueError
    if ":" in name or not _is_host(name):
        raise ValueError
    return entry


def _allowed_hosts(text: str) -> tuple[str, ...]:
    entries = text.split(",")
    if text.strip() == "":  # set but empty: no extra entries
        return ()
    return tuple(_allowed_entry(entry) for entry in entries)


def _token(text: str) -> str:
    # Set but empty (an env file whose secret is missing) must not silently mean "no token".
    if not _TOKEN.fullmatch(text):
        raise ValueError
    return text


def _synchronous(text: str) -> str:
    if text.upper() not in ("NORMAL", "FULL"):
        raise ValueError
    return text.upper()


def _duration(text: str) -> Decimal:
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError
    return Decimal(match[1]) * _UNIT_SECONDS[match[2].lower()]


def _seconds(low: str, high: str) -> tuple[Callable[[str], float], str]:
    """A parser of durations from `low` to `high` ("0.1s", "365d"), in seconds, and its text."""
    bounds = (_duration(low), _duration(high))

    def parse(text: str) -> float:
        seconds = _duration(text)
        if not bounds[0] <= seconds <= bounds[1]:
            raise ValueError
        return float(seconds)

    return parse, f"{low} to {high}, in seconds or with a unit: 90s, 30m, 24h, 7d"


def _db_path(text: str) -> str:
    if not text or "\x00" in text:
        raise ValueError
    return text


@dataclass(frozen=True)
class Setting:
    """One setting: where it comes from, how it is checked, and how `serve --help` (and the
    README's table) describe it."""

    variable: str
    flag: str | None
    meaning: str
    default: Any
    shown_default: str
    parse: Callable[[str], Any]
    accepted: str

    def describe(self) -> str:
        return f"{self.meaning} (default {self.shown_default}; accepted: {self.accepted})"

    def read(self, flag_value: str | None, environ: Mapping[str, str]) -> Any:
        """The flag when given, else the variable, else the default; SettingError if bad."""
        name, text = (self.flag, flag_value) if flag_value is not None else (self.variable, None)
        if text is None:
            text = environ.get(self.variable)
        if text is None:
            return self.default
        try:
            return self.parse(text)
        except (ValueError, ArithmeticError):
            shown = text if len(text) <= 60 else f"{text[:57]}..."
            raise SettingError(
                f"{name}: {shown!r} is not accepted; accepted: {self.accepted}"
            ) from None


SETTINGS = {
    setting.variable: setting
    for setting in [
        Setting(
            "SIDECAR_DB",
            "--db",
            "the SQLite file",
            DEFAULT_DB,
            DEFAULT_DB,
            _db_path,
            "a path; its directory must exist",
        ),
        Setting(
            "SIDECAR_HOST",
            "--host",
            "address to bind",
            DEFAULT_HOST,
            DEFAULT_HOST,
            _host,
            "an IPv4 or IPv6 address or a host name",
        ),
        Setting(
            "SIDECAR_PORT", "--port", "port to bind", DEFAULT_PORT, str(DEFAULT_PORT), _port, PORTS
        ),
        Setting(
            "SIDECAR_TOKEN",
            None,
            "bearer token that every route but /health requires",
            None,
            "unset",
            _token,
            "1-4096 visible ASCII characters, no spaces; unset the variable to run without one",
        ),
        Setting(
            "SIDECAR_ALLOWED_HOSTS",
            None,
            "Host headers allowed beyond loopback names and IP addresses",
            (),
            "unset",
            _allowed_hosts,
            "comma-separated host (any port), host:port, [IPv6]:port, or * (no check)",
        ),
        Setting(
            "SIDECAR_SYNCHRONOUS",
            None,
            "NORMAL survives a crash, FULL also a power loss, at one fsync per commit",
            "NORMAL",
            "NORMAL",
            _synchronous,
            "NORMAL or FULL (any case)",
        ),
        Setting(
            "SIDECAR_MAX_STREAMS",
            None,
            "open event streams at most",
            DEFAULT_MAX_STREAMS,
            str(DEFAULT_MAX_STREAMS),
            *_whole(1, 100_000),
        ),
        Setting(
            "SIDECAR_MAX_CONNECTIONS",
            None,
            "open connections at most",
            DEFAULT_MAX_CONNECTIONS,
            str(DEFAULT_MAX_CONNECTIONS),
            *_whole(1, 1_000_000),
        ),
        Setting(
            "SIDECAR_REQUEST_TIMEOUT",
            None,
            "time for a request's headers and body to arrive",
            DEFAULT_REQUEST_TIMEOUT,
            f"{DEFAULT_REQUEST_TIMEOUT:g}s",
            *_seconds("0.1s", "1h"),
        ),
        Setting(
            "SIDECAR_IDEMPOTENCY_TTL",
            None,
            "how long idempotency keys are kept",
            DEFAULT_IDEMPOTENCY_TTL,
            "24h",
            *_seconds("1s", "365d"),
        ),
        Setting(
            "SIDECAR_IDEMPOTENCY_BUDGET_MB",
            None,
            "stored idempotent answers at most, in MiB, oldest purged first",
            DEFAULT_IDEMPOTENCY_BUDGET_MB,
            str(DEFAULT_IDEMPOTENCY_BUDGET_MB),
            *_whole(1, 1_048_576),
        ),
    ]
}
# Read by sidecar.client, which a bot may run with the same environment.
CLIENT_VARIABLES = ("SIDECAR_URL", "SIDECAR_TIMEOUT")


def unknown_variables(env: Mapping[str, str] | None = None) -> list[str]:
    """SIDECAR_* names that are no setting: a typo (SIDECAR_TOKNE) would otherwise go unseen."""
    environ = os.environ if env is None else env
    known = {*SETTINGS, *CLIENT_VARIABLES}
    return sorted(name for name in environ if name.startswith("SIDECAR_") and name not in known)


def db_path_from(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    """The database every command uses: `--db`, else SIDECAR_DB, else ./achievements.db."""
    return str(SETTINGS["SIDECAR_DB"].read(flag, os.environ if env is None else env))


def settings_from_env(
    *,
    db: str | None = None,
    host: str | None = None,
    port: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Flags win over SIDECAR_* variables, which win over the defaults; every value checked."""
    environ = os.environ if env is None else env
    flags = {"SIDECAR_DB": db, "SIDECAR_HOST": host, "SIDECAR_PORT": port}
    value = {name: setting.read(flags.get(name), environ) for name, setting in SETTINGS.items()}
    return Settings(
        db_path=value["SIDECAR_DB"],
        host=value["SIDECAR_HOST"],
        port=value["SIDECAR_PORT"],
        token=value["SIDECAR_TOKEN"],
        allowed_hosts=value["SIDECAR_ALLOWED_HOSTS"],
        synchronous=value["SIDECAR_SYNCHRONOUS"],
        max_streams=value["SIDECAR_MAX_STREAMS"],
        max_connections=value["SIDECAR_MAX_CONNECTIONS"],
        request_timeout=value["SIDECAR_REQUEST_TIMEOUT"],
        idempotency_ttl_seconds=int(value["SIDECAR_IDEMPOTENCY_TTL"]),
        idempotency_budget_bytes=value["SIDECAR_IDEMPOTENCY_BUDGET_MB"] * MIB,
    )
