"""Scale databases on PostgreSQL: the rows of bench/datafile.py (N users x 10 progress rows, the
same ids, timestamps and metadata), written with SQL in one transaction.

The schema (sidecar/postgres/schema.sql) keeps its counters with triggers that fire once per
row. The bulk way switches every trigger off for the loading session
(`session_replication_role = replica`: also the foreign keys' checks, which the rows meet by
construction), drops the secondary indexes, inserts the rows from `generate_series` in
(user, achievement) order, computes the counters with GROUP BY, and re-creates the indexes from
the very SQL read out of the database. As on SQLite, the bench makes a small database both ways
first and compares every table (`differing_tables`, after folding the trigger-made deltas with
the schema's own compact_counters()); the big one is then checked by recounting every counter
from the rows (`inconsistent_counters`: the checks of `sidecar check`, in sidecar/postgres).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import psycopg

from bench.datafile import CREATED, FIRST_UNLOCK_EPOCH, ROWS_PER_USER
from sidecar.postgres import COUNTER_CHECKS
from sidecar.postgres import backend as pg_backend
from tests import pg

_ACHIEVEMENTS = (
    "INSERT INTO achievements (id, name, created_at, updated_at) "
    "SELECT a, 'A' || a, %(created)s, %(created)s FROM generate_series(1, %(per_user)s) AS a"
)
_AFTER_ACHIEVEMENTS = "SELECT setval(pg_get_serial_sequence('achievements', 'id'), %(per_user)s)"
_USERS = (
    "INSERT INTO users (id, created_at) "
    "SELECT u, %(created)s FROM generate_series(1, %(users)s) AS u"
)
# bench/datafile.py's rows: rows 1..(u % 10 + 1) unlocked, a second apart.
_PROGRESS = (
    "INSERT INTO user_achievements "
    "(user_id, achievement_id, unlocked_at, metadata, created_at, updated_at) "
    "SELECT u, a, t.at, '{\"current\":' || (u %% 97) || ',\"best\":7}', %(created)s, "
    "coalesce(t.at, %(created)s) "
    "FROM generate_series(1, %(users)s) AS u CROSS JOIN generate_series(1, %(per_user)s) AS a "
    "CROSS JOIN LATERAL (SELECT CASE WHEN a <= u %% 10 + 1 THEN to_char("
    "to_timestamp(%(epoch)s + u * 10 + a) AT TIME ZONE 'UTC', "
    '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') END AS at) AS t '
    "ORDER BY u, a"
)
_COUNTERS = (
    "INSERT INTO user_stats (user_id, progress_rows, unlocked_count, reached_at) "
    "SELECT u.id, count(p.id), count(p.unlocked_at), max(p.unlocked_at) "
    "FROM users AS u LEFT JOIN user_achievements AS p ON p.user_id = u.id GROUP BY u.id",
    "INSERT INTO achievement_stats (achievement_id, progress_rows, unlocked_count) "
    "SELECT a.id, count(p.id), count(p.unlocked_at) "
    "FROM achievements AS a LEFT JOIN user_achievements AS p ON p.achievement_id = a.id "
    "GROUP BY a.id",
    "INSERT INTO totals (users, users_with_progress) SELECT (SELECT count(*) FROM users), "
    "(SELECT count(*) FROM user_stats WHERE progress_rows > 0)",
    "INSERT INTO unlock_histogram (unlocked_count, users) "
    "SELECT unlocked_count, count(*) FROM user_stats WHERE unlocked_count > 0 GROUP BY 1",
    *(
        f"INSERT INTO unlock_{table} (unlocked_count, {column}, users) "
        f"SELECT unlocked_count, left(reached_at, {length}), count(*) FROM user_stats "
        "WHERE unlocked_count > 0 GROUP BY 1, 2"
        for table, column, length in (
            ("months", "month", 7),
            ("days", "day", 10),
            ("hours", "hour", 13),
        )
    ),
)
# The secondary indexes (not those behind a primary key or a unique constraint), as SQL.
_INDEXES = (
    "SELECT i.indexname, i.indexdef FROM pg_indexes AS i "
    "WHERE i.schemaname = current_schema() AND NOT EXISTS ("
    "SELECT FROM pg_constraint AS c WHERE c.conname = i.indexname)"
)


def generate(url: str, users: int, by_triggers: bool = False) -> None:
    """Fill the empty database at `url` (the service's schema made first) with `users` x 10
    rows; then VACUUM ANALYZE, as a long-running database would be."""
    pg_backend.prepare(url)  # the schema and its version: what the service makes of it
    parameters = {
        "users": users,
        "per_user": ROWS_PER_USER,
        "created": CREATED,
        "epoch": FIRST_UNLOCK_EPOCH,
    }
    with psycopg.connect(url, autocommit=True) as connection:
        # A failure leaves a database to throw away: nothing to wait for at the commit.
        connection.execute("SET synchronous_commit = off")
        connection.execute("SET maintenance_work_mem = '256MB'")
        connection.execute("SET work_mem = '256MB'")  # the ORDER BY of the rows
        with connection.transaction():
            if by_triggers:
                _load(connection, parameters)
            else:
                _bulk(connection, parameters)
        connection.execute("VACUUM ANALYZE")


def _load(connection: psycopg.Connection[Any], parameters: dict[str, Any]) -> None:
    connection.execute(_ACHIEVEMENTS, parameters)
    connection.execute(_AFTER_ACHIEVEMENTS, parameters)
    connection.execute(_USERS, parameters)
    connection.execute(_PROGRESS, parameters)


def _bulk(connection: psycopg.Connection[Any], parameters: dict[str, Any]) -> None:
    connection.execute("SET LOCAL session_replication_role = replica")
    indexes = connection.execute(_INDEXES).fetchall()
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    _load(connection, parameters)
    for sql in _COUNTERS:
        connection.execute(sql)
    for _, sql in indexes:
        connection.execute(sql)


def differing_tables(one: str, other: str) -> list[str]:
    """The tables whose rows differ between two databases (none: the same contents), after the
    trigger-made deltas are folded."""
    for url in (one, other):
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("SELECT compact_counters()")
    differing = Counter(pg.dump(one))
    differing.subtract(pg.dump(other))
    return sorted({line.split(":", 1)[0] for line, count in differing.items() if count})


def inconsistent_counters(url: str) -> list[str]:
    """The counters whose stored sums differ from a recount of the rows (none: consistent)."""
    found = []
    with psycopg.connect(url, autocommit=True) as connection:
        for name, (stored, recount) in COUNTER_CHECKS.items():
            one, other = f"SELECT * FROM ({stored}) AS s", f"SELECT * FROM ({recount}) AS r"
            differing = connection.execute(
                f"SELECT count(*) FROM (({one} EXCEPT ALL {other}) "
                f"UNION ALL ({other} EXCEPT ALL {one})) AS d"
            ).fetchone()
            if differing is None or differing[0]:
                found.append(name)
    return found


def read_into_page_cache(data_directory: Path, url: str) -> None:
    """Read the database's files once, so that they start out in the OS page cache (this VM
    hands page cache back to the host within a minute: bench/datafile.py)."""
    with psycopg.connect(url, autocommit=True) as connection:
        row = connection.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    buffer = bytearray(1 << 20)
    for path in sorted((data_directory / "base" / str(row[0])).iterdir()):
        if path.is_file():
            with path.open("rb", buffering=0) as file:
                while file.readinto(buffer):
                    pass
