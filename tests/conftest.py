"""Shared fixtures: an in-process client on a real file, and the real server in a subprocess."""

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


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "achievements.db"


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
def sql(db_path: Path) -> Callable[..., list[tuple[Any, ...]]]:
    """Run a query straight on the database file, as a user inspecting it would."""

    def query(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        # Committed and closed at once: a connection left to the garbage collector keeps the WAL
        # file alive after the server has stopped.
        with closing(sqlite3.connect(db_path)) as connection, connection:
            return connection.execute(statement, params).fetchall()

    return query


@pytest.fixture
def server(db_path: Path) -> Iterator[RealServer]:
    """The real service, `python -m sidecar serve`, on a free port and the test's file."""
    real = start_server(db_path)
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server for the session (tests/pg.py); the tests that use it skip, with one
    line saying why, when there is none."""
    yield from pg.session_url()
