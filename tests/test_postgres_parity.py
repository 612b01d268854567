"""What differs between the backends and what must not: /health reports each backend's own facts
(on PostgreSQL the server's version and the database, never its password), and on PostgreSQL no
read, however long the server takes, holds up the event loop: other requests keep answering."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from sidecar import db, postgres
from sidecar.app import create_app
from sidecar.settings import Settings
from tests import pg
from tests.conftest import BASE_URL
from tests.helpers import DEFINITIONS, PROGRESS, create_definition, unlock
from tests.realserver import start_server

pytestmark = pytest.mark.both_backends

# A held read is released after this long at the latest, so a test that fails still stops.
HOLD_SECONDS = 20.0


async def test_health_reports_the_backend_it_runs_on(
    make_client: Any, db_path: Any, backend: str, sql: Any
) -> None:
    async with make_client(token="t0ken") as client:  # /health never needs it
        response = await client.get("/health")
    assert response.status_code == 200, response.text
    health = response.json()
    assert health["status"] == "ok" and health["database"] == "ok"
    if backend == "sqlite":
        assert list(health) == ["status", "database", "schemaVersion", "sqliteVersion", "version"]
        assert health["schemaVersion"] == db.SCHEMA_VERSION
        assert health["sqliteVersion"] == sqlite3.sqlite_version
    else:
        assert list(health) == [
            "status",
            "database",
            "schemaVersion",
            "postgresqlVersion",
            "databaseUrl",
            "version",
        ]
        assert health["schemaVersion"] == postgres.SCHEMA_VERSION
        assert health["postgresqlVersion"] == sql("SHOW server_version")[0][0]
        assert health["databaseUrl"] == postgres.redacted(str(db_path))


async def test_health_on_postgresql_never_shows_the_password(postgres_database: str) -> None:
    # The test server trusts local connections: a password is accepted and ignored.
    parts = urllib.parse.urlsplit(postgres_database)
    netloc = f"postgres:pw-in-netloc@{parts.netloc.rpartition('@')[2]}"
    url = urllib.parse.urlunsplit(parts._replace(netloc=netloc, query="password=pw-in-query"))
    pg.reset(postgres_database)
    async with AsyncTestClient(app=create_app(Settings(db_path=url)), base_url=BASE_URL) as client:
        response = await client.get("/health")
    assert response.status_code == 200, response.text
    assert "pw-in" not in response.text
    assert response.json()["databaseUrl"].endswith("?password=***")


# --- a slow read does not hold up the others ---------------------------------------------------


class HeldTables:
    """Another connection locks user_achievements and user_stats from `hold()` until `go` is set
    (or HOLD_SECONDS pass); `released` is set then."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.go, self.released = threading.Event(), threading.Event()
        self._locked = threading.Event()
        self._holder = threading.Thread(target=self._hold, daemon=True)

    def hold(self) -> None:
        self._holder.start()
        assert self._locked.wait(HOLD_SECONDS), "the lock was not taken"

    def _hold(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as connection:
            with connection.transaction():
                connection.execute(
                    "LOCK TABLE user_achievements, user_stats IN ACCESS EXCLUSIVE MODE"
                )
                self._locked.set()
                self.go.wait(HOLD_SECONDS)
            self.released.set()

    def wait_for_waiters(self, count: int) -> None:
        """Until `count` queries wait for the lock (bounded: HOLD_SECONDS)."""
        deadline = time.monotonic() + HOLD_SECONDS
        with psycopg.connect(self.url, autocommit=True) as connection:
            while time.monotonic() < deadline:
                row = connection.execute("SELECT count(*) FROM pg_locks WHERE NOT granted")
                if (row.fetchone() or (0,))[0] >= count:
                    return
                time.sleep(0.05)
        raise AssertionError(f"fewer than {count} queries came to wait for the lock")

    def stop(self) -> None:
        self.go.set()
        if self._holder.is_alive():
            self._holder.join(HOLD_SECONDS)


@pytest.fixture
def held_tables(postgres_database: str) -> Iterator[HeldTables]:
    pg.reset(postgres_database)
    held = HeldTables(postgres_database)
    try:
        yield held
    finally:
        held.stop()


async def test_a_read_held_up_by_the_server_does_not_stop_other_requests(
    postgres_database: str, held_tables: HeldTables, tmp_path: Path
) -> None:
    """Not parametrised: SQLite's small reads run inline by design (a local file, microseconds).
    The real server: the test client runs the app behind a blocking call, one request at a time."""
    server = start_server(postgres_database, log_dir=tmp_path)
    try:
        held_tables.hold()  # after the start, which reads the tables
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HOLD_SECONDS) as client:
            # Reads that wait for the lock: two of the fast path's, one of a Litestar handler's.
            held = [
                asyncio.create_task(client.get(PROGRESS, params={"userId": 1, "achievementId": 1})),
                asyncio.create_task(client.get("/users/achievements/leaderboard/1")),
                asyncio.create_task(client.get("/users/1/profile")),
            ]
            await asyncio.to_thread(held_tables.wait_for_waiters, len(held))
            assert not any(task.done() for task in held)
            for path in ("/health", "/schema/openapi.json", DEFINITIONS):
                answered = await client.get(path)
                assert answered.status_code == 200, answered.text
                # Not a speed bound: while the lock was held, not after.
                assert not held_tables.released.is_set(), f"{path} answered after the held reads"
            assert not any(task.done() for task in held)
            held_tables.go.set()
            row, rank, profile = await asyncio.gather(*held)
        assert row.status_code == 200 and row.json() is None
        assert rank.status_code == 404
        assert profile.status_code == 200
    finally:
        server.stop()


