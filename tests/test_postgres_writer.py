"""The PostgreSQL writer's pipelining: round trips per write counted, and each job's errors its
own although the statements of a group's jobs are sent without waiting for their answers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.pq import PipelineStatus

from sidecar import commands, store
from sidecar.models import Apply
from sidecar.postgres import backend
from tests import pg


@pytest.fixture
def database(postgres_database: str) -> str:
    pg.reset(postgres_database)
    return postgres_database


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every wait for the server's answers: outside pipeline mode each statement's execution;
    in pipeline mode a read of a result (it brings the answers of all sent before) or a sync."""
    waits: list[str] = []

    def counted(name: str, wait: Any, piped: bool) -> Any:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            connection = self._conn if isinstance(self, psycopg.Pipeline) else self.connection
            if (connection.pgconn.pipeline_status != PipelineStatus.OFF) == piped:
                waits.append(name)
            return wait(self, *args, **kwargs)

        return wrapper

    cursor = psycopg.Cursor
    monkeypatch.setattr(cursor, "execute", counted("execute", cursor.execute, piped=False))
    monkeypatch.setattr(cursor, "fetchone", counted("read", cursor.fetchone, piped=True))
    monkeypatch.setattr(cursor, "fetchall", counted("read", cursor.fetchall, piped=True))
    monkeypatch.setattr(psycopg.Pipeline, "sync", counted("sync", psycopg.Pipeline.sync, True))
    yield waits


async def _one_group(writer: backend.Writer, jobs: list[Any]) -> list[Any]:
    """The jobs' outcomes, the jobs queued while the writer thread is held: one group."""
    held = threading.Event()
    holding = asyncio.ensure_future(writer.run(lambda _: held.wait(10)))
    await asyncio.sleep(0.05)  # the writer thread has taken the holding job (or soon will)
    runs = [asyncio.ensure_future(writer.run(job)) for job in jobs]
    await asyncio.sleep(0)  # queued
    held.set()
    await holding
    return list(await asyncio.gather(*runs, return_exceptions=True))


def _upsert(user: int) -> Any:
    command = commands.UpsertCommand(user, 1, '{"n":1}')
    return lambda connection: commands.execute(connection, command)


async def test_an_upsert_costs_two_round_trips(database: str, round_trips: list[str]) -> None:
    writer = backend.Writer(database)
    try:
        await writer.run(lambda c: store.create_achievement(c, "A", None, None, "{}"))
        round_trips.clear()
        # Sent at once: one group (the writer thread waits for the first job's answers).
        await asyncio.gather(*(writer.run(_upsert(user)) for user in range(1, 21)))
        # The achievement's lookup and the upsert: 2 reads a job; a sync (the COMMIT) a group
        # of several. Unpipelined, each of a job's 6 statements was a round trip.
        assert round_trips.count("read") == 40, round_trips
        assert round_trips.count("sync") <= 20, round_trips
        assert "execute" not in round_trips
    finally:
        await writer.close()


async def test_new_unlocks_wait_three_times_a_job(database: str, round_trips: list[str]) -> None:
    """The event's insert is left unread: a group of new unlocks syncs once, at its COMMIT."""
    writer = backend.Writer(database)
    try:
        await writer.run(lambda c: store.create_achievement(c, "A", None, None, "{}"))
        unlocks = [commands.UnlockCommand(user, 1) for user in range(1, 21)]
        round_trips.clear()
        jobs = [lambda c, u=u: commands.execute(c, u) for u in unlocks]
        outcomes = await _one_group(writer, jobs)
        assert all(outcome.newly_unlocked for outcome in outcomes), outcomes
        # The achievement, the row (none), the inserted row: 3 reads a job; the holding job's
        # sync, the group's COMMIT.
        assert round_trips.count("read") == 60, round_trips
        assert round_trips.count("sync") <= 3, round_trips
    finally:
        await writer.close()


async def test_an_error_sent_unread_is_its_own_jobs(database: str) -> None:
    """A job that sends a failing statement and reads nothing gets the error; the jobs before
    and after it in its group are committed."""
    writer = backend.Writer(database)

    def fails_unread(connection: Any) -> None:
        connection.execute("INSERT INTO users (id, created_at) VALUES (?, ?)", (2, "x"))
        connection.execute("INSERT INTO users (id, created_at) VALUES (?, ?)", (2, "x"))

    def adds(user: int) -> Any:
        def run(connection: Any) -> None:
            connection.execute("INSERT INTO users (id, created_at) VALUES (?, ?)", (user, "x"))

        return run

    try:
        outcomes = await _one_group(writer, [adds(1), fails_unread, adds(3)])
        assert outcomes[0] is None and outcomes[2] is None, outcomes
        assert isinstance(outcomes[1], psycopg.errors.UniqueViolation), outcomes
        # Alone in its group (no SAVEPOINT then): rolled back as a whole.
        with pytest.raises(psycopg.errors.UniqueViolation):
            await writer.run(fails_unread)
        users = await writer.run(
            lambda c: [row[0] for row in c.execute("SELECT id FROM users ORDER BY id").fetchall()]
        )
        assert users == [1, 3]
    finally:
        await writer.close()


async def test_a_group_run_again_applies_each_write_once(database: str) -> None:
    """A group whose third job fails is rolled back and run again with savepoints: the writes
    of the jobs before it count once, the failing one's not at all."""
    writer = backend.Writer(database)
    body = b'{"userId":1,"achievementId":1,"ops":[{"op":"inc","path":"n","value":1}]}'
    command = commands.command_of(msgspec.json.decode(body, type=Apply, strict=True))

    def increment(connection: Any) -> Any:
        return commands.execute(connection, command)

    def fails(connection: Any) -> None:
        increment(connection)
        connection.execute("SELECT 1 / 0")  # sent, never read

    try:
        await writer.run(lambda c: store.create_achievement(c, "A", None, None, "{}"))
        outcomes = await _one_group(writer, [increment, increment, fails, increment])
        assert not any(isinstance(o, BaseException) for o in outcomes[:2] + outcomes[3:])
        assert isinstance(outcomes[2], psycopg.errors.DivisionByZero), outcomes
        row = await writer.run(
            lambda c: c.execute("SELECT metadata FROM user_achievements").fetchone()
        )
        assert row == ('{"n":3}',)
    finally:
        await writer.close()
