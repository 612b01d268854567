"""`sidecar backup`, `restore` and the read-only commands, through the real command line beside
a real server: refusals are one line and a non-zero exit and leave the live file whole (a write
acknowledged after them survives a restart); nothing the command did not create is deleted;
every file the service or a backup creates is 0600."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar import db
from tests.clirun import refusal, run
from tests.realserver import RealServer, start_server
from tests.test_migrations import write_v1_file
from tests.test_real_server import (
    Load,
    assert_all_present,
    clean_env,
    create_achievements,
    integrity,
    open_alone,
    run_sidecar,
    stored_definitions,
    stored_progress,
)

PROGRESS = "/users/achievements/progress"
DEFINITIONS = "/users/achievements/definitions"


def write(server: RealServer, user: int, value: int) -> int:
    """One acknowledged upsert on a fresh definition; returns the definition's id."""
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        created = client.post(DEFINITIONS, json={"name": f"A{user}"})
        assert created.status_code == 201, created.text
        achievement = int(created.json()["id"])
        body = {"userId": user, "achievementId": achievement, "metadata": {"v": value}}
        assert client.post(PROGRESS, json=body).status_code == 200
    return achievement


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".log"))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- backup under write load ----------------------------------------------------------------


def test_backup_under_write_load_is_consistent_and_complete(
    server: RealServer, tmp_path: Path
) -> None:
    load = Load(server.base_url, create_achievements(server.base_url, 3))
    out = tmp_path / "backup.db"

    async def run() -> tuple[Any, float, float, int, str]:
        workers = [asyncio.create_task(load.writer(worker)) for worker in range(8)]
        await load.until(upserts=60, unlocks=15)
        before = load.snapshot()  # everything acknowledged before the backup began
        began = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "sidecar", "backup", str(out), "--db", str(server.db_path)),
            env=clean_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        ended = time.monotonic()
        await asyncio.sleep(0.3)
        load.stop.set()
        await asyncio.gather(*workers)
        status = process.returncode
        assert status is not None
        return before, began, ended, status, (stdout + stderr).decode(errors="replace")

    (upserts, unlocks), began, ended, status, output = asyncio.run(run())
    assert status == 0, output
    assert load.unexpected == [] and load.interrupted == 0
    assert len(upserts) > 50 and len(unlocks) > 10, "the load did not get going"
    assert any(began < at < ended for at in load.acknowledged_at), "no write while backing up"

    assert not Path(f"{out}-wal").exists()
    alone = open_alone(out, tmp_path / "alone")
    assert integrity(alone) == ("ok", [])
    assert_all_present(stored_progress(alone), upserts, unlocks)
    assert len(stored_definitions(alone)) == 3

    # An existing OUT is refused and left as it is; --force replaces it with a newer copy.
    kept = out.read_bytes()
    refused = run_sidecar("backup", str(out), "--db", str(server.db_path))
    assert refused.returncode != 0
    assert out.read_bytes() == kept
    forced = run_sidecar("backup", str(out), "--db", str(server.db_path), "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    again = open_alone(out, tmp_path / "again")
    assert integrity(again) == ("ok", [])
    # The writers have stopped, so the new copy holds every acknowledged write.
    assert_all_present(stored_progress(again), load.upserts, load.unlocks)


# --- backup refusals --------------------------------------------------------------------------


def test_backup_refuses_the_live_file_under_any_name_and_the_data_survives(
    tmp_path: Path,
) -> None:
    live = tmp_path / "live" / "achievements.db"
    live.parent.mkdir()
    server = start_server(live)
    try:
        first = write(server, 1, 1)
        other = tmp_path / "hard-link.db"
        os.link(live, other)
        symlink = tmp_path / "symlink.db"
        symlink.symlink_to(live)
        wal_link = tmp_path / "wal-link"
        os.link(f"{live}-wal", wal_link)
        for out in [live, other, symlink, Path(f"{live}-wal"), Path(f"{live}-shm"), wal_link]:
            for force in ([], ["--force"]):
                result = run("backup", str(out), *force, "--db", str(live))
                refusal(result, str(out))
        # Relative and dotted spellings of the same file.
        dotted = f"{live.parent}/./../live/achievements.db"
        refusal(run("backup", dotted, "--force", "--db", str(live)))
        refusal(run("backup", "achievements.db", "--force", "--db", str(live), cwd=live.parent))
        second = write(server, 2, 2)  # acknowledged after the refusals
        assert server.terminate() == 0
    finally:
        server.stop()
    progress = stored_progress(live)
    assert progress == {(1, first): ({"v": 1}, None), (2, second): ({"v": 2}, None)}
    assert integrity(live) == ("ok", [])


@pytest.mark.parametrize("kind", ["char-device", "directory", "fifo"])
def test_backup_refuses_what_is_not_a_regular_file(
    server: RealServer, tmp_path: Path, kind: str
) -> None:
    write(server, 1, 1)
    if kind == "char-device":
        # A /dev/null of the test's own: a failing run must not replace the system's.
        if os.geteuid() != 0:
            pytest.skip("making a character device needs root")
        out = tmp_path / "null"
        os.mknod(out, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    elif kind == "directory":
        out = tmp_path / "a-directory"
        out.mkdir()
    else:
        out = tmp_path / "a-fifo"
        os.mkfifo(out)
    for force in ([], ["--force"]):
        refusal(run("backup", str(out), *force, "--db", str(server.db_path)), str(out))
    assert out.is_char_device() if kind == "char-device" else True
    assert out.is_dir() if kind == "directory" else True
    assert out.is_fifo() if kind == "fifo" else True


def test_backup_refuses_a_missing_directory(server: RealServer, tmp_path: Path) -> None:
    write(server, 1, 1)
    out = tmp_path / "backups" / "achievements-2026-12-06.db"
    refusal(run("backup", str(out), "--db", str(server.db_path)), str(out.parent))
    assert not out.parent.exists()


def test_backup_refuses_a_missing_database(tmp_path: Path) -> None:
    out = tmp_path / "copy.db"
    refusal(run("backup", str(out), "--db", str(tmp_path / "typo.db")), "typo.db")
    assert names(tmp_path) == []


def test_backup_deletes_nothing_it_did_not_create_and_is_0600(
    server: RealServer, tmp_path: Path
) -> None:
    achievement = write(server, 1, 1)
    out = tmp_path / "copy.db"
    partial = tmp_path / "copy.db.partial"
    partial.write_bytes(b"somebody's file")
    before = set(names(tmp_path))
    result = run("backup", str(out), "--db", str(server.db_path))
    assert result.returncode == 0, result.stderr
    assert partial.read_bytes() == b"somebody's file"
    assert set(names(tmp_path)) == before | {"copy.db"}
    assert mode(out) == 0o600
    alone = open_alone(out, tmp_path / "alone")
    assert stored_progress(alone) == {(1, achievement): ({"v": 1}, None)}
    # An existing OUT is refused and left as it is; --force replaces a regular file, and the
    # copy is 0600 whatever the old file was.
    out.write_bytes(b"not a backup, somebody's file")
    out.chmod(0o644)
    refusal(run("backup", str(out), "--db", str(server.db_path)), "--force")
    assert out.read_bytes() == b"not a backup, somebody's file"
    assert set(names(tmp_path)) == before | {"copy.db", "alone"}
    assert run("backup", str(out), "--force", "--db", str(server.db_path)).returncode == 0
    assert mode(out) == 0o600
    assert integrity(out) == ("ok", [])


def test_the_database_and_its_wal_and_shm_are_created_0600(
    server: RealServer, tmp_path: Path
) -> None:
    write(server, 1, 1)
    for path in [server.db_path, Path(f"{server.db_path}-wal"), Path(f"{server.db_path}-shm")]:
        assert mode(path) == 0o600, path


# --- read-only commands ------------------------------------------------------------------------


def test_read_only_commands_create_nothing_and_refuse_a_missing_file(tmp_path: Path) -> None:
    typo = tmp_path / "typo.db"
    refusal(run("check", "--db", str(typo)), str(typo))
    refusal(run("definitions", "export", "--db", str(typo)), str(typo))
    assert names(tmp_path) == []
    empty = tmp_path / "empty.db"
    empty.touch()
    refusal(run("check", "--db", str(empty)), str(empty))
    assert names(tmp_path) == ["empty.db"]


def test_read_only_commands_leave_no_wal_or_shm(tmp_path: Path) -> None:
    database = tmp_path / "achievements.db"
    db.prepare(str(database))
    database.chmod(0o600)
    assert names(tmp_path) == ["achievements.db"]
    for command in [["check"], ["definitions", "export"]]:
        result = run(*command, "--db", str(database))
        assert result.returncode == 0, result.stderr
        assert names(tmp_path) == ["achievements.db"], command


def test_read_only_commands_read_a_live_database(server: RealServer) -> None:
    write(server, 1, 1)
    checked = run("check", "--db", str(server.db_path))
    assert checked.returncode == 0, checked.stderr
    exported = run("definitions", "export", "--db", str(server.db_path))
    assert exported.returncode == 0, exported.stderr
    assert '"achievements": []' in exported.stdout


# --- restore ---------------------------------------------------------------------------------


def make_backup(server: RealServer, out: Path) -> None:
    result = run("backup", str(out), "--db", str(server.db_path))
    assert result.returncode == 0, result.stderr


def test_restore_refuses_while_a_service_holds_the_database(tmp_path: Path) -> None:
    live = tmp_path / "achievements.db"
    server = start_server(live)
    try:
        first = write(server, 1, 1)
        saved = tmp_path / "saved.db"
        make_backup(server, saved)
        for force in ([], ["--force"]):
            refusal(run("restore", str(saved), *force, "--db", str(live)), "running")
        second = write(server, 2, 2)
        assert server.terminate() == 0
    finally:
        server.stop()
    assert stored_progress(live) == {
        (1, first): ({"v": 1}, None),
        (2, second): ({"v": 2}, None),
    }
    assert not Path(f"{live}.before-restore").exists()


def test_restore_puts_the_backup_in_place_and_keeps_the_old_file(tmp_path: Path) -> None:
    live = tmp_path / "achievements.db"
    server = start_server(live)
    try:
        first = write(server, 1, 1)
        saved = tmp_path / "saved.db"
        make_backup(server, saved)
        second = write(server, 2, 2)
    finally:
        server.kill()  # a crash: the newest writes are in the -wal only
        server.stop()
    assert Path(f"{live}-wal").exists()
    result = run("restore", str(saved), "--db", str(live))
    assert result.returncode == 0, result.stderr
    assert names(tmp_path) == ["achievements.db", "achievements.db.before-restore", "saved.db"]
    assert mode(live) == 0o600
    assert stored_progress(live) == {(1, first): ({"v": 1}, None)}
    # The replaced file is complete, its WAL folded in.
    before = open_alone(Path(f"{live}.before-restore"), tmp_path / "before")
    assert stored_progress(before) == {
        (1, first): ({"v": 1}, None),
        (2, second): ({"v": 2}, None),
    }
    # A second restore keeps the first .before-restore unless --force.
    refusal(run("restore", str(saved), "--db", str(live)), "before-restore")
    assert run("restore", str(saved), "--force", "--db", str(live)).returncode == 0
    # The service starts on the restored file and takes writes.
    restarted = start_server(live)
    try:
        third = write(restarted, 3, 3)
        assert restarted.terminate() == 0
    finally:
        restarted.stop()
    assert stored_progress(live) == {(1, first): ({"v": 1}, None), (3, third): ({"v": 3}, None)}


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page * 2 : page * 2 + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))