async def test_reads_on_reader_threads_see_every_write_before_them(client: Any) -> None:
    # Each reader thread has its own connection: a read after a write sees it, on any of them.
    achievement = (await create_definition(client))["id"]
    for user in range(1, 21):
        await unlock(client, user, achievement)
        reads = await asyncio.gather(
            *(
                client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
                for _ in range(6)
            )
        )
        assert all(read.json()["unlockedAt"] is not None for read in reads)


@pytest.fixture
def own_cluster() -> Iterator[pg.Cluster]:
    """A cluster of this test's own, since the test stops its processes."""
    cluster = pg.cluster_or_skip()
    try:
        yield cluster
    finally:
        signal_cluster(cluster, signal.SIGCONT)
        cluster.stop()


def signal_cluster(cluster: pg.Cluster, number: int) -> None:
    """The server and each of its processes (a backend starts a session of its own)."""
    postmaster = cluster.process.pid
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            # pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
            if int(stat.read_text().rpartition(")")[2].split()[1]) == postmaster:
                children.append(int(stat.parent.name))
    for pid in [*children, postmaster]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


async def test_a_server_that_stops_answering_does_not_stop_other_requests(
    own_cluster: pg.Cluster, tmp_path: Path
) -> None:
    """PostgreSQL's processes stopped (SIGSTOP: as a host gone from the network, connections
    open and silent): reads and writes wait, routes that need no database answer meanwhile."""
    with pg.fresh_database(own_cluster.url) as url:
        server = start_server(url, log_dir=tmp_path)
        try:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=HOLD_SECONDS) as client:
                created = await client.post(DEFINITIONS, json={"name": "Before"})
                assert created.status_code == 201, created.text
                signal_cluster(own_cluster, signal.SIGSTOP)
                try:
                    held = [
                        asyncio.create_task(client.get(f"{DEFINITIONS}/1")),
                        asyncio.create_task(
                            client.get(PROGRESS, params={"userId": 1, "achievementId": 1})
                        ),
                        asyncio.create_task(client.get("/health")),
                    ]
                    await asyncio.sleep(0.5)
                    assert not any(task.done() for task in held)
                    document = await client.get("/schema/openapi.json")
                    assert document.status_code == 200
                    assert not any(task.done() for task in held)
                finally:
                    signal_cluster(own_cluster, signal.SIGCONT)
                answers = await asyncio.gather(*held)
                assert [answer.status_code for answer in answers] == [200, 200, 200]
        finally:
            server.stop()
