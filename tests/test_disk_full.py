"""A full disk, for real: the server runs under RLIMIT_FSIZE (its files may not grow past a limit;
SIGXFSZ ignored, so a write past it fails with EFBIG as on a full disk). Writes must answer 507
STORAGE_FULL as problem+json and apply nothing, reads keep working, every acknowledged write stays,
the file stays sound, and once space returns (the running server's limit raised from outside with
prlimit) writes work again without a restart.

Two limits: a small one that the WAL hits, and a larger one, where the checkpoint into the main
file hits it first and the WAL grows on until it too hits it. SQLite then reports SQLITE_FULL or
an I/O error depending on where the write starts.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.db import CHECKPOINT_EVERY_SECONDS
from tests.faults import LimitedServer, sidecar, start_limited_server
from tests.helpers import DEFINITIONS, PROGRESS, assert_problem

KIB = 1024
MIB = 1024 * KIB
# Sizes of the metadata written while filling: big first, then smaller, until even small fail.
FILL_SIZES = (60 * KIB, 4 * KIB, 16)
# Refusals in a row, at each size, that count as "full".
FULL_STREAK = 3
MAX_FILL_WRITES = 1000
# Long enough for the service's checkpoint thread to have run after the last commit.
CHECKPOINT_PAUSE_SECONDS = 5 * CHECKPOINT_EVERY_SECONDS


def upsert_body(user: int, achievement: int, size: int) -> dict[str, Any]:
    return {
        "userId": user,
        "achievementId": achievement,
        "metadata": {"user": user, "pad": "x" * size, "big": 2**70},
    }


class Filler:
    """Writes until the limit is hit, remembering what was acknowledged and what was refused."""

    def __init__(self, client: httpx.Client, achievement: int) -> None:
        self.client = client
        self.achievement = achievement
        self.acknowledged: dict[int, dict[str, Any]] = {}
        self.refused: dict[int, dict[str, Any]] = {}
        self.details: set[str] = set()
        self.user = 0
        self.touches = 0
        self.description: str | None = None

    def upsert(self, size: int) -> httpx.Response:
        self.user += 1
        body = upsert_body(self.user, self.achievement, size)
        response = self.client.post(
            PROGRESS, json=body, headers={"Idempotency-Key": f"fill-{self.user}"}
        )
        if response.status_code == 200:
            assert response.json()["metadata"] == body["metadata"]
            self.acknowledged[self.user] = body
        else:
            problem = assert_problem(response, 507, "STORAGE_FULL")
            self.details.add(str(problem.get("detail")))
            self.refused[self.user] = body
        return response

    def touch_definition(self) -> httpx.Response:
        """The smallest write there is: one page (the definition's row) and the commit."""
        self.touches += 1
        description = f"touch {self.touches}"
        path = f"{DEFINITIONS}/{self.achievement}"
        response = self.client.put(path, json={"description": description})
        if response.status_code == 200:
            self.description = description
        else:
            problem = assert_problem(response, 507, "STORAGE_FULL")
            self.details.add(str(problem.get("detail")))
        return response

    def fill(self) -> None:
        """Big writes until refused, then smaller ones, down to one page: then nothing fits."""
        for size in FILL_SIZES:
            self._until_refused(partial(self.upsert, size), "the file-size limit was never hit")
        self._until_refused(self.touch_definition, "one-page writes never stopped fitting")

    def _until_refused(self, write: Callable[[], httpx.Response], never: str) -> None:
        """Writes until FULL_STREAK are refused in a row, and one more after a pause: the
        service's checkpoint thread may have folded the WAL in meanwhile, and the WAL then
        starts over in the room it already takes."""
        streak = 0
        while True:
            assert self.user < MAX_FILL_WRITES and self.touches < MAX_FILL_WRITES, never
            streak = 0 if write().status_code == 200 else streak + 1
            if streak == FULL_STREAK:
                time.sleep(CHECKPOINT_PAUSE_SECONDS)
                if write().status_code != 200:
                    return
                streak = 0


def write_requests(achievement: int, user: int) -> list[tuple[str, str, dict[str, Any]]]:
    """One of every kind of write, on an existing user and row where it needs one."""
    pair = {"userId": user, "achievementId": achievement}
    inc = {**pair, "ops": [{"op": "inc", "path": "n", "value": 1}]}
    return [
        ("POST", f"{PROGRESS}/apply", {"json": inc}),
        ("PUT", f"{PROGRESS}/unlock", {"json": pair}),
        ("POST", f"{PROGRESS}/batch", {"json": {"operations": [{"type": "apply", **inc}]}}),
        ("POST", PROGRESS, {"json": {**pair, "metadata": {"small": True}}}),
        ("DELETE", PROGRESS, {"params": pair}),
        ("DELETE", f"/users/{user}", {}),
        ("POST", DEFINITIONS, {"json": {"name": "Created while full"}}),
        ("PUT", f"{DEFINITIONS}/{achievement}", {"json": {"description": "changed"}}),
        ("PUT", f"{DEFINITIONS}/by-key/full", {"json": {"name": "By key"}}),
    ]


def check_reads(client: httpx.Client, filler: Filler) -> None:
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    for user, body in filler.acknowledged.items():
        params = {"userId": user, "achievementId": filler.achievement}
        got = client.get(PROGRESS, params=params)
        assert got.status_code == 200 and got.json()["metadata"] == body["metadata"], user
    for user in filler.refused:
        got = client.get(PROGRESS, params={"userId": user, "achievementId": filler.achievement})
        assert got.status_code == 200 and got.json() is None, user
    definition = client.get(f"{DEFINITIONS}/{filler.achievement}")
    assert definition.status_code == 200
    assert definition.json()["description"] == filler.description
    first = next(iter(filler.acknowledged))
    listed = client.get(f"{PROGRESS}/list", params={"userId": first})
    assert listed.status_code == 200 and len(listed.json()) == 1
    for path in (DEFINITIONS, "/users/achievements/events", "/users/achievements/stats"):
        assert client.get(path).status_code == 200, path
    assert client.get("/metrics").status_code == 200


def dump(db_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read straight from the file (beside the running server)."""
    # Closed here, not left to the garbage collector (a connection sits in a reference cycle):
    # one still open when the server stops keeps the WAL file from being removed.
    with closing(sqlite3.connect(db_path)) as connection:
        tables = [
            name
            for (name,) in connection.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
        ]
        return {
            # Sorted here: a WITHOUT ROWID table (unlock_hours) has no rowid to order by.
            table: sorted(connection.execute(f'SELECT * FROM "{table}"'), key=repr)
            for table in tables
        }


def stored_rows(db_path: Path) -> dict[int, str]:
    with closing(sqlite3.connect(db_path)) as connection:
        return dict(connection.execute("SELECT user_id, metadata FROM user_achievements"))


@pytest.mark.parametrize("limit", [2 * MIB, 6 * MIB], ids=["wal-hits-limit", "checkpoint-hits"])
def test_full_disk_answers_507_keeps_reads_and_recovers_without_restart(
    tmp_path: Path, limit: int
) -> None:
    db_path = tmp_path / "full.db"
    server: LimitedServer = start_limited_server(db_path, limit)
    try:
        assert server.file_size_limit()[0] == limit
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            created = client.post(DEFINITIONS, json={"name": "Filler"})
            assert created.status_code == 201, created.text
            filler = Filler(client, created.json()["id"])
            filler.fill()
            print(
                f"limit {limit}: {len(filler.acknowledged)} acknowledged, "
                f"{len(filler.refused)} refused, {filler.touches} one-page writes, "
                f"details {sorted(filler.details)}, "
                f"db {os.path.getsize(db_path)} wal {os.path.getsize(f'{db_path}-wal')}"
            )
            assert len(filler.acknowledged) >= 10
            assert max(os.path.getsize(db_path), os.path.getsize(f"{db_path}-wal")) <= limit

            # Full: every kind of write is refused with 507, and applies nothing.
            user = next(iter(filler.acknowledged))
            before = dump(db_path)
            # (A definition delete would cascade over every row: all of it or nothing.)
            everything = [
                *write_requests(filler.achievement, user),
                ("DELETE", f"{DEFINITIONS}/{filler.achievement}", {}),
            ]
            for method, path, options in everything:
                response = client.request(method, path, **options)
                problem = assert_problem(response, 507, "STORAGE_FULL")
                filler.details.add(str(problem.get("detail")))
            assert dump(db_path) == before

            check_reads(client, filler)
            assert server.process.poll() is None

            # Space returns, same process: the refused keyed write now applies (it was not
            # stored as an answer), and every kind of write works again.
            server.give_space_back()
            retried_user, retried = next(iter(filler.refused.items()))
            again = client.post(
                PROGRESS, json=retried, headers={"Idempotency-Key": f"fill-{retried_user}"}
            )
            assert again.status_code == 200, again.text
            assert "idempotent-replayed" not in again.headers
            filler.acknowledged[retried_user] = filler.refused.pop(retried_user)
            for _ in range(2 * limit // (60 * KIB)):  # well past the old limit
                assert filler.upsert(60 * KIB).status_code == 200
            for method, path, options in write_requests(filler.achievement, user):
                response = client.request(method, path, **options)
                assert 200 <= response.status_code < 300, (method, path, response.text)
            del filler.acknowledged[user]  # these requests deleted its row and the user
            filler.description = "changed"
            check_reads(client, filler)
            assert max(os.path.getsize(db_path), os.path.getsize(f"{db_path}-wal")) > limit
        pid = server.process.pid
        assert server.terminate(signal.SIGTERM) == 0, server.log()
        assert server.process.pid == pid  # never restarted
    finally:
        server.stop()
    print(f"limit {limit}: SQLite errors surfaced as 507: {sorted(filler.details)}")
    assert not Path(f"{db_path}-wal").exists()
    rows = stored_rows(db_path)
    assert set(rows) == set(filler.acknowledged)
    with closing(sqlite3.connect(db_path)) as connection:
        users = {user for (user,) in connection.execute("SELECT id FROM users")}
        assert users == set(filler.acknowledged)
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    checked = sidecar("check", "--db", str(db_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
