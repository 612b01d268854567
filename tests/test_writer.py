"""The writer thread: one transaction per group of queued writes, each write in its own
savepoint, every caller answered after the commit that holds its write."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from sidecar import db
from tests.helpers import PROGRESS, create_definition


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[tuple[db.Writer, str]]:
    path = str(tmp_path / "w.db")
    db.prepare(path)
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    connection.close()
    writer = db.Writer(path)
    yield writer, path
    await writer.close()


def rows(path: str) -> list[int]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute("SELECT n FROM t ORDER BY n")]


def insert(n: int) -> Callable[[sqlite3.Connection], int]:
    def job(connection: sqlite3.Connection) -> int:
        connection.execute("INSERT INTO t (n) VALUES (?)", (n,))
        return n

    return job


def fail_after_insert(n: int) -> Callable[[sqlite3.Connection], int]:
    def job(connection: sqlite3.Connection) -> int:
        connection.execute("INSERT INTO t (n) VALUES (?)", (n,))
        raise ValueError(f"job {n} fails after writing")

    return job


async def test_each_caller_gets_its_own_result_and_the_write_is_committed(
    writer: tuple[db.Writer, str],
) -> None:
    w, path = writer
    results = await asyncio.gather(*(w.run(insert(n)) for n in range(1, 201)))
    assert results == list(range(1, 201))
    assert rows(path) == list(range(1, 201))


async def test_a_failing_write_in_a_group_undoes_only_itself(writer: tuple[db.Writer, str]) -> None:
    w, path = writer
    gate = threading.Event()

    def blocker(connection: sqlite3.Connection) -> str:
        gate.wait(5)
        return "first"

    first = asyncio.ensure_future(w.run(blocker))
    await asyncio.sleep(0.05)  # the writer is inside `blocker`: what follows queues up together
    queued = [
        asyncio.ensure_future(w.run(insert(1))),
        asyncio.ensure_future(w.run(fail_after_insert(2))),
        asyncio.ensure_future(w.run(insert(3))),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    assert await first == "first"
    assert await queued[0] == 1
    with pytest.raises(ValueError, match="job 2 fails"):
        await queued[1]
    assert await queued[2] == 3
    assert rows(path) == [1, 3]


async def test_a_failing_commit_fails_every_write_of_the_group(
    writer: tuple[db.Writer, str],
) -> None:
    w, path = writer

    def break_transaction(connection: sqlite3.Connection) -> None:
        # What SQLite does on SQLITE_FULL: the whole transaction is rolled back under us.
        connection.execute("INSERT INTO t (n) VALUES (99)")
        connection.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    gate = threading.Event()

    def blocker(connection: sqlite3.Connection) -> None:
        gate.wait(5)

    first = asyncio.ensure_future(w.run(blocker))
    await asyncio.sleep(0.05)
    group = [
        asyncio.ensure_future(w.run(insert(1))),
        asyncio.ensure_future(w.run(break_transaction)),
        asyncio.ensure_future(w.run(insert(3))),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await first
    outcomes = await asyncio.gather(*group, return_exceptions=True)
    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes)
    assert rows(path) == []
    # The writer goes on: the next write succeeds.
    assert await w.run(insert(4)) == 4
    assert rows(path) == [4]


async def test_a_cancelled_caller_still_gets_its_write_committed(
    writer: tuple[db.Writer, str],
) -> None:
    w, path = writer
    gate = threading.Event()

    def blocker(connection: sqlite3.Connection) -> None:
        gate.wait(5)

    first = asyncio.ensure_future(w.run(blocker))
    await asyncio.sleep(0.05)
    abandoned = asyncio.ensure_future(w.run(insert(7)))
    await asyncio.sleep(0.05)
    abandoned.cancel()
    gate.set()
    await first
    assert await w.run(insert(8)) == 8
    assert rows(path) == [7, 8]


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    db.prepare(path)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
    w = db.Writer(path)
    pending = [asyncio.ensure_future(w.run(insert(n))) for n in range(1, 51)]
    await asyncio.sleep(0)
    await w.close()
    assert [await p for p in pending] == list(range(1, 51))
    assert rows(path) == list(range(1, 51))


def in_main_file(path: str, tmp: Path) -> list[int]:
    """The rows of the database file alone, as if its WAL were lost: what was checkpointed."""
    copy = tmp / "main-file-only.db"
    copy.write_bytes(Path(path).read_bytes())
    try:
        return rows(str(copy))
    except sqlite3.DatabaseError:  # copied halfway through a checkpoint: not there yet
        return []


async def test_commits_are_checkpointed_beside_the_writer_not_inside_a_commit(
    writer: tuple[db.Writer, str], tmp_path: Path
) -> None:
    w, path = writer
    await asyncio.gather(*(w.run(insert(n)) for n in range(1, 51)))
    # Not SQLite's automatic checkpoint, which would run inside a commit once the WAL passes
    # 1000 pages: the writer's connection has it off.
    autocheckpoint = await w.run(lambda c: c.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
    assert autocheckpoint == 0
    for _ in range(100):  # the checkpoint thread folds the WAL in shortly after the commits
        if in_main_file(path, tmp_path) == list(range(1, 51)):
            break
        await asyncio.sleep(0.05)
    assert in_main_file(path, tmp_path) == list(range(1, 51))


class Abort(BaseException):
    """Not an Exception: what a job's bug or a stray SystemExit looks like to the writer."""