def orphan(path: Path) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(
            "INSERT INTO user_achievements (user_id, achievement_id, metadata, created_at,"
            " updated_at) VALUES (1, 999999, '{}', '2026-01-01T00:00:00.000Z',"
            " '2026-01-01T00:00:00.000Z')"
        )
        connection.commit()


def newer(path: Path) -> None:
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (corrupt, []),
        (orphan, ["foreign key"]),
        (newer, ["schema version"]),
        (lambda p: p.write_bytes(b"not sqlite at all" * 100), []),
        (lambda p: p.write_bytes(b""), ["empty"]),
    ],
)
def test_restore_refuses_a_bad_backup_and_changes_nothing(
    tmp_path: Path, spoil: object, words: list[str]
) -> None:
    live = tmp_path / "achievements.db"
    server = start_server(live)
    try:
        first = write(server, 1, 1)
        saved = tmp_path / "saved.db"
        make_backup(server, saved)
        assert server.terminate() == 0
    finally:
        server.stop()
    spoil(saved)  # type: ignore[operator]
    kept = live.read_bytes()
    refusal(run("restore", str(saved), "--db", str(live)), str(saved), *words)
    assert live.read_bytes() == kept
    assert names(tmp_path) == ["achievements.db", "saved.db"]
    assert stored_progress(live) == {(1, first): ({"v": 1}, None)}


def test_restore_refuses_a_missing_backup_or_the_live_file_itself(
    server: RealServer, tmp_path: Path
) -> None:
    write(server, 1, 1)
    refusal(run("restore", str(tmp_path / "nope.db"), "--db", str(server.db_path)), "nope.db")
    refusal(run("restore", str(server.db_path), "--db", str(server.db_path)))


def test_restore_takes_an_older_schema_and_the_next_start_upgrades_it(tmp_path: Path) -> None:
    old = tmp_path / "v1-backup.db"
    write_v1_file(old)
    live = tmp_path / "achievements.db"
    db.prepare(str(live))
    result = run("restore", str(old), "--db", str(live))
    assert result.returncode == 0, result.stderr
    server = start_server(live)
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as client:
            names_ = [d["name"] for d in client.get(DEFINITIONS).json()]
        assert sorted(names_) == ["Streak", "Worker I"]
        assert server.terminate() == 0
    finally:
        server.stop()
    with closing(sqlite3.connect(live)) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (db.SCHEMA_VERSION,)
