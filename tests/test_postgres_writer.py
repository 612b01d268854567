"""The PostgreSQL writer's pipelining: round trips per write counted, and each job's errors its
own although the statements of a group's jobs are sent without waiting for their answers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.pq import PipelineStatus

from sidecar import commands, store
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
        outcomes = await asyncio.gather(
            writer.run(adds(1)),
            writer.run(fails_unread),
            writer.run(adds(3)),
            return_exceptions=True,
        )
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
