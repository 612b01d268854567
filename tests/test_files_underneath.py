"""The database file deleted or replaced under the running service (the real server): writes
answer 503 DATABASE_GONE, /health answers 503, one log line says why, nothing is acknowledged
that is not in the file at the path, and stopping leaves the path as the operator left it."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx

from tests.helpers import DEFINITIONS, PROGRESS, assert_problem
from tests.realserver import RealServer


def write_some(client: httpx.Client, achievement: int, users: range) -> None:
    for user in users:
        response = client.post(PROGRESS, json={"userId": user, "achievementId": achievement})
        assert response.status_code == 200, response.text


def assert_gone(client: httpx.Client, achievement: int) -> None:
    writes = [
        client.post(PROGRESS, json={"userId": 99, "achievementId": achievement}),
        client.put(f"{PROGRESS}/unlock", json={"userId": 99, "achievementId": achievement}),
        client.post(DEFINITIONS, json={"name": "After"}),
        client.post(
            PROGRESS,
            json={"userId": 98, "achievementId": achievement},
            headers={"Idempotency-Key": "gone"},
        ),
    ]
    for response in writes:
        assert_problem(response, 503, "DATABASE_GONE")
    assert_problem(client.get("/health"), 503, "DATABASE_GONE")


def test_deleted_database_refuses_writes_and_fails_health(server: RealServer) -> None:
    db_path = server.db_path
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        achievement = client.post(DEFINITIONS, json={"name": "Kept"}).json()["id"]
        write_some(client, achievement, range(1, 11))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_path}{suffix}").unlink()
        assert_gone(client, achievement)
    assert server.terminate(signal.SIGTERM) == 0
    log = server.log()
    assert log.count("deleted or replaced") == 1, log
    assert "Traceback" not in log
    # Nothing was written at the path again: no empty file that `check` could call sound.
    assert not db_path.exists()


def test_database_replaced_by_an_older_copy_refuses_writes(server: RealServer) -> None:
    db_path = server.db_path
    older = db_path.with_name("older.db")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        achievement = client.post(DEFINITIONS, json={"name": "Kept"}).json()["id"]
        write_some(client, achievement, range(1, 6))
        with closing(sqlite3.connect(db_path)) as live, closing(sqlite3.connect(older)) as copy:
            live.backup(copy)  # an online backup, as `sidecar backup` makes one
        write_some(client, achievement, range(6, 11))
        staged = db_path.with_name("staged.db")
        shutil.copyfile(older, staged)
        os.replace(staged, db_path)  # the operator puts the older copy in place
        digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
        assert_gone(client, achievement)
    assert server.terminate(signal.SIGTERM) == 0
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == digest
    assert server.log().count("deleted or replaced") == 1


def test_a_kill_after_the_replacement_leaves_the_replacement_sound(server: RealServer) -> None:
    """Our WAL, still at the path, holds pages of the file that was replaced: they must not be
    replayed into the replacement when it is next opened (that corrupted its indexes)."""
    db_path = server.db_path
    older = db_path.with_name("older.db")
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        achievement = client.post(DEFINITIONS, json={"name": "Kept"}).json()["id"]
        write_some(client, achievement, range(1, 6))
        with closing(sqlite3.connect(db_path)) as live, closing(sqlite3.connect(older)) as copy:
            live.backup(copy)
        # Many more rows after the copy, so that the WAL holds pages the copy lacks.
        for user in range(6, 300):
            client.post(
                PROGRESS,
                json={"userId": user, "achievementId": achievement, "metadata": {"pad": "x" * 500}},
            )
        staged = db_path.with_name("staged.db")
        shutil.copyfile(older, staged)
        os.replace(staged, db_path)
        assert_gone(client, achievement)
    server.kill()
    with closing(sqlite3.connect(db_path)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = connection.execute("SELECT user_id FROM user_achievements ORDER BY 1").fetchall()
    assert rows == [(user,) for user in range(1, 6)]  # the copy's rows, as the operator put it
