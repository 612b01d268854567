"""A file written by the previous schema (version 1, the seed) is brought to the current one in
one transaction, keeping every row, and ends up with the same tables as a fresh file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from sidecar import backup, db
from tests.helpers import DEFINITIONS, create_definition

V1_SCHEMA = Path(__file__).parent / "data" / "schema_v1.sql"
T0 = "2026-01-01T00:00:00.000Z"


def write_v1_file(path: Path) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript(V1_SCHEMA.read_text())
        connection.execute("PRAGMA foreign_keys = ON")
        connection.executemany(
            "INSERT INTO users (id, created_at) VALUES (?, ?)",
            [(user, T0) for user in (1, 2, 3, 2**63 - 1)],
        )
        connection.executemany(
            "INSERT INTO achievements (id, name, description, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?)",
            [(1, "Worker I", "100 works", T0, T0), (2, "Streak", None, T0, T0)],
        )
        connection.executemany(
            "INSERT INTO user_achievements "
            "(user_id, achievement_id, unlocked_at, metadata, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (1, 1, "2026-01-02T00:00:00.000Z", '{"current":100}', T0, T0),
                (1, 2, None, '{"current":3,"best":5}', T0, T0),
                (2, 1, "2026-01-03T00:00:00.000Z", "{}", T0, T0),
                (2**63 - 1, 2, None, '{"big":123456789012345678901234567890}', T0, T0),
            ],
        )


def structure(path: Path) -> dict[str, object]:
    """Columns, indexes and triggers of every table: what a migrated file must share."""
    with sqlite3.connect(path) as connection:
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name"
            )
        ]
        shape: dict[str, object] = {
            table: (
                connection.execute(f"PRAGMA table_info({table})").fetchall(),
                sorted(row[1:3] for row in connection.execute(f"PRAGMA index_list({table})")),
            )
            for table in tables
        }
        # With their SQL: an upgrade re-creates the triggers from schema.sql, so they are equal.
        shape["triggers"] = connection.execute(
            "SELECT name, tbl_name, sql FROM sqlite_schema WHERE type = 'trigger' ORDER BY name"
        ).fetchall()
        shape["version"] = connection.execute("PRAGMA user_version").fetchone()[0]
    return shape


def test_version_1_file_is_migrated_keeping_every_row(tmp_path: Path) -> None:
    old = tmp_path / "v1.db"
    write_v1_file(old)
    with sqlite3.connect(old) as connection:
        before = connection.execute(
            "SELECT id, user_id, achievement_id, unlocked_at, metadata, created_at, updated_at "
            "FROM user_achievements ORDER BY id"
        ).fetchall()

    db.prepare(str(old))

    with sqlite3.connect(old) as connection:
        after = connection.execute(
            "SELECT id, user_id, achievement_id, unlocked_at, metadata, created_at, updated_at "
            "FROM user_achievements ORDER BY id"
        ).fetchall()
        achievements = connection.execute(
            "SELECT id, name, description, key, metadata FROM achievements ORDER BY id"
        ).fetchall()
        user_stats = connection.execute(
            "SELECT user_id, progress_rows, unlocked_count, reached_at FROM user_stats "
            "ORDER BY user_id"
        ).fetchall()
        achievement_stats = connection.execute(
            "SELECT achievement_id, progress_rows, unlocked_count FROM achievement_stats"
        ).fetchall()
        totals = connection.execute("SELECT users, users_with_progress FROM totals").fetchall()
        histogram = connection.execute(
            "SELECT unlocked_count, users FROM unlock_histogram ORDER BY 1"
        ).fetchall()
        hours = connection.execute("SELECT * FROM unlock_hours ORDER BY 1, 2").fetchall()
        days = connection.execute("SELECT * FROM unlock_days ORDER BY 1, 2").fetchall()
        months = connection.execute("SELECT * FROM unlock_months ORDER BY 1, 2").fetchall()
        events = connection.execute("SELECT count(*) FROM events").fetchone()[0]
    assert after == before
    assert achievements == [
        (1, "Worker I", "100 works", None, "{}"),
        (2, "Streak", None, None, "{}"),
    ]
    assert user_stats == [
        (1, 2, 1, "2026-01-02T00:00:00.000Z"),
        (2, 1, 1, "2026-01-03T00:00:00.000Z"),
        (3, 0, 0, None),
        (2**63 - 1, 1, 0, None),
    ]
    assert sorted(achievement_stats) == [(1, 2, 2), (2, 2, 0)]
    assert totals == [(4, 3)]
    assert histogram == [(1, 2)]
    assert hours == [(1, "2026-01-02T00", 1), (1, "2026-01-03T00", 1)]
    assert days == [(1, "2026-01-02", 1), (1, "2026-01-03", 1)]
    assert months == [(1, "2026-01", 2)]
    assert events == 0
    assert backup.check(str(old)) == []


def test_migrated_file_has_the_structure_of_a_fresh_one(tmp_path: Path) -> None:
    old, fresh = tmp_path / "v1.db", tmp_path / "fresh.db"
    write_v1_file(old)
    db.prepare(str(old))
    db.prepare(str(fresh))
    assert structure(old) == structure(fresh)
    assert structure(fresh)["version"] == db.SCHEMA_VERSION


def test_counters_keep_working_after_migration(tmp_path: Path) -> None:
    old = tmp_path / "v1.db"
    write_v1_file(old)
    db.prepare(str(old))
    with sqlite3.connect(old) as connection:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("DELETE FROM users WHERE id = 1")
        stats = connection.execute(
            "SELECT achievement_id, progress_rows, unlocked_count FROM achievement_stats "
            "ORDER BY achievement_id"
        ).fetchall()
        totals = connection.execute("SELECT users, users_with_progress FROM totals").fetchone()
        months = connection.execute("SELECT * FROM unlock_months").fetchall()
    assert stats == [(1, 1, 1), (2, 1, 0)]
    assert months == [(1, "2026-01", 1)]
    assert totals == (3, 2)


def test_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "v1.db"
    write_v1_file(old)
    broken = [(2, "ALTER TABLE achievements ADD COLUMN key TEXT; SELECT no_such_function();")]
    monkeypatch.setattr(db, "migrations_after", lambda version: broken)
    with pytest.raises(db.DatabaseError):
        db.prepare(str(old))
    with sqlite3.connect(old) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(achievements)")]
        version = connection.execute("PRAGMA user_version").fetchone()[0]
    assert "key" not in columns
    assert version == 1


V4_SCHEMA = Path(__file__).parent / "data" / "schema_v4.sql"


def write_v4_file(path: Path) -> None:
    """A version-4 file where definition 3 was deleted after its unlock reached the feed."""
    with sqlite3.connect(path) as connection:
        connection.executescript(V4_SCHEMA.read_text())
        connection.execute("PRAGMA user_version = 4")
        connection.execute("PRAGMA foreign_keys = ON")
        connection.executemany(
            "INSERT INTO achievements (id, name, created_at, updated_at, key) "
            "VALUES (?, ?, ?, ?, ?)",
            [(1, "One", T0, T0, "one"), (2, "Two", T0, T0, None), (3, "Three", T0, T0, None)],
        )
        connection.execute("INSERT INTO users (id, created_at) VALUES (1, ?)", (T0,))
        connection.executemany(
            "INSERT INTO user_achievements "
            "(user_id, achievement_id, unlocked_at, metadata, created_at, updated_at) "
            "VALUES (1, ?, ?, '{}', ?, ?)",
            [(1, T0, T0, T0), (3, T0, T0, T0)],
        )
        connection.executemany(
            "INSERT INTO events (type, user_id, achievement_id, unlocked_at) "
            "VALUES ('achievement.unlocked', 1, ?, ?)",
            [(1, T0), (3, T0)],
        )
        connection.execute("DELETE FROM achievements WHERE id = 3")


def new_definition_id(path: Path) -> int:
    """Delete the newest definition, create one: the id the new one gets."""
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("DELETE FROM achievements WHERE id = (SELECT max(id) FROM achievements)")
        return int(
            connection.execute(
                "INSERT INTO achievements (name, created_at, updated_at) "
                "VALUES ('New', ?, ?) RETURNING id",
                (T0, T0),
            ).fetchone()[0]
        )


def test_a_fresh_file_never_reuses_an_achievement_id(tmp_path: Path) -> None:
    fresh = tmp_path / "fresh.db"
    db.prepare(str(fresh))
    with sqlite3.connect(fresh) as connection:
        connection.execute(
            "INSERT INTO achievements (name, created_at, updated_at) VALUES ('A', ?, ?)", (T0, T0)
        )
    assert new_definition_id(fresh) == 2


def test_a_version_4_file_is_migrated_and_never_reuses_ids(tmp_path: Path) -> None:
    old, fresh = tmp_path / "v4.db", tmp_path / "fresh.db"
    write_v4_file(old)
    db.prepare(str(old))
    db.prepare(str(fresh))
    assert structure(old) == structure(fresh)
    with sqlite3.connect(old) as connection:
        kept = connection.execute("SELECT id, key FROM achievements ORDER BY id").fetchall()
        progress = connection.execute("SELECT user_id, achievement_id FROM user_achievements")
        assert progress.fetchall() == [(1, 1)]
        stats = connection.execute("SELECT * FROM achievement_stats ORDER BY 1").fetchall()
    assert kept == [(1, "one"), (2, None)]
    assert stats == [(1, 1, 1), (2, 0, 0)]
    # Not 2 (the deleted one's id) nor 3 (deleted before the upgrade, still named by an event).
    assert new_definition_id(old) == 4
    assert backup.check(str(old)) == []


def test_a_version_1_file_never_reuses_ids_after_migration(tmp_path: Path) -> None:
    old = tmp_path / "v1.db"
    write_v1_file(old)
    db.prepare(str(old))
    assert new_definition_id(old) == 3


def test_an_upgrade_drops_every_trigger_of_the_old_file(tmp_path: Path) -> None:
    old, fresh = tmp_path / "v1.db", tmp_path / "fresh.db"
    write_v1_file(old)
    with sqlite3.connect(old) as connection:
        # Triggers today's schema.sql does not name: an old release's, or an operator's.
        connection.executescript(
            "CREATE TABLE audit (n INTEGER);"
            "CREATE TRIGGER retired_counter AFTER INSERT ON users BEGIN "
            "  INSERT INTO audit VALUES ((SELECT count(*) FROM achievements)); END;"
            "CREATE TRIGGER retired_on_achievements AFTER UPDATE ON achievements BEGIN "
            "  INSERT INTO audit VALUES (new.id); END;"
            'CREATE TRIGGER "retired ""quoted"" name" AFTER DELETE ON users BEGIN '
            "  INSERT INTO audit VALUES (old.id); END;"
        )
    db.prepare(str(old))
    db.prepare(str(fresh))
    triggers = structure(old)["triggers"]
    assert triggers == structure(fresh)["triggers"]
    assert not [t for t in triggers if str(t[0]).startswith("retired")]  # type: ignore[index]


async def test_a_deleted_definitions_id_is_never_given_again_over_http(make_client: Any) -> None:
    async with make_client() as client:
        first = await create_definition(client, "First")
        assert first["id"] == 1
        assert (await client.delete(f"{DEFINITIONS}/1")).status_code == 200
        assert (await create_definition(client, "Second"))["id"] == 2
