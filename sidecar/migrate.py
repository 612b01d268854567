"""`sidecar migrate --from FILE --to postgresql://...`: a SQLite file copied into an empty
PostgreSQL database, in one PostgreSQL transaction (a failure leaves the target as it was).

The file is read in one read transaction (one snapshot, also while a sidecar serves it), in
batches (bounded memory at any size). Every row keeps its id, its timestamps and its metadata
text byte for byte; idempotency keys past their TTL are left out. The counting triggers are off
during the copy, and the counters recounted from the copied rows afterwards (a few statements,
where the triggers would update a user's counters once per copied row). Identities and the event
counter are set past the file's highest ids, also past deleted rows (sqlite_sequence), so that no
id is ever given twice. Before the commit, every table's row count and every counter
(COUNTER_CHECKS) is checked.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from sidecar import readonly, store
from sidecar.db import DatabaseError
from sidecar.postgres import (
    COUNTER_CHECKS,
    RECOUNT,
    SCHEMA_LOCK,
    SCHEMA_VERSION,
    create_schema,
    offline,
    redacted,
)
from sidecar.postgres.backend import Connection, _first_line

BATCH_ROWS = 10_000

# Copied in this order (what a row references first), with their columns.
TABLES = {
    "achievements": "id, key, name, description, metadata, created_at, updated_at",
    "users": "id, created_at",
    "user_achievements": "id, user_id, achievement_id, unlocked_at, metadata, created_at, "
    "updated_at",
    "events": "id, type, user_id, achievement_id, unlocked_at",
    "idempotency_keys": "key, fingerprint, status, body, created_at",
}
# Only the keys within their TTL: the service would take an expired one for a new key anyway.
_WHERE = {"idempotency_keys": " WHERE created_at >= :cutoff"}

# The same size estimate as the triggers' (schema.sql); `evicted` is the file's own count.
_RECOUNT_USAGE = (
    "INSERT INTO idempotency_usage (keys, bytes, evicted) SELECT count(*), "
    "coalesce(sum(2 * octet_length(key) + length(fingerprint) + length(body) "
    "+ 2 * octet_length(created_at) + 48), 0), ? FROM idempotency_keys"
)

# Definitions whose name or description holds U+0000, which SQLite's text can hold and
# PostgreSQL's cannot: named when PostgreSQL refuses the copy for it. (The rows go through the
# backend connection's adaptation of strings, where an escaping of U+0000 belongs; metadata is
# JSON text, where it is always escaped, and keys cannot hold it.)
_NUL = (
    "SELECT id FROM achievements WHERE instr(CAST(name AS BLOB), x'00') > 0 "
    "OR instr(CAST(description AS BLOB), x'00') > 0 ORDER BY id"
)

Progress = Callable[[str, int, int], None]


@dataclass
class Summary:
    rows: dict[str, int]
    expired_keys: int  # left out
    next_achievement_id: int
    last_event_id: int
    counters: int  # checked
    seconds: float = 0.0


def migrate(source: str, url: str, ttl_seconds: int, progress: Progress) -> Summary:
    """Copy the file `source` into the empty database at `url`; refuses (DatabaseError, one
    line) a source that is not a sidecar file of this release and a target that is not empty.
    `progress(table, copied, total)` is called after each batch."""
    started = time.monotonic()
    readonly.existing_file(source)
    cutoff = store.timestamp_before(ttl_seconds)
    with offline.connected(url) as target:
        try:
            summary = readonly.read(
                source, lambda connection: _copy(connection, source, target, url, cutoff, progress)
            )
            target.execute("COMMIT")
        except psycopg.Error as error:
            raise DatabaseError(
                f"copying {source} into {redacted(url)} failed, nothing was written: "
                f"{_first_line(error)}"
            ) from None
    summary.seconds = time.monotonic() - started
    return summary


def _copy(
    source: sqlite3.Connection,
    path: str,
    target: Connection,
    url: str,
    cutoff: str,
    progress: Progress,
) -> Summary:
    # readonly.read runs this again when the file changed under an immutable read: start over.
    if target.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        target.execute("ROLLBACK")
    source.execute("BEGIN")  # one snapshot for every read below
    try:
        readonly.require_current_schema(source, path)
        totals = {
            table: int(
                source.execute(
                    f"SELECT count(*) FROM {table}{_WHERE.get(table, '')}", {"cutoff": cutoff}
                ).fetchone()[0]
            )
            for table in TABLES
        }
        all_keys = int(source.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0])
        target.execute("BEGIN")
        _prepare(target, url)
        for table in TABLES:
            target.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        for table, columns in TABLES.items():
            try:
                _copy_table(source, target, table, columns, cutoff, totals[table], progress)
                # Statistics for the tables just filled, within the transaction: the foreign-key
                # checks of the next table plan for them, and so do the recount and the checks
                # (100,000 progress rows: 1.8-3.5 s in all, against 5.1-6.1 s without).
                target.execute(f"ANALYZE {table}")
            except psycopg.DataError as error:
                refused = [str(row[0]) for row in source.execute(_NUL)]
                if table != "achievements" or "NUL" not in str(error) or not refused:
                    raise
                raise DatabaseError(
                    f"{path}: achievement(s) {', '.join(refused)} have U+0000 in their name "
                    "or description, which PostgreSQL cannot store: change them first"
                ) from None
        for table in TABLES:
            target.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        for statement in RECOUNT:
            target.execute(statement)
        target.execute("ANALYZE user_stats")
        evicted = source.execute("SELECT coalesce(sum(evicted), 0) FROM idempotency_usage")
        target.execute(_RECOUNT_USAGE, (int(evicted.fetchone()[0]),))
        next_id, last_event = _move_identities(source, target)
    finally:
        source.execute("COMMIT")
    counted = {
        table: int(offline.value(target, f"SELECT count(*) FROM {table}")) for table in TABLES
    }
    wrong = [
        f"{table}: {counted[table]} rows of {totals[table]}"
        for table in TABLES
        if counted[table] != totals[table]
    ]
    wrong += offline.counter_problems(target)
    if wrong:
        raise DatabaseError(
            f"the copy in {redacted(url)} did not check out ({'; '.join(wrong)}): "
            "nothing was written"
        )
    return Summary(
        counted, all_keys - totals["idempotency_keys"], next_id, last_event, len(COUNTER_CHECKS)
    )


def _prepare(target: Connection, url: str) -> None:
    """The target's schema, in the copy's transaction: created in an empty database; one of this
    release with no row is taken as it is; anything else is refused."""
    target.execute(SCHEMA_LOCK)  # a sidecar starting on the target meanwhile waits for the copy
    version = offline.schema_version(target)
    where = redacted(url)
    if version is None:
        if offline.tables(target):
            raise DatabaseError(
                f"{where} holds tables that are not this service's: "
                "migrate copies into an empty database only"
            )
        create_schema(target)
        return
    if version != SCHEMA_VERSION:
        raise DatabaseError(
            f"{where} has schema version {version}, not {SCHEMA_VERSION}: "
            "migrate copies into an empty database only"
        )
    names = [
        row[0]
        for row in target.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename NOT IN ('schema_version', 'event_counter') ORDER BY 1"
        )
    ]
    filled = [
        name for name in names if offline.value(target, f'SELECT EXISTS (SELECT FROM "{name}")')
    ]
    if offline.value(target, "SELECT last_id FROM event_counter"):
        filled.append("event_counter")
    if filled:
        raise DatabaseError(
            f"{where} is not empty ({', '.join(filled)} hold rows): "
            "migrate copies into an empty database only"
        )


def _copy_table(
    source: sqlite3.Connection,
    target: Connection,
    table: str,
    columns: str,
    cutoff: str,
    total: int,
    progress: Progress,
) -> None:
    rows = source.execute(
        f"SELECT {columns} FROM {table}{_WHERE.get(table, '')}", {"cutoff": cutoff}
    )
    copied = 0
    with target.raw.cursor() as cursor:
        while batch := rows.fetchmany(BATCH_ROWS):
            # One COPY a batch: the foreign-key checks a statement queues stay bounded.
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in batch:
                    copy.write_row(row)
            copied += len(batch)
            progress(table, copied, total)


def _move_identities(source: sqlite3.Connection, target: Connection) -> tuple[int, int]:
    """Set the achievements' and progress rows' identities and the event counter past every id
    the file has given (sqlite_sequence: also a deleted row's); returns the next achievement id
    and the last event id."""
    given = dict(source.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    highest = {
        table: max(
            int(given.get(table, 0)),
            int(source.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]),
        )
        for table in ("achievements", "user_achievements", "events")
    }
    for table in ("achievements", "user_achievements"):
        target.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), greatest(:n, 1), :n > 0)",
            {"n": highest[table]},
        )
    target.execute("UPDATE event_counter SET last_id = ?", (highest["events"],))
    return highest["achievements"] + 1, highest["events"]