async def test_a_job_raising_a_base_exception_is_answered_and_the_writer_goes_on(
    writer: tuple[db.Writer, str],
) -> None:
    w, path = writer

    def abort(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO t (n) VALUES (5)")
        raise Abort("not an Exception")

    with pytest.raises(Exception, match="Abort"):
        await asyncio.wait_for(w.run(abort), 10)
    assert w.alive
    assert await asyncio.wait_for(w.run(insert(6)), 10) == 6
    assert rows(path) == [6]


def wal_size(path: str) -> int:
    return Path(f"{path}-wal").stat().st_size


async def test_the_wal_returns_to_its_size_limit_after_a_burst(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 256 * 1024
    monkeypatch.setattr(db, "JOURNAL_SIZE_LIMIT_BYTES", limit, raising=False)
    path = str(tmp_path / "wal.db")
    db.prepare(path)
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
    w = db.Writer(path)
    try:
        # A reader on an old snapshot keeps the checkpoint from catching up: the WAL grows.
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM t").fetchone()

        def big(n: int) -> Callable[[sqlite3.Connection], None]:
            return lambda c: c.execute("INSERT INTO t VALUES (?, zeroblob(16384))", (n,)) and None

        for n in range(200):
            await w.run(big(n))
        peak = wal_size(path)
        assert peak > 8 * limit
        reader.execute("COMMIT")
        reader.close()
        # Quiet from now on: no write comes to restart the WAL, yet it shrinks to the limit.
        for _ in range(200):
            if wal_size(path) <= limit:
                break
            await asyncio.sleep(0.05)
        assert wal_size(path) <= limit, (peak, wal_size(path))
        assert await w.run(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 200
    finally:
        await w.close()


async def test_a_transaction_of_unlocks_wakes_the_event_loop_once(
    client: AsyncTestClient[Any],
) -> None:
    """Each wake-up of the event loop from the writer thread (call_soon_threadsafe: a write to
    the loop's self-pipe) costs the loop a turn; the unlock workload paid one per inserted
    event. A transaction of 20 unlocks (one batch), each appending an event, is handed to the
    loop once, with its answer (counted, not timed)."""
    achievement = (await create_definition(client))["id"]
    loop = client.app.state.service.writer._loop  # the app's loop, which the writer wakes
    wake_ups = 0
    threadsafe = loop.call_soon_threadsafe

    def counted(callback: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal wake_ups
        if threading.current_thread().name == "sidecar-writer":
            wake_ups += 1
        return threadsafe(callback, *args, **kwargs)

    loop.call_soon_threadsafe = counted
    try:
        operations = [
            {"type": "unlock", "userId": user, "achievementId": achievement}
            for user in range(1, 21)
        ]
        response = await client.post(f"{PROGRESS}/batch", json={"operations": operations})
    finally:
        del loop.call_soon_threadsafe
    assert response.status_code == 200, response.text
    assert len((await client.get("/users/achievements/events")).json()) == 20
    assert wake_ups == 1
