"""Faults of the machine, not of the request: a database locked by another process, I/O errors
that are not a full disk, a writer thread that is gone. Each is a clear 503 (or a failing
/health), never a 500 that a request caused, and a write is never run twice."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from sidecar import commands, db
from tests.helpers import PROGRESS, assert_problem, create_definition

APPLY = f"{PROGRESS}/apply"


class CountingRuns:
    """Wraps Writer.run, counting the jobs that reach the writer."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = db.Writer.run

        async def run(writer: db.Writer, function: Any) -> Any:
            self.count += 1
            return await original(writer, function)

        monkeypatch.setattr(db.Writer, "run", run)


@pytest.mark.parametrize(
    ("path", "body", "content_type"),
    [
        (PROGRESS, {"userId": 1, "achievementId": 1}, "application/json"),  # the fast path
        (APPLY, {"userId": 1, "achievementId": 1, "ops": []}, "application/json"),
        (PROGRESS, {"userId": 1, "achievementId": 1}, "application/json; charset=utf-8"),
    ],
)
async def test_a_locked_database_is_503_database_busy_and_the_write_runs_once(
    make_client: Any,
    db_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
    body: dict[str, Any],
    content_type: str,
) -> None:
    monkeypatch.setattr(db, "BUSY_TIMEOUT_MS", 50)  # the writer gives up after 50 ms, not 5 s
    async with make_client() as client:
        await create_definition(client, "Locked out")
        runs = CountingRuns(monkeypatch)
        # Another process in a write transaction, as `sidecar definitions import` holds one.
        with closing(sqlite3.connect(db_path, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")
            response = await client.post(
                path, content=json.dumps(body), headers={"content-type": content_type}
            )
            other.execute("ROLLBACK")
        assert_problem(response, 503, "DATABASE_BUSY")
        assert int(response.headers["retry-after"]) >= 1
        assert runs.count == 1
        # Unlocked: the same write goes through.
        again = await client.post(path, json=body)
        assert again.status_code == 200, again.text


async def test_an_io_error_is_503_storage_error_with_one_log_line(
    client: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await create_definition(client, "Broken disk")

    def failing(connection: sqlite3.Connection, command: Any) -> Any:
        error = sqlite3.OperationalError("disk I/O error")
        error.sqlite_errorcode = 266  # type: ignore[attr-defined]  # SQLITE_IOERR_READ
        raise error

    monkeypatch.setattr(commands, "execute", failing)
    for content_type in ("application/json", "application/json; charset=utf-8"):
        caplog.clear()
        response = await client.post(
            PROGRESS,
            content=b'{"userId": 1, "achievementId": 1}',
            headers={"content-type": content_type},
        )
        assert_problem(response, 503, "STORAGE_ERROR")
        lines = [r for r in caplog.records if r.name == "sidecar"]
        assert len(lines) == 1 and lines[0].exc_info is None, lines
        assert "disk I/O error" in lines[0].getMessage()


async def test_a_full_disk_stays_507_storage_full(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    await create_definition(client, "Full disk")

    def full(connection: sqlite3.Connection, command: Any) -> Any:
        error = sqlite3.OperationalError("database or disk is full")
        error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr(commands, "execute", full)
    response = await client.post(PROGRESS, json={"userId": 1, "achievementId": 1})
    assert_problem(response, 507, "STORAGE_FULL")


async def test_health_fails_when_the_writer_thread_is_gone(client: Any) -> None:
    assert (await client.get("/health")).status_code == 200
    # Stop the thread from outside, as a bug that escaped the writer's loop would.
    await client.app.state.service.writer.close()
    response = await client.get("/health")
    assert response.status_code >= 500
    assert response.headers["content-type"].startswith("application/problem+json")
    refused = await client.post(PROGRESS, json={"userId": 1, "achievementId": 1})
    assert refused.status_code >= 500  # answered, not left waiting for a writer that is gone
