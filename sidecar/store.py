"""All SQL of the service, in one place.

Write functions are synchronous and take the writer's connection: the Writer runs each of them
inside its transaction (and a SAVEPOINT), so a read followed by a write here is race-free: on
SQLite because one writer runs every write, on PostgreSQL (several processes) because each write
first takes the locks that its dialect names (sidecar/dialect.py). Read functions go through
the read-only `Readers`. The SQL is written to run on both backends (sums cast to BIGINT, no
two-argument max()); the PostgreSQL connection rewrites its placeholders.
"""

from __future__ import annotations

import calendar
import sqlite3
import time
import zlib
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import msgspec

from sidecar import dialect
from sidecar.db import Readers
from sidecar.errors import ApiError, not_found
from sidecar.models import (
    Achievement,
    AchievementStats,
    DeletedUser,
    Event,
    LeaderboardEntry,
    UserAchievement,
    UserAchievementChange,
)
from sidecar.validation import canonical_json

AchievementRef = int | str  # an id, or a key

UNLOCKED_EVENT = "achievement.unlocked"

_ACHIEVEMENT_COLUMNS = "id, key, name, description, metadata, created_at, updated_at"
_PROGRESS_COLUMNS = "id, user_id, achievement_id, unlocked_at, metadata, created_at, updated_at"

# The newest event id given (PostgreSQL reads its event counter instead).
LAST_EVENT_ID = "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'events'"


# `updated_at` must move on every update, also twice in one millisecond: take the later of now
# and one millisecond after the stored value. In an upsert's DO UPDATE the column is named with
# its table (PostgreSQL would not know it from the excluded row's).
def _later(column: str) -> str:
    return (
        f"CASE WHEN :now > {column} THEN :now "
        f"ELSE strftime('%Y-%m-%dT%H:%M:%fZ', {column}, '+0.001 seconds') END"
    )


LATER = _later("updated_at")
LATER_IN_UPSERT = _later("user_achievements.updated_at")


# The formatted second of the last call: a batch asks for the time once per item.
_last_second: tuple[int, str] = (-1, "")
# The latest timestamp handed out (milliseconds since the epoch): the service's clock never runs
# behind it, whatever the wall clock does (stepped back by NTP or by hand). Seeded from the file
# at start (`seed_clock`). Read and moved by the writer's thread only.
_latest_ms = 0


