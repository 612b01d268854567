"""Shared fixtures: an in-process client on a real file, and the real server in a subprocess.

A test module marked `pytestmark = pytest.mark.both_backends` runs each of its tests on SQLite
and on PostgreSQL (one database for the session, emptied before each test: tests/pg.py), through the
`backend` parameter that `db_path` and everything built on it follow; a test in it marked
`sqlite_only` (files, WAL, PRAGMAs) runs on SQLite alone. Other modules run on SQLite, their
test ids unchanged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from sidecar.app import create_app
from sidecar.settings import Settings
from tests import pg
from tests.realserver import RealServer, start_server

BASE_URL = "http://127.0.0.1:8787"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_backends: run the module's tests on both backends")
    config.addinivalue_line("markers", "sqlite_only: run on SQLite only (files, WAL, PRAGMAs)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("both_backends") is None:
        return
    backends = ["sqlite"]
    if metafunc.definition.get_closest_marker("sqlite_only") is None:
        backends.append("postgres")
    metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    name: str = getattr(request, "param", "sqlite")
    return name


@pytest.fixture(scope="session")
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A database holding the service's schema, emptied before each test that uses it."""
    with pg.prepared_database(postgres_url) as name:
        yield pg.database_url(postgres_url, name)


@pytest.fixture
def db_path(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The test's database: a file in tmp_path, or the URL of the session's PostgreSQL
    database, emptied for the test."""
    if backend == "sqlite":
        yield tmp_path / "achievements.db"
        return
    url: str = request.getfixturevalue("postgres_database")
    pg.reset(url)
    yield url


@pytest.fixture
def make_client(
    db_path: Path,
) -> Callable[..., AbstractAsyncContextManager[AsyncTestClient[Any]]]:
    """`async with make_client(token="t") as client:` — the app with extra Settings fields."""

    @asynccontextmanager
    async def factory(**overrides: Any) -> AsyncIterator[AsyncTestClient[Any]]:
        settings = Settings(db_path=str(overrides.pop("db_path", db_path)), **overrides)
        async with AsyncTestClient(app=create_app(settings), base_url=BASE_URL) as client:
            yield client

    return factory


@pytest.fixture
async def client(
    make_client: Callable[..., AbstractAsyncContextManager[AsyncTestClient[Any]]],
) -> AsyncIterator[AsyncTestClient[Any]]:
    async with make_client() as test_client:
        yield test_client


@pytest.fixture
def sql(db_path: Any, backend: str) -> Callable[..., list[tuple[Any, ...]]]:
    """Run a query straight on the database, as a user inspecting it would (on PostgreSQL with
    SQLite's placeholders, as the store writes them)."""
    if backend == "postgres":
        return pg.query_function(str(db_path))

    def query(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        # Committed and closed at once: a connection left to the garbage collector keeps the WAL
        # file alive after the server has stopped.
        with closing(sqlite3.connect(db_path)) as connection, connection:
            return connection.execute(statement, params).fetchall()

    return query


@pytest.fixture
def server(db_path: Any, tmp_path: Path) -> Iterator[RealServer]:
    """The real service, `python -m sidecar serve`, on a free port and the test's database."""
    real = start_server(db_path, log_dir=tmp_path)
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the session (tests/pg.py); the tests that use it skip, with one
    line saying why, when there is none."""
    yield from pg.session_url()


@pytest.fixture
def cluster() -> Iterator[pg.Cluster]:
    """A PostgreSQL cluster of the test's own, for a test that stops it (skips when there is
    none, as postgres_url does)."""
    own = pg.cluster_or_skip()
    try:
        yield own
    finally:
        own.stop()
