"""The real service in a subprocess, the way a bot runs it: the main flow over HTTP, kill -9
under write load, clean stops, `check`, and where the file is (backups: test_backup_restore)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.realserver import RealServer, free_port, start_server

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = "/users/achievements/definitions"
PROGRESS = "/users/achievements/progress"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# Snowflake-sized ids: every writer and sequence number gets its own user.
USER_BASE = 80_351_110_224_678_912
Pair = tuple[int, int]


# --- helpers --------------------------------------------------------------------------------


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any SIDECAR_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_sidecar(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env if env is not None else clean_env(),
    )


def open_alone(path: Path, directory: Path) -> Path:
    """Copy just this one file into an empty directory: no -wal or -shm can come with it."""
    directory.mkdir()
    alone = directory / "alone.db"
    shutil.copyfile(path, alone)
    assert sorted(p.name for p in directory.iterdir()) == ["alone.db"]
    return alone


def integrity(path: Path) -> tuple[str, list[Any]]:
    connection = sqlite3.connect(path)
    try:
        return (
            connection.execute("PRAGMA integrity_check").fetchone()[0],
            connection.execute("PRAGMA foreign_key_check").fetchall(),
        )
    finally:
        connection.close()


def stored_progress(path: Path) -> dict[Pair, tuple[Any, str | None]]:
    """(user, achievement) -> (decoded metadata, unlocked_at), straight from the file."""
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute(
            "SELECT user_id, achievement_id, metadata, unlocked_at FROM user_achievements"
        ).fetchall()
    finally:
        connection.close()
    return {(user, ach): (json.loads(metadata), unlocked) for user, ach, metadata, unlocked in rows}


def stored_definitions(path: Path) -> dict[int, tuple[str, str | None]]:
    connection = sqlite3.connect(path)
    try:
        rows = connection.execute("SELECT id, name, description FROM achievements").fetchall()
    finally:
        connection.close()
    return {id_: (name, description) for id_, name, description in rows}


def create_achievements(base_url: str, count: int) -> list[int]:
    ids = []
    with httpx.Client(base_url=base_url, timeout=10) as client:
        for number in range(count):
            response = client.post(DEFINITIONS, json={"name": f"Load {number}"})
            assert response.status_code == 201, response.text
            ids.append(response.json()["id"])
    return ids


@dataclass
class Load:
    """Concurrent writers, each on its own (user, achievement) pairs: an upsert with metadata,
    then every other time an unlock of the same pair. Remembers every 2xx answer."""

    base_url: str
    achievements: list[int]
    upserts: dict[Pair, dict[str, Any]] = field(default_factory=dict)
    unlocks: dict[Pair, str] = field(default_factory=dict)
    acknowledged_at: list[float] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    interrupted: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def snapshot(self) -> tuple[dict[Pair, dict[str, Any]], dict[Pair, str]]:
        return dict(self.upserts), dict(self.unlocks)

    async def until(self, upserts: int, unlocks: int, timeout: float = 60.0) -> None:
        """Until this many upserts and unlocks are acknowledged (or something went wrong, or the
        timeout passed): a slow machine gets there later, and what is tested is what happens
        under load, not how fast the load builds up."""
        deadline = time.monotonic() + timeout
        while len(self.upserts) < upserts or len(self.unlocks) < unlocks:
            if self.unexpected or self.interrupted or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.02)

    async def writer(self, worker: int) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=10) as client:
            sequence = 0
            while not self.stop.is_set():
                sequence += 1
                pair = (
                    USER_BASE + worker * 1_000_000 + sequence,
                    self.achievements[(worker + sequence) % len(self.achievements)],
                )
                metadata = {"worker": worker, "sequence": sequence, "tag": f"w{worker}s{sequence}"}
                body = {"userId": pair[0], "achievementId": pair[1]}
                try:
                    response = await client.post(PROGRESS, json={**body, "metadata": metadata})
                    if response.status_code != 200:
                        self.unexpected.append(f"upsert {response.status_code} {response.text}")
                        continue
                    self.upserts[pair] = metadata
                    self.acknowledged_at.append(time.monotonic())
                    if sequence % 2:
                        continue
                    response = await client.put(f"{PROGRESS}/unlock", json=body)
                    answer = response.json() if response.status_code == 200 else None
                    if answer is None or answer["newlyUnlocked"] is not True:
                        self.unexpected.append(f"unlock {response.status_code} {response.text}")
                        continue
                    self.unlocks[pair] = answer["unlockedAt"]
                    self.acknowledged_at.append(time.monotonic())
                except httpx.TransportError:
                    self.interrupted += 1
                    return  # the server is gone


def assert_all_present(
    stored: dict[Pair, tuple[Any, str | None]],
    upserts: dict[Pair, dict[str, Any]],
    unlocks: dict[Pair, str],
) -> None:
    missing = [pair for pair in upserts if pair not in stored]
    assert missing == [], f"{len(missing)} acknowledged upserts lost, e.g. {missing[:3]}"
    wrong = [pair for pair, metadata in upserts.items() if stored[pair][0] != metadata]
    assert wrong == [], f"metadata differs for {wrong[:3]}"
    lost = [pair for pair, at in unlocks.items() if stored[pair][1] != at]
    assert lost == [], f"{len(lost)} acknowledged unlocks lost or changed, e.g. {lost[:3]}"


# --- the main flow ---------------------------------------------------------------------------


def test_main_flow_over_http(server: RealServer, sql: Any) -> None:
    user = 80_351_110_224_678_912
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        created = client.post(DEFINITIONS, json={"name": "Worker I", "description": "100 works"})
        assert created.status_code == 201
        achievement = created.json()
        assert achievement["name"] == "Worker I"
        assert achievement["description"] == "100 works"
        assert TIMESTAMP.match(achievement["createdAt"])
        body = {"userId": user, "achievementId": achievement["id"]}

        upserted = client.post(PROGRESS, json={**body, "metadata": {"current": 99, "of": [1, 2]}})
        assert upserted.status_code == 200
        row = upserted.json()
        assert row["userId"] == user
        assert row["achievementId"] == achievement["id"]
        assert row["metadata"] == {"current": 99, "of": [1, 2]}
        assert row["unlockedAt"] is None

        unlocked = client.put(f"{PROGRESS}/unlock", json=body)
        assert unlocked.status_code == 200
        first = unlocked.json()
        assert first["newlyUnlocked"] is True
        assert TIMESTAMP.match(first["unlockedAt"])
        assert first["metadata"] == {"current": 99, "of": [1, 2]}
        assert first["id"] == row["id"]

        again = client.put(f"{PROGRESS}/unlock", json=body).json()
        assert again["newlyUnlocked"] is False
        assert again["unlockedAt"] == first["unlockedAt"]
        assert again["updatedAt"] == first["updatedAt"]

        listed = client.get(f"{PROGRESS}/list", params={"userId": user})
        assert listed.status_code == 200
        assert listed.json() == [{k: v for k, v in first.items() if k != "newlyUnlocked"}]
        only_unlocked = client.get(
            f"{PROGRESS}/list", params={"userId": user, "unlockedOnly": "true"}
        )
        assert [r["id"] for r in only_unlocked.json()] == [row["id"]]

        deleted = client.delete(f"/users/{user}")
        assert deleted.status_code == 200
        assert deleted.json() == {"userId": user, "deletedProgress": 1}
        assert sql("SELECT count(*) FROM users WHERE id = ?", user) == [(0,)]
        assert sql("SELECT count(*) FROM user_achievements WHERE user_id = ?", user) == [(0,)]

        gone = client.delete(f"/users/{user}")
        assert gone.status_code == 404
        assert gone.headers["content-type"].startswith("application/problem+json")
        assert gone.json()["code"] == "USER_NOT_FOUND"
        assert client.get(f"{PROGRESS}/list", params={"userId": user}).json() == []
        # The definition itself stays.
        assert client.get(f"{DEFINITIONS}/{achievement['id']}").json() == achievement
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"


# --- kill -9 under write load ----------------------------------------------------------------


def test_kill_9_under_write_load_loses_no_acknowledged_write(db_path: Path, tmp_path: Path) -> None:
    server = start_server(db_path)
    try:
        load = Load(server.base_url, create_achievements(server.base_url, 5))

        async def run() -> None:
            workers = [asyncio.create_task(load.writer(worker)) for worker in range(12)]
            await load.until(upserts=250, unlocks=60)
            server.kill()  # blocks the loop: every writer is waiting on a request right now
            load.stop.set()
            await asyncio.gather(*workers)

        asyncio.run(run())
    finally:
        server.stop()
    assert load.unexpected == []
    assert len(load.upserts) > 200 and len(load.unlocks) > 50, "the load did not get going"
    assert load.interrupted > 0, "the kill did not land while writes were in flight"

    # The crashed file as it is (main file + WAL), examined on a copy.
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    for suffix in ("", "-wal"):
        if Path(f"{db_path}{suffix}").exists():
            shutil.copyfile(f"{db_path}{suffix}", crashed / f"copy.db{suffix}")
    assert integrity(crashed / "copy.db") == ("ok", [])

    # Restart on the same file: the service recovers it itself and serves every write.
    restarted = start_server(db_path)
    try:

        async def fetch_all() -> dict[Pair, Any]:
            found: dict[Pair, Any] = {}
            pairs = list(load.upserts)
            async with httpx.AsyncClient(base_url=restarted.base_url, timeout=10) as client:

                async def fetch(chunk: list[Pair]) -> None:
                    for user, achievement in chunk:
                        params = {"userId": user, "achievementId": achievement}
                        response = await client.get(PROGRESS, params=params)
                        assert response.status_code == 200
                        found[(user, achievement)] = response.json()

                await asyncio.gather(*(fetch(pairs[i::8]) for i in range(8)))
            return found

        answers = asyncio.run(fetch_all())
        missing = [pair for pair, row in answers.items() if row is None]
        assert missing == [], f"{len(missing)} acknowledged writes lost, e.g. {missing[:3]}"
        fetched = {pair: (row["metadata"], row["unlockedAt"]) for pair, row in answers.items()}
        assert_all_present(fetched, load.upserts, load.unlocks)
        assert restarted.terminate() == 0
    finally:
        restarted.stop()
    assert_all_present(stored_progress(db_path), load.upserts, load.unlocks)
    assert integrity(db_path) == ("ok", [])
    checked = run_sidecar("check", "--db", str(db_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- clean stops -----------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", ["SIGTERM", "SIGINT"])
def test_clean_stop_leaves_one_complete_file(
    db_path: Path, tmp_path: Path, stop_signal: str
) -> None:
    server = start_server(db_path)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            first = client.post(DEFINITIONS, json={"name": "Chatter", "description": "talk"})
            second = client.post(DEFINITIONS, json={"name": "Helper"})
            assert first.status_code == second.status_code == 201
            ids = [first.json()["id"], second.json()["id"]]
            renamed = client.put(f"{DEFINITIONS}/{ids[1]}", json={"name": "Great helper"})
            assert renamed.status_code == 200
            expected: dict[Pair, tuple[Any, str | None]] = {}
            for user in range(1, 41):
                pair = (USER_BASE + user, ids[user % 2])
                metadata = {"user": user, "words": ["a", "b"] * (user % 3), "pi": 3.14159}
                body = {"userId": pair[0], "achievementId": pair[1], "metadata": metadata}
                assert client.post(PROGRESS, json=body).status_code == 200
                unlocked_at = None
                if user % 4 == 0:
                    response = client.put(
                        f"{PROGRESS}/unlock", json={"userId": pair[0], "achievementId": pair[1]}
                    )
                    assert response.status_code == 200
                    unlocked_at = response.json()["unlockedAt"]
                expected[pair] = (metadata, unlocked_at)
            removed = (USER_BASE + 5, ids[1])
            params = {"userId": removed[0], "achievementId": removed[1]}
            assert client.delete(PROGRESS, params=params).status_code == 200
            del expected[removed]
        assert Path(f"{db_path}-wal").exists(), "a running service keeps a WAL"
        assert server.terminate(getattr(signal, stop_signal)) == 0
    finally:
        server.stop()
    assert not Path(f"{db_path}-wal").exists()

    alone = open_alone(db_path, tmp_path / "copy")
    assert integrity(alone) == ("ok", [])
    assert stored_progress(alone) == expected
    assert stored_definitions(alone) == {
        ids[0]: ("Chatter", "talk"),
        ids[1]: ("Great helper", None),
    }


# --- check -----------------------------------------------------------------------------------


def test_check_passes_a_sound_file_and_fails_a_damaged_one(db_path: Path, tmp_path: Path) -> None:
    server = start_server(db_path)
    try:
        (achievement,) = create_achievements(server.base_url, 1)

        # 3,000 rows in three batches of 1,000 upserts.
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for first in range(1, 3001, 1000):
                operations = [
                    {
                        "type": "upsert",
                        "userId": user,
                        "achievementId": achievement,
                        "metadata": {"user": user, "pad": "x" * 150},
                    }
                    for user in range(first, first + 1000)
                ]
                response = client.post(f"{PROGRESS}/batch", json={"operations": operations})
                assert response.status_code == 200, response.text
        assert server.terminate() == 0
    finally:
        server.stop()
    good = run_sidecar("check", "--db", str(db_path))
    assert good.returncode == 0, good.stdout + good.stderr

    data = bytearray(db_path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = len(data) // page_size
    assert pages > 20
    connection = sqlite3.connect(db_path)
    try:  # no free pages: the page overwritten below is in use
        assert connection.execute("PRAGMA freelist_count").fetchone() == (0,)
    finally:
        connection.close()

    # Garbage over the first half of a page in the middle of the file (its b-tree header included).
    start = (pages // 2) * page_size
    data[start : start + page_size // 2] = random.Random(20261124).randbytes(page_size // 2)
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(bytes(data))
    with contextlib.suppress(sqlite3.DatabaseError):  # the damage is real, as SQLite sees it
        assert integrity(damaged)[0] != "ok"
    bad = run_sidecar("check", "--db", str(damaged))
    assert bad.returncode != 0, bad.stdout + bad.stderr

    # A sound b-tree with a dangling reference is a problem too (foreign_key_check).
    orphaned = tmp_path / "orphaned.db"
    shutil.copyfile(db_path, orphaned)
    connection = sqlite3.connect(orphaned)
    try:
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute(
            "INSERT INTO user_achievements (user_id, achievement_id, metadata, created_at,"
            " updated_at) VALUES (1, 999999, '{}', '2026-01-01T00:00:00.000Z',"
            " '2026-01-01T00:00:00.000Z')"
        )
        connection.commit()
    finally:
        connection.close()
    assert integrity(orphaned)[0] == "ok"
    orphan = run_sidecar("check", "--db", str(orphaned))
    assert orphan.returncode != 0, orphan.stdout + orphan.stderr


# --- where the database is -------------------------------------------------------------------


def serve_without_db_flag(cwd: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    """`python -m sidecar serve --port P` (no --db), healthy; returns the process and its URL."""
    port = free_port()
    log = (cwd.parent / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    base_url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        assert process.poll() is None, f"serve exited with {process.returncode}"
        try:
            if httpx.get(f"{base_url}/health", timeout=1).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError("serve did not become healthy")
        time.sleep(0.05)


def write_and_stop(process: subprocess.Popen[bytes], base_url: str, name: str) -> None:
    try:
        response = httpx.post(f"{base_url}{DEFINITIONS}", json={"name": name}, timeout=10)
        assert response.status_code == 201
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0


def test_database_file_from_flag_env_or_default(tmp_path: Path) -> None:
    # Default: ./achievements.db in the working directory.
    home = tmp_path / "home"
    home.mkdir()
    process, url = serve_without_db_flag(home, clean_env())
    assert (home / "achievements.db").is_file()
    write_and_stop(process, url, "in the default file")
    assert [n for n, _ in stored_definitions(home / "achievements.db").values()] == [
        "in the default file"
    ]

    # SIDECAR_DB when there is no --db.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    from_env = tmp_path / "from-env.db"
    process, url = serve_without_db_flag(elsewhere, clean_env(SIDECAR_DB=str(from_env)))
    write_and_stop(process, url, "in the env file")
    assert [n for n, _ in stored_definitions(from_env).values()] == ["in the env file"]
    assert not (elsewhere / "achievements.db").exists()

    # --db wins over SIDECAR_DB.
    flagged = tmp_path / "flagged.db"
    ignored = tmp_path / "ignored.db"
    server = start_server(flagged, {"SIDECAR_DB": str(ignored)})
    try:
        create_achievements(server.base_url, 1)
    finally:
        server.stop()
    assert [n for n, _ in stored_definitions(flagged).values()] == ["Load 0"]
    assert not ignored.exists()

    # The other commands find the file the same way.
    assert run_sidecar("check", cwd=home, env=clean_env()).returncode == 0
    assert (
        run_sidecar("check", cwd=elsewhere, env=clean_env(SIDECAR_DB=str(from_env))).returncode == 0
    )
    missing = run_sidecar("check", cwd=elsewhere, env=clean_env())
    assert missing.returncode != 0
    assert not (elsewhere / "achievements.db").exists()
