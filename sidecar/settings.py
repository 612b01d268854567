"""One frozen Settings struct, read once from command-line flags and SIDECAR_* variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

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
    idempotency_budget_bytes: int = DEFAULT_IDEMPOTENCY_BUDGET_MB * 1024 * 1024


def db_path_from(flag: str | None, env: Mapping[str, str] | None = None) -> str:
    """The database every command uses: `--db`, else SIDECAR_DB, else ./achievements.db."""
    environ = os.environ if env is None else env
    return flag or environ.get("SIDECAR_DB") or DEFAULT_DB


def settings_from_env(
    *,
    db: str | None = None,
    host: str | None = None,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Flags win over SIDECAR_* variables, which win over the defaults."""
    environ = os.environ if env is None else env
    port_text = environ.get("SIDECAR_PORT")
    synchronous = environ.get("SIDECAR_SYNCHRONOUS", "NORMAL").upper()
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"SIDECAR_SYNCHRONOUS must be NORMAL or FULL, not {synchronous!r}")
    hosts = tuple(
        entry.strip().lower()
        for entry in environ.get("SIDECAR_ALLOWED_HOSTS", "").split(",")
        if entry.strip()
    )
    return Settings(
        db_path=db_path_from(db, environ),
        host=host or environ.get("SIDECAR_HOST") or DEFAULT_HOST,
        port=port if port is not None else int(port_text) if port_text else DEFAULT_PORT,
        token=environ.get("SIDECAR_TOKEN") or None,
        allowed_hosts=hosts,
        synchronous=synchronous,
        max_streams=int(environ.get("SIDECAR_MAX_STREAMS", DEFAULT_MAX_STREAMS)),
        max_connections=int(environ.get("SIDECAR_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)),
        request_timeout=float(environ.get("SIDECAR_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)),
    )
