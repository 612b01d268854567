"""Scale files: N users x 10 progress rows, written straight with SQL in one transaction.

User u has rows on achievements 1..10; rows 1..(u % 10 + 1) are unlocked (so every user is on
the leaderboard, with 1 to 10 unlocks), a second apart from 2020-09-13 on.

schema.sql keeps counters (user_stats, unlock_histogram, unlock_months, unlock_days,
unlock_hours, achievement_stats, totals) with triggers that fire once per row. For a million
users the bulk way is faster: the triggers and the secondary indexes are dropped, the rows
inserted in (user, achievement) order, the counters computed with GROUP BY, and the indexes and
triggers re-created from the very SQL read out of the file. `by_triggers=True` inserts the same
rows with the triggers live instead, and `differing_tables` compares every table of two files:
the bench makes a small file both ways first and writes the big one in bulk only when they agree
(a counter added to the schema but not to `_bulk` makes them differ), then runs
`python -m sidecar check` on it. No events are written: the feed is not measured.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sidecar import db

ROWS_PER_USER = 10
CREATED = "2020-01-01T00:00:00.000Z"
FIRST_UNLOCK_EPOCH = 1_600_000_000

_USERS = (
    "INSERT INTO users (id, created_at) "
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :users) "
    "SELECT i, :created FROM n"
)
# CROSS JOIN keeps users as the outer loop: rows arrive in (user_id, achievement_id) order, so
# the UNIQUE index grows at its end.
_PROGRESS = (
    "INSERT INTO user_achievements "
    "(user_id, achievement_id, unlocked_at, metadata, created_at, updated_at) "
    "SELECT user_id, achievement_id, unlocked_at, metadata, :created, "
    "coalesce(unlocked_at, :created) FROM ("
    "  SELECT u.id AS user_id, a.id AS achievement_id,"
    "    CASE WHEN a.id <= u.id % 10 + 1 THEN strftime('%Y-%m-%dT%H:%M:%fZ',"
    "      :epoch + u.id * 10 + a.id, 'unixepoch') END AS unlocked_at,"
    "    '{\"current\":' || (u.id % 97) || ',\"best\":7}' AS metadata"
    "  FROM users AS u CROSS JOIN achievements AS a)"
)
_USER_STATS = (
    "INSERT INTO user_stats (user_id, progress_rows, unlocked_count, reached_at) "
    "SELECT u.id, count(p.id), count(p.unlocked_at), max(p.unlocked_at) "
    "FROM users AS u LEFT JOIN user_achievements AS p ON p.user_id = u.id GROUP BY u.id"
)
_ACHIEVEMENT_STATS = (
    "UPDATE achievement_stats SET progress_rows = c.n, unlocked_count = c.k FROM ("
    "  SELECT achievement_id, count(*) AS n, count(unlocked_at) AS k"
    "  FROM user_achievements GROUP BY achievement_id) AS c "
    "WHERE c.achievement_id = achievement_stats.achievement_id"
)
_TOTALS = (
    "UPDATE totals SET users = (SELECT count(*) FROM users), "
    "users_with_progress = (SELECT count(*) FROM user_stats WHERE progress_rows > 0) WHERE id = 1"
)
_HISTOGRAM = (
    "INSERT INTO unlock_histogram (unlocked_count, users) "
    "SELECT unlocked_count, count(*) FROM user_stats WHERE unlocked_count > 0 "
    "GROUP BY unlocked_count"
)
_PERIODS = tuple(
    f"INSERT INTO unlock_{table} (unlocked_count, {column}, users) "
    f"SELECT unlocked_count, substr(reached_at, 1, {length}), count(*) FROM user_stats "
    "WHERE unlocked_count > 0 GROUP BY 1, 2"
    for table, column, length in (
        ("months", "month", 7),
        ("days", "day", 10),
        ("hours", "hour", 13),
    )
)
# Rows that mean nothing, which the triggers may leave behind and the bulk way does not make.
_EMPTY_ROWS = {
    table: "users = 0"
    for table in ("unlock_histogram", "unlock_months", "unlock_days", "unlock_hours")
}


def generate(path: Path, users: int, by_triggers: bool = False) -> None:
    """A fresh service file at `path` (which must not exist) with `users` x 10 rows."""
    db.prepare(str(path))  # the schema, its version, WAL: what the service makes of a new file
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # No journal while loading (a failure leaves a file to throw away); WAL again at the end.
        connection.execute("PRAGMA journal_mode = OFF")
        connection.execute("PRAGMA synchronous = OFF")
        connection.execute("PRAGMA cache_size = -262144")
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO achievements (id, name, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [(a, f"A{a}", CREATED, CREATED) for a in range(1, ROWS_PER_USER + 1)],
        )
        parameters = {"users": users, "created": CREATED, "epoch": FIRST_UNLOCK_EPOCH}
        if by_triggers:
            connection.execute(_USERS, parameters)
            connection.execute(_PROGRESS, parameters)
        else:
            _bulk(connection, parameters)
        connection.execute("COMMIT")
        connection.execute("PRAGMA journal_mode = WAL")
    finally:
        connection.close()


def _bulk(connection: sqlite3.Connection, parameters: dict[str, object]) -> None:
    triggers = db.schema_objects(connection, "trigger")
    indexes = db.schema_objects(connection, "index")
    for name, _ in triggers:
        connection.execute(f'DROP TRIGGER "{name}"')
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    connection.execute(_USERS, parameters)
    connection.execute(_PROGRESS, parameters)
    for _, sql in indexes:
        connection.execute(sql)
    connection.execute(_USER_STATS)
    connection.execute(_ACHIEVEMENT_STATS)
    connection.execute(_TOTALS)
    connection.execute(_HISTOGRAM)
    for sql in _PERIODS:
        connection.execute(sql)
    for _, sql in triggers:
        connection.execute(sql)


def contents(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every table's rows, sorted: a counter table added to the schema later is compared too."""
    connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        ]
        found = {}
        for table in tables:
            empty = _EMPTY_ROWS.get(table)
            where = f" WHERE NOT ({empty})" if empty else ""
            found[table] = sorted(connection.execute(f'SELECT * FROM "{table}"{where}'), key=repr)
        return found
    finally:
        connection.close()


def differing_tables(one: Path, other: Path) -> list[str]:
    """The tables whose rows differ between two files (none: the same contents)."""
    first, second = contents(one), contents(other)
    return sorted(t for t in first.keys() | second.keys() if first.get(t) != second.get(t))


def read_into_page_cache(path: Path) -> None:
    """Read the whole file once, so that its pages start out in the OS page cache.

    This machine (a Firecracker VM) hands page cache back to the host within a minute: 3.1 GB
    cached fell to 1.3 GB in 60 idle seconds, measured, with 22 GB free. A 1.6 GB file read
    minutes earlier is then mostly on disk again, and its random reads measure the disk.
    """
    buffer = bytearray(1 << 20)
    with path.open("rb", buffering=0) as file:
        while file.readinto(buffer):
            pass
