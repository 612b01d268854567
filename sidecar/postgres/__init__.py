"""The PostgreSQL backend (`--db postgresql://...`): its schema, versioned like SQLite's.

schema.sql here is the PostgreSQL twin of the top-level schema.sql: the same tables and columns,
with what several sidecar processes on one database need (see its header). Its own version
numbers start at 1 in the schema_version table.
"""

from __future__ import annotations

import urllib.parse
from importlib import resources
from typing import Any

SCHEMA_VERSION = 1
SCHEMES = ("postgresql://", "postgres://")


def is_url(database: str) -> bool:
    """Whether --db / SIDECAR_DB names a PostgreSQL database rather than a SQLite file."""
    return database.startswith(SCHEMES)


def redacted(database: str) -> str:
    """The database as it may be shown: a URL without its password (every log line and error
    message names it so); a path as it is."""
    if not is_url(database):
        return database
    parts = urllib.parse.urlsplit(database)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    # libpq also takes the password as a parameter: ...?password=secret
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if any(name in _SECRETS for name, _ in query):
        hidden = [(name, "***" if name in _SECRETS else value) for name, value in query]
        parts = parts._replace(query=urllib.parse.urlencode(hidden, safe="*"))
    return urllib.parse.urlunsplit(parts)


_SECRETS = ("password", "sslpassword")


def refusal(command: str) -> str | None:
    """Why a command does not run on a PostgreSQL database; None when it does."""
    if command == "backup":
        return "backup copies a SQLite file; back up a PostgreSQL database with pg_dump"
    if command == "restore":
        return "restore replaces a SQLite file; restore a PostgreSQL database with pg_restore"
    return None


def load() -> Any:
    """sidecar.postgres.backend, which needs psycopg (the `postgres` extra)."""
    from sidecar.db import DatabaseError

    try:
        from sidecar.postgres import backend as module
    except ImportError as error:
        raise DatabaseError(
            f"PostgreSQL needs the driver: pip install 'achievements-sidecar[postgres]' ({error})"
        ) from error
    return module


def load_offline() -> Any:
    """sidecar.postgres.offline, the commands other than serve (needs psycopg, as load())."""
    load()
    from sidecar.postgres import offline

    return offline


def schema_sql() -> str:
    return resources.files("sidecar.postgres").joinpath("schema.sql").read_text(encoding="utf-8")


# Held by whatever creates or fills the schema (a starting sidecar, a migration) until its
# commit: a sidecar starting meanwhile waits, then finds the schema and its rows complete.
SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('sidecar', 0))"


def create_schema(connection: Any) -> None:
    """The schema and its version, in the caller's transaction (a backend Connection)."""
    connection.raw.execute(schema_sql())
    connection.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))


# Each trigger-kept counter, as its tables' sums and as a recount from the rows themselves
# (both sorted, keys that sum to nothing left out): the two must be equal. For `check`.
COUNTER_CHECKS: dict[str, tuple[str, str]] = {
    "totals": (
        "SELECT coalesce(sum(users), 0), coalesce(sum(users_with_progress), 0) FROM totals",
        "SELECT (SELECT count(*) FROM users), "
        "(SELECT count(DISTINCT user_id) FROM user_achievements)",
    ),
    "user_stats": (
        "SELECT user_id, progress_rows, unlocked_count, reached_at FROM user_stats "
        "WHERE progress_rows <> 0 OR unlocked_count <> 0 OR reached_at IS NOT NULL ORDER BY 1",
        "SELECT user_id, count(*), count(unlocked_at), max(unlocked_at) FROM user_achievements "
        "GROUP BY user_id ORDER BY 1",
    ),
    "user_stats rows": (
        "SELECT user_id FROM user_stats ORDER BY 1",
        "SELECT id FROM users ORDER BY 1",
    ),
    "achievement_stats": (
        "SELECT a.id, coalesce(sum(s.progress_rows), 0), coalesce(sum(s.unlocked_count), 0) "
        "FROM achievements a LEFT JOIN achievement_stats s ON s.achievement_id = a.id "
        "GROUP BY a.id ORDER BY 1",
        "SELECT a.id, count(p.id), count(p.unlocked_at) FROM achievements a "
        "LEFT JOIN user_achievements p ON p.achievement_id = a.id GROUP BY a.id ORDER BY 1",
    ),
    **{
        table: (
            f"SELECT unlocked_count, {bucket}, sum(users) FROM {table} "
            f"GROUP BY 1, 2 HAVING sum(users) <> 0 ORDER BY 1, 2",
            f"SELECT unlocked_count, {prefix}, count(*) FROM user_stats "
            "WHERE unlocked_count > 0 GROUP BY 1, 2 ORDER BY 1, 2",
        )
        for table, bucket, prefix in (
            ("unlock_histogram", "0", "0"),
            ("unlock_months", "month", "left(coalesce(reached_at, ''), 7)"),
            ("unlock_days", "day", "left(coalesce(reached_at, ''), 10)"),
            ("unlock_hours", "hour", "left(coalesce(reached_at, ''), 13)"),
        )
    },
    "idempotency_usage": (
        "SELECT coalesce(sum(keys), 0), coalesce(sum(bytes), 0) FROM idempotency_usage",
        "SELECT count(*), coalesce(sum(2 * octet_length(key) + length(fingerprint) "
        "+ length(body) + 2 * octet_length(created_at) + 48), 0) FROM idempotency_keys",
    ),
    "events": (
        "SELECT last_id FROM event_counter",
        "SELECT coalesce(max(id), 0) FROM events",
    ),
}

# The counters rebuilt from the rows, as the triggers keep them (COUNTER_CHECKS compares), into
# empty counter tables: for rows written with the triggers off (`migrate`, the bench's bulk data).
RECOUNT = (
    "INSERT INTO user_stats (user_id, progress_rows, unlocked_count, reached_at) "
    "SELECT u.id, count(p.id), count(p.unlocked_at), max(p.unlocked_at) FROM users u "
    "LEFT JOIN user_achievements p ON p.user_id = u.id GROUP BY u.id",
    "INSERT INTO totals (users, users_with_progress) "
    "SELECT count(*), count(*) FILTER (WHERE progress_rows > 0) FROM user_stats",
    "INSERT INTO achievement_stats (achievement_id, progress_rows, unlocked_count) "
    "SELECT a.id, count(p.id), count(p.unlocked_at) FROM achievements a "
    "LEFT JOIN user_achievements p ON p.achievement_id = a.id GROUP BY a.id",
    "INSERT INTO unlock_histogram (unlocked_count, users) "
    "SELECT unlocked_count, count(*) FROM user_stats WHERE unlocked_count > 0 GROUP BY 1",
    *(
        f"INSERT INTO {table} (unlocked_count, {bucket}, users) "
        f"SELECT unlocked_count, left(reached_at, {length}), count(*) FROM user_stats "
        "WHERE unlocked_count > 0 GROUP BY 1, 2"
        for table, bucket, length in (
            ("unlock_months", "month", 7),
            ("unlock_days", "day", 10),
            ("unlock_hours", "hour", 13),
        )
    ),
)