def utc_now() -> str:
    """RFC 3339 UTC with milliseconds: 2026-11-24T08:25:23.123Z (sorts as text); never earlier
    than a timestamp this process handed out or found in the file at start."""
    global _latest_ms
    _latest_ms = max(time.time_ns() // 1_000_000, _latest_ms)
    return _text(_latest_ms)


def timestamp_before(seconds: int) -> str:
    """The service's clock `seconds` ago (a TTL's cutoff)."""
    return _text(max(time.time_ns() // 1_000_000, _latest_ms) - seconds * 1000)


def _text(milliseconds: int) -> str:
    global _last_second
    seconds, fraction = divmod(milliseconds, 1000)
    second, text = _last_second
    if second != seconds:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        _last_second = (seconds, text)
    return f"{text}.{fraction:03d}Z"


def seed_clock(connection: sqlite3.Connection) -> None:
    """Move the clock up to the latest timestamp the file holds, in queries that stay cheap at
    millions of rows: indexed maxima, the newest rows by id, and the definitions (few)."""
    global _latest_ms
    latest = connection.execute(
        "SELECT coalesce(max(t), '') FROM ("
        "SELECT (SELECT max(unlocked_at) FROM user_achievements) AS t "
        "UNION ALL SELECT (SELECT max(updated_at) FROM achievements) "
        "UNION ALL SELECT (SELECT max(created_at) FROM idempotency_keys) "
        "UNION ALL SELECT (SELECT unlocked_at FROM events ORDER BY id DESC LIMIT 1) "
        "UNION ALL SELECT (SELECT updated_at FROM user_achievements ORDER BY id DESC LIMIT 1)"
        ") AS latest"
    ).fetchone()[0]
    try:
        moment = time.strptime(latest[:19], "%Y-%m-%dT%H:%M:%S")
        milliseconds = calendar.timegm(moment) * 1000 + int(latest[20:23])
    except ValueError:  # an empty file, or a timestamp this service did not write
        return
    _latest_ms = max(_latest_ms, milliseconds)


def achievement_from(row: Any) -> Achievement:
    return Achievement(row[0], row[1], row[2], row[3], msgspec.Raw(row[4]), row[5], row[6])


def progress_from(row: Any) -> UserAchievement:
    return UserAchievement(row[0], row[1], row[2], row[3], msgspec.Raw(row[4]), row[5], row[6])


def change_from(row: Any, newly_unlocked: bool) -> UserAchievementChange:
    return UserAchievementChange(
        row[0], row[1], row[2], row[3], msgspec.Raw(row[4]), row[5], row[6], newly_unlocked
    )


# Stored metadata was checked on the way in (an object, no duplicate keys, finite numbers), so
# msgspec reads it back; integers of any size stay ints, other numbers become exact Decimals.
_metadata_decoder = msgspec.json.Decoder(dict[str, Any], float_hook=Decimal)


def load_metadata(text: str) -> dict[str, Any]:
    """Stored metadata as Python, numbers exact (ints, Decimals) for the ops language."""
    return _metadata_decoder.decode(text)


def dump_metadata(value: dict[str, Any]) -> str:
    return canonical_json(value).decode("utf-8")


# --- achievements (writes) ---------------------------------------------------------------


def achievement_id(connection: sqlite3.Connection, ref: AchievementRef) -> int:
    """The id of an existing achievement, by id or key; 404 when there is none."""
    column = "id" if isinstance(ref, int) else "key"
    row = connection.execute(
        f"SELECT id FROM achievements WHERE {column} = ?{dialect.of(connection).key_share}", (ref,)
    ).fetchone()
    if row is None:
        raise not_found("ACHIEVEMENT_NOT_FOUND", f"no achievement {column} {ref}")
    return int(row[0])


def _check_key_free(connection: sqlite3.Connection, key: str | None, owner: int | None) -> None:
    if key is None:
        return
    row = connection.execute("SELECT id FROM achievements WHERE key = ?", (key,)).fetchone()
    if row is not None and row[0] != owner:
        raise ApiError(409, "KEY_CONFLICT", f"key {key!r} is used by achievement {row[0]}")


def create_achievement(
    connection: sqlite3.Connection,
    name: str,
    description: str | None,
    key: str | None,
    metadata: str,
) -> Achievement:
    if key is not None:
        dialect.of(connection).claim(connection, f"key {key}")
    _check_key_free(connection, key, None)
    now = utc_now()
    row = connection.execute(
        "INSERT INTO achievements (key, name, description, metadata, created_at, updated_at) "
        f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_ACHIEVEMENT_COLUMNS}",
        (key, name, description, metadata, now, now),
    ).fetchone()
    return achievement_from(row)


def find_achievement(connection: sqlite3.Connection, ref: AchievementRef) -> Achievement | None:
    column = "id" if isinstance(ref, int) else "key"
    row = connection.execute(
        f"SELECT {_ACHIEVEMENT_COLUMNS} FROM achievements WHERE {column} = ?", (ref,)
    ).fetchone()
    return None if row is None else achievement_from(row)


def update_achievement(
    connection: sqlite3.Connection,
    ref: AchievementRef,
    changes: dict[str, Any],
) -> Achievement:
    """Set the given columns (name, description, key, metadata) and move updated_at."""
    current = find_achievement(connection, ref)
    if current is None:
        raise not_found("ACHIEVEMENT_NOT_FOUND", f"no achievement {ref}")
    if changes.get("key") is not None:
        dialect.of(connection).claim(connection, f"key {changes['key']}")
        _check_key_free(connection, changes["key"], current.id)
    assignments = "".join(f"{column} = :{column}, " for column in changes)
    row = connection.execute(
        f"UPDATE achievements SET {assignments}updated_at = {LATER} "
        f"WHERE id = :id RETURNING {_ACHIEVEMENT_COLUMNS}",
        {**changes, "now": utc_now(), "id": current.id},
    ).fetchone()
    return achievement_from(row)


def delete_achievement(connection: sqlite3.Connection, ref: AchievementRef) -> Achievement:
    column = "id" if isinstance(ref, int) else "key"
    row = connection.execute(
        f"DELETE FROM achievements WHERE {column} = ? RETURNING {_ACHIEVEMENT_COLUMNS}", (ref,)
    ).fetchone()
    if row is None:
        raise not_found("ACHIEVEMENT_NOT_FOUND", f"no achievement {column} {ref}")
    return achievement_from(row)


def keyed_achievements(connection: sqlite3.Connection) -> list[Achievement]:
    rows = connection.execute(
        f"SELECT {_ACHIEVEMENT_COLUMNS} FROM achievements ORDER BY key IS NULL, key, id"
    ).fetchall()
    return [achievement_from(row) for row in rows]


# --- progress (writes) -------------------------------------------------------------------


def _ensure_user(connection: sqlite3.Connection, user_id: int, now: str) -> None:
    if dialect.of(connection).lock_creates_user:  # done by lock_user, earlier in the write
        return
    connection.execute(
        "INSERT INTO users (id, created_at) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
        (user_id, now),
    )


def _find_progress(connection: sqlite3.Connection, user_id: int, achievement: int) -> Any:
    return connection.execute(
        f"SELECT {_PROGRESS_COLUMNS} FROM user_achievements "
        "WHERE user_id = ? AND achievement_id = ?",
        (user_id, achievement),
    ).fetchone()


# The one statement that appends to the feed (PostgreSQL's connection watches for it).
APPEND_EVENT = "INSERT INTO events (type, user_id, achievement_id, unlocked_at) VALUES (?, ?, ?, ?)"


def _append_event(connection: sqlite3.Connection, row: Any) -> None:
    connection.execute(APPEND_EVENT, (UNLOCKED_EVENT, row[1], row[2], row[3]))


def upsert_progress(
    connection: sqlite3.Connection, user_id: int, ref: AchievementRef, metadata: str
) -> UserAchievement:
    achievement = achievement_id(connection, ref)
    now = utc_now()
    dialect.of(connection).lock_user(connection, user_id)
    _ensure_user(connection, user_id, now)
    row = connection.execute(
        "INSERT INTO user_achievements "
        "(user_id, achievement_id, metadata, created_at, updated_at) "
        "VALUES (:user, :achievement, :metadata, :now, :now) "
        "ON CONFLICT (user_id, achievement_id) DO UPDATE "
        f"SET metadata = excluded.metadata, updated_at = {LATER_IN_UPSERT} "
        f"RETURNING {_PROGRESS_COLUMNS}",
        {"user": user_id, "achievement": achievement, "metadata": metadata, "now": now},
    ).fetchone()
    return progress_from(row)


def unlock_progress(
    connection: sqlite3.Connection, user_id: int, ref: AchievementRef
) -> UserAchievementChange:
    achievement = achievement_id(connection, ref)
    dialect.of(connection).lock_user(connection, user_id)
    row = _find_progress(connection, user_id, achievement)
    if row is not None and row[3] is not None:
        return change_from(row, newly_unlocked=False)
    return _save_progress(connection, user_id, achievement, row, None, unlock=True)


def apply_progress(
    connection: sqlite3.Connection,
    user_id: int,
    ref: AchievementRef,
    change: Any,
) -> UserAchievementChange:
    """Run `change(metadata) -> (new_metadata_text, conditions_hold)` on the row, atomically."""
    achievement = achievement_id(connection, ref)
    dialect.of(connection).lock_user(connection, user_id)
    row = _find_progress(connection, user_id, achievement)
    metadata, holds = change(load_metadata(row[4]) if row is not None else {})
    locked = row is None or row[3] is None
    return _save_progress(connection, user_id, achievement, row, metadata, unlock=locked and holds)


def _update_sql(also_set: str) -> str:
    return (
        f"UPDATE user_achievements SET metadata = coalesce(:metadata, metadata), {also_set}"
        f"updated_at = {LATER} WHERE id = :id RETURNING {_PROGRESS_COLUMNS}"
    )


# Only an unlock names unlocked_at: naming it costs its index and the unlock trigger's check.
_UPDATE = _update_sql("")
_UPDATE_AND_UNLOCK = _update_sql("unlocked_at = coalesce(unlocked_at, :unlocked_at), ")


def _save_progress(
    connection: sqlite3.Connection,
    user_id: int,
    achievement: int,
    row: Any,
    metadata: str | None,
    unlock: bool,
) -> UserAchievementChange:
    """Create or update a row (metadata None: keep it) and unlock it now if asked to."""
    now = utc_now()
    unlocked_at = now if unlock else None
    if row is None:
        _ensure_user(connection, user_id, now)
        saved = connection.execute(
            "INSERT INTO user_achievements "
            "(user_id, achievement_id, unlocked_at, metadata, created_at, updated_at) "
            f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {_PROGRESS_COLUMNS}",
            (user_id, achievement, unlocked_at, metadata or "{}", now, now),
        ).fetchone()
    else:
        saved = connection.execute(
            _UPDATE_AND_UNLOCK if unlock else _UPDATE,
            {"metadata": metadata, "unlocked_at": unlocked_at, "now": now, "id": row[0]},
        ).fetchone()
    if unlock:
        _append_event(connection, saved)
    return change_from(saved, newly_unlocked=unlock)


def delete_progress(
    connection: sqlite3.Connection, user_id: int, ref: AchievementRef
) -> UserAchievement:
    if isinstance(ref, str):
        found = connection.execute("SELECT id FROM achievements WHERE key = ?", (ref,)).fetchone()
        ref = int(found[0]) if found else 0
    dialect.of(connection).lock_existing_user(connection, user_id)
    row = connection.execute(
        "DELETE FROM user_achievements WHERE user_id = ? AND achievement_id = ? "
        f"RETURNING {_PROGRESS_COLUMNS}",
        (user_id, ref),
    ).fetchone()
    if row is None:
        raise not_found("PROGRESS_NOT_FOUND", f"user {user_id} has no progress on that achievement")
    return progress_from(row)


def delete_user(connection: sqlite3.Connection, user_id: int) -> DeletedUser:
    dialect.of(connection).lock_existing_user(connection, user_id)
    progress = connection.execute(
        "SELECT progress_rows FROM user_stats WHERE user_id = ?", (user_id,)
    ).fetchone()
    deleted = connection.execute("DELETE FROM users WHERE id = ?", (user_id,)).rowcount
    if not deleted:
        raise not_found("USER_NOT_FOUND", f"user {user_id} was never written")
    return DeletedUser(user_id, int(progress[0]) if progress else 0)


# --- idempotency keys --------------------------------------------------------------------


# The usage counters as sums: one row on SQLite, insert-only deltas on PostgreSQL.
_USAGE = (
    "SELECT CAST(coalesce(sum(keys), 0) AS BIGINT), CAST(coalesce(sum(bytes), 0) AS BIGINT), "
    "CAST(coalesce(sum(evicted), 0) AS BIGINT) FROM idempotency_usage"
)
# PostgreSQL inserts a delta instead (sidecar/postgres/connection.py).
COUNT_EVICTED = "UPDATE idempotency_usage SET evicted = evicted + ? WHERE id = 1"
# Keys evicted by one statement at most, when stored answers pass their budget.
EVICT_BITE = 64
# Answers from this size on are stored zlib-compressed (level 1: well under a millisecond for
# the largest); a JSON answer starts with `{` or `[`, a zlib stream with 0x78 (`x`), so a
# stored body tells which it is. A replay gives back the very bytes first sent.
COMPRESS_FROM_BYTES = 4096


def _packed(body: bytes) -> bytes:
    if len(body) < COMPRESS_FROM_BYTES:
        return body
    packed = zlib.compress(body, 1)
    return packed if len(packed) < len(body) else body


def _unpacked(stored: bytes) -> bytes:
    return zlib.decompress(stored) if stored[:1] == b"x" else stored


def claim_key(connection: sqlite3.Connection, key: str) -> None:
    """Hold `key` until the commit: a repeat of a request in flight on another process waits
    here for its commit (PostgreSQL), then finds its answer; SQLite's one writer needs nothing."""
    dialect.of(connection).claim(connection, f"idempotency {key}")


def stored_response(connection: sqlite3.Connection, key: str, expired_before: str) -> Any:
    """(fingerprint, status, body) stored for `key`; None for a new key: one never stored, or
    stored before `expired_before` (past its TTL: deleted now, so that it can be stored again)."""
    row = connection.execute(
        "SELECT fingerprint, status, body, created_at FROM idempotency_keys WHERE key = ?", (key,)
    ).fetchone()
    if row is None:
        return None
    if row[3] < expired_before:
        connection.execute("DELETE FROM idempotency_keys WHERE key = ?", (key,))
        return None
    return row[0], row[1], _unpacked(row[2])


# Stores an answer unless its key is taken (no row back then), in the one statement a new key
# costs. It gives back the stored answers' bytes as they were before it (RETURNING sees the
# tables before the statement's triggers on SQLite, before the statement on PostgreSQL).
_STORE = (
    "INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at) "
    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO NOTHING "
    "RETURNING (SELECT CAST(coalesce(sum(bytes), 0) AS BIGINT) FROM idempotency_usage)"
)
# At least what a stored answer counts in the usage beside its body (schema.sql's estimate: twice
# a key of at most 255 characters, a 32-byte fingerprint, twice a 24-character timestamp and 48
# bytes: 638): below the budget by more than this and the body, the store is within it after.
ROW_BEYOND_BODY_BYTES = 1024


def store_response(
    connection: sqlite3.Connection,
    key: str,
    fingerprint: bytes,
    answer: tuple[int, bytes],
    budget_bytes: int,
    ttl_seconds: int,
) -> bool:
    """Store an answer under `key`, or nothing if the key is taken (False). Then, when the stored
    answers may have passed the budget, purge the oldest others (not this one) until they fit
    again; those purged within their TTL are counted as evicted."""
    body = _packed(answer[1])
    row = connection.execute(_STORE, (key, fingerprint, answer[0], body, utc_now())).fetchone()
    if row is None:
        return False
    if row[0] + len(body) + ROW_BEYOND_BODY_BYTES > budget_bytes:
        _evict(connection, key, budget_bytes, timestamp_before(ttl_seconds))
    return True


def _evict(
    connection: sqlite3.Connection, key: str, budget_bytes: int, expired_before: str
) -> None:
    while True:
        keys, used, _ = connection.execute(_USAGE).fetchone()
        if used <= budget_bytes or keys <= 1:
            return
        # About as many answers of the average size as the excess takes.
        bite = min(EVICT_BITE, max(1, (used - budget_bytes) * keys // used))
        purged = connection.execute(
            "DELETE FROM idempotency_keys WHERE key IN (SELECT key FROM idempotency_keys "
            "WHERE key <> ? ORDER BY created_at LIMIT ?) RETURNING created_at",
            (key, bite),
        ).fetchall()
        early = sum(created_at >= expired_before for (created_at,) in purged)
        connection.execute(COUNT_EVICTED, (early,))


def purge_responses(connection: sqlite3.Connection, older_than: str, limit: int) -> int:
    """Delete up to `limit` stored responses older than the cutoff (small bites: no long lock)."""
    return connection.execute(
        "DELETE FROM idempotency_keys WHERE key IN "
        "(SELECT key FROM idempotency_keys WHERE created_at < ? LIMIT ?)",
        (older_than, limit),
    ).rowcount


# --- reads -------------------------------------------------------------------------------


def get_achievement(readers: Readers, ref: AchievementRef) -> Achievement:
    column = "id" if isinstance(ref, int) else "key"
    row = readers.fetch_one(
        f"SELECT {_ACHIEVEMENT_COLUMNS} FROM achievements WHERE {column} = ?", (ref,)
    )
    if row is None:
        raise not_found("ACHIEVEMENT_NOT_FOUND", f"no achievement {column} {ref}")
    return achievement_from(row)


async def list_achievements(readers: Readers) -> list[Achievement]:
    rows = await readers.fetch_bulk(f"SELECT {_ACHIEVEMENT_COLUMNS} FROM achievements")
    # Sorted here rather than by COLLATE NOCASE, which folds ASCII letters only.
    return sorted(map(achievement_from, rows), key=lambda a: (a.name.casefold(), a.id))


def get_progress(readers: Readers, user_id: int, ref: AchievementRef) -> UserAchievement | None:
    if isinstance(ref, int):
        where = "achievement_id = ?"
    else:
        where = "achievement_id = (SELECT id FROM achievements WHERE key = ?)"
    row = readers.fetch_one(
        f"SELECT {_PROGRESS_COLUMNS} FROM user_achievements WHERE user_id = ? AND {where}",
        (user_id, ref),
    )
    return None if row is None else progress_from(row)


def list_progress(readers: Readers, user_id: int, unlocked_only: bool) -> list[UserAchievement]:
    only = " AND unlocked_at IS NOT NULL" if unlocked_only else ""
    rows = readers.fetch_all(
        f"SELECT {_PROGRESS_COLUMNS} FROM user_achievements WHERE user_id = ?{only} "
        "ORDER BY unlocked_at IS NULL, coalesce(unlocked_at, updated_at) DESC, id DESC",
        (user_id,),
    )
    return [progress_from(row) for row in rows]


async def events_after(readers: Readers, after: int, limit: int) -> list[Event]:
    # The definition's current key; LEFT JOIN: events outlive their achievement (whose id is
    # never reused, so a deleted one's events get null, never another achievement's key).
    rows = await readers.fetch_bulk(
        "SELECT e.id, e.type, e.user_id, e.achievement_id, a.key, e.unlocked_at FROM events e "
        "LEFT JOIN achievements a ON a.id = e.achievement_id "
        "WHERE e.id > ? ORDER BY e.id LIMIT ?",
        (after, limit),
    )
    return [Event(*row) for row in rows]


def last_event_id(readers: Readers) -> int:
    return int(readers.fetch_one("SELECT coalesce(max(id), 0) FROM events")[0])


def watch_appended_events(connection: sqlite3.Connection, appended: Callable[[], None]) -> None:
    """Call `appended()` on the connection's thread for each event this connection inserts
    (on PostgreSQL also now and then, for the events of other sidecars)."""
    dialect.of(connection).watch_appended_events(connection, appended)


async def achievement_stats(readers: Readers) -> list[AchievementStats]:
    rows = await readers.fetch_bulk(
        "SELECT a.id, a.name, CAST(sum(s.unlocked_count) AS BIGINT), "
        "CAST(sum(s.progress_rows - s.unlocked_count) AS BIGINT), "
        "(SELECT CAST(coalesce(sum(users_with_progress), 0) AS BIGINT) FROM totals) "
        "FROM achievements a JOIN achievement_stats s ON s.achievement_id = a.id "
        "GROUP BY a.id, a.name ORDER BY a.id"
    )
    return [
        AchievementStats(row[0], row[1], row[2], row[3], row[2] / row[4] if row[4] else 0.0)
        for row in rows
    ]


def leaderboard(readers: Readers, limit: int, offset: int) -> list[LeaderboardEntry]:
    rows = readers.fetch_all(
        "SELECT user_id, unlocked_count, reached_at FROM user_stats WHERE unlocked_count > 0 "
        "ORDER BY unlocked_count DESC, reached_at, user_id LIMIT ? OFFSET ?",
        (limit, offset),
    )
    return [
        LeaderboardEntry(offset + place, row[0], row[1], row[2])
        for place, row in enumerate(rows, start=1)
    ]


def leaderboard_entry(readers: Readers, user_id: int) -> LeaderboardEntry:
    # Ahead: everyone with a higher count (unlock_histogram); everyone who reached the same count
    # in an earlier month (unlock_months), on an earlier day of the same month (unlock_days) or
    # in an earlier hour of the same day (unlock_hours); and those who reached it earlier in the
    # same hour (an index range count bounded by that hour).
    row = readers.fetch_one(
        "WITH me AS (SELECT unlocked_count AS n, reached_at AS reached, "
        "  coalesce(substr(reached_at, 1, 7), '') AS month, "
        "  coalesce(substr(reached_at, 1, 10), '') AS day, "
        "  coalesce(substr(reached_at, 1, 13), '') AS hour FROM user_stats "
        "  WHERE user_id = :user AND unlocked_count > 0) "
        "SELECT n, reached, CAST("
        "  (SELECT coalesce(sum(users), 0) FROM unlock_histogram WHERE unlocked_count > n) + "
        "  (SELECT coalesce(sum(users), 0) FROM unlock_months "
        "    WHERE unlocked_count = n AND month < me.month) + "
        "  (SELECT coalesce(sum(users), 0) FROM unlock_days "
        "    WHERE unlocked_count = n AND day >= me.month AND day < me.day) + "
        "  (SELECT coalesce(sum(users), 0) FROM unlock_hours "
        "    WHERE unlocked_count = n AND hour >= me.day AND hour < me.hour) + "
        "  (SELECT count(*) FROM user_stats WHERE unlocked_count > 0 AND unlocked_count = n "
        "    AND reached_at >= me.hour AND (reached_at, user_id) < (reached, :user)) AS BIGINT) "
        "FROM me",
        {"user": user_id},
    )
    if row is None:
        raise not_found("USER_NOT_FOUND", f"user {user_id} has no unlocked achievement")
    return LeaderboardEntry(row[2] + 1, user_id, row[0], row[1])


def idempotency_usage(readers: Readers) -> tuple[int, int, int]:
    """Stored idempotent answers: how many, their bytes, and how many were evicted early."""
    keys, size, evicted = readers.fetch_one(_USAGE)
    return int(keys), int(size), int(evicted)


# The database's schema version and its engine's version (PostgreSQL: backend.REWRITES).
HEALTH = "SELECT user_version, sqlite_version() FROM pragma_user_version"


def health(readers: Readers) -> tuple[int, str]:
    schema_version, engine_version = readers.fetch_one(HEALTH)
    return int(schema_version), str(engine_version)


async def table_rows(readers: Readers) -> dict[str, int]:
    """Row counts from the trigger-kept counters: no table scan, also at millions of rows."""
    rows = await readers.fetch_bulk(
        "SELECT (SELECT CAST(coalesce(sum(users), 0) AS BIGINT) FROM totals), "
        "(SELECT count(*) FROM achievements), "
        "(SELECT CAST(coalesce(sum(progress_rows), 0) AS BIGINT) FROM achievement_stats), "
        f"({LAST_EVENT_ID}), "
        "(SELECT count(*) FROM idempotency_keys)"
    )
    names = ("users", "achievements", "user_achievements", "events", "idempotency_keys")
    return dict(zip(names, rows[0], strict=True))
