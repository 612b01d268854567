"""The real service in a subprocess, the way a bot runs it: the main flow, a crash under write
load, a live backup under write load, a clean stop, `check`, and where the file lives."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.realserver import RealServer, free_port, start_server

DEFINITIONS = "/users/achievements/definitions"
PROGRESS = "/users/achievements/progress"


def sidecar(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=env,
    )


def integrity(path: Path) -> tuple[str, list[Any]]:
    with sqlite3.connect(path) as connection:
        return (
            connection.execute("PRAGMA integrity_check").fetchone()[0],
            connection.execute("PRAGMA foreign_key_check").fetchall(),
        )


def progress_rows(path: Path) -> dict[tuple[int, int], str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT user_id, achievement_id, metadata FROM user_achievements")
        return {(user, achievement): metadata for user, achievement, metadata in rows}


class Load:
    """Writers on distinct (user, achievement) pairs, remembering every acknowledged write."""

    def __init__(self, base_url: str, achievements: list[int]) -> None:
        self.base_url = base_url
        self.achievements = achievements
        self.acknowledged: dict[tuple[int, int], dict[str, Any]] = {}
        self.acknowledged_at: dict[tuple[int, int], float] = {}
        self.stop = asyncio.Event()

    async def writer(self, worker: int) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            sequence = 0
            while not self.stop.is_set():
                sequence += 1
                user = worker * 100_000 + sequence
                achievement = self.achievements[sequence % len(self.achievements)]
                metadata = {"worker": worker, "sequence": sequence}
                try:
                    response = await client.post(
                        PROGRESS,
                        json={"userId": user, "achievementId": achievement, "metadata": metadata},
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if response.status_code == 200:
                    self.acknowledged[(user, achievement)] = metadata
                    self.acknowledged_at[(user, achievement)] = time.monotonic()


def create_achievements(base_url: str, count: int) -> list[int]:
    with httpx.Client(base_url=base_url) as client:
        return [client.post(DEFINITIONS, json={"name": f"A{i}"}).json()["id"] for i in range(count)]


def test_main_flow_over_http(server: RealServer) -> None:
    with httpx.Client(base_url=server.base_url) as client:
        created = client.post(DEFINITIONS, json={"name": "Worker I", "description": "100 works"})
        assert created.status_code == 201
        achievement = created.json()["id"]
        body = {"userId": 80351110224678912, "achievementId": achievement}
        upserted = client.post(PROGRESS, json={**body, "metadata": {"current": 99}})
        assert upserted.status_code == 200 and upserted.json()["metadata"] == {"current": 99}
        unlocked = client.put(f"{PROGRESS}/unlock", json=body)
        assert unlocked.json()["newlyUnlocked"] is True
        listed = client.get(f"{PROGRESS}/list", params={"userId": body["userId"]}).json()
        assert [row["achievementId"] for row in listed] == [achievement]
        assert listed[0]["unlockedAt"] == unlocked.json()["unlockedAt"]
        deleted = client.delete(f"/users/{body['userId']}")
        assert deleted.json() == {"userId": body["userId"], "deletedProgress": 1}
        assert client.get("/health").json()["status"] == "ok"


def test_kill_9_under_write_load_loses_no_acknowledged_write(db_path: Path) -> None:
    server = start_server(db_path)
    achievements = create_achievements(server.base_url, 5)
    load = Load(server.base_url, achievements)

    async def run() -> None:
        workers = [asyncio.create_task(load.writer(worker)) for worker in range(16)]
        await asyncio.sleep(1.5)
        server.kill()
        load.stop.set()
        await asyncio.gather(*workers)

    asyncio.run(run())
    server.stop()
    assert len(load.acknowledged) > 100, "the load did not get going"
    assert integrity(db_path) == ("ok", [])
    restarted = start_server(db_path)
    try:
        with httpx.Client(base_url=restarted.base_url) as client:
            for (user, achievement), metadata in load.acknowledged.items():
                params = {"userId": user, "achievementId": achievement}
                assert client.get(PROGRESS, params=params).json()["metadata"] == metadata
    finally:
        restarted.stop()
    assert sidecar("check", "--db", str(db_path)).returncode == 0


def test_backup_under_write_load_is_consistent_and_complete(
    server: RealServer, tmp_path: Path
) -> None:
    achievements = create_achievements(server.base_url, 3)
    load = Load(server.base_url, achievements)
    copy = tmp_path / "backup.db"

    async def run() -> tuple[dict[tuple[int, int], dict[str, Any]], int]:
        workers = [asyncio.create_task(load.writer(worker)) for worker in range(8)]
        await asyncio.sleep(0.8)
        before = dict(load.acknowledged)
        result = await asyncio.to_thread(sidecar, "backup", str(copy), "--db", str(server.db_path))
        await asyncio.sleep(0.3)
        load.stop.set()
        await asyncio.gather(*workers)
        return before, result.returncode

    before, status = asyncio.run(run())
    assert status == 0
    assert len(before) > 50
    assert not Path(f"{copy}-wal").exists()
    assert integrity(copy) == ("ok", [])
    stored = progress_rows(copy)
    for key, metadata in before.items():
        assert json.loads(stored[key]) == metadata


def test_backup_refuses_to_overwrite_without_force(server: RealServer, tmp_path: Path) -> None:
    create_achievements(server.base_url, 1)
    existing = tmp_path / "existing.db"
    existing.write_bytes(b"precious")
    refused = sidecar("backup", str(existing), "--db", str(server.db_path))
    assert refused.returncode != 0
    assert "--force" in refused.stderr
    assert existing.read_bytes() == b"precious"
    forced = sidecar("backup", str(existing), "--db", str(server.db_path), "--force")
    assert forced.returncode == 0
    with sqlite3.connect(existing) as connection:
        assert connection.execute("SELECT count(*) FROM achievements").fetchone() == (1,)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_clean_stop_leaves_one_complete_file(
    db_path: Path, tmp_path: Path, stop_signal: int
) -> None:
    server = start_server(db_path)
    achievements = create_achievements(server.base_url, 2)
    with httpx.Client(base_url=server.base_url) as client:
        for user in range(1, 51):
            body = {
                "userId": user,
                "achievementId": achievements[user % 2],
                "metadata": {"u": user},
            }
            assert client.post(PROGRESS, json=body).status_code == 200
    assert server.terminate(stop_signal) == 0
    server.stop()
    assert not Path(f"{db_path}-wal").exists()
    assert not Path(f"{db_path}-shm").exists()
    copy = tmp_path / "copied.db"
    shutil.copyfile(db_path, copy)
    assert len(progress_rows(copy)) == 50
    assert integrity(copy) == ("ok", [])


def test_check_finds_corruption(db_path: Path, tmp_path: Path) -> None:
    server = start_server(db_path)
    achievements = create_achievements(server.base_url, 1)
    with httpx.Client(base_url=server.base_url) as client:
        for user in range(1, 2001):
            body = {
                "userId": user,
                "achievementId": achievements[0],
                "metadata": {"pad": "x" * 200},
            }
            client.post(PROGRESS, json=body)
    server.terminate()
    server.stop()
    good = sidecar("check", "--db", str(db_path))
    assert good.returncode == 0, good.stdout + good.stderr
    broken = tmp_path / "broken.db"
    data = bytearray(db_path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = os.urandom(8192)
    broken.write_bytes(bytes(data))
    bad = sidecar("check", "--db", str(broken))
    assert bad.returncode != 0


def test_database_location_flag_env_and_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while not (tmp_path / "achievements.db").exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.05)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert (tmp_path / "achievements.db").is_file()

    from_env = tmp_path / "from-env.db"
    result = sidecar("check", env={**env, "SIDECAR_DB": str(from_env)}, cwd=tmp_path)
    assert result.returncode != 0 and "from-env.db" in result.stderr  # not there yet
    server = start_server(tmp_path / "other.db", {"SIDECAR_DB": str(from_env)})
    server.stop()  # --db wins over SIDECAR_DB
    assert (tmp_path / "other.db").exists() and not from_env.exists()
    assert sidecar("check", env={**env, "SIDECAR_DB": str(tmp_path / "other.db")}).returncode == 0
