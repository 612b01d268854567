"""Reading a database file from outside the service (check, export, backup, restore), read-only.

A read-only SQLite connection to a WAL file creates `-wal` and `-shm` beside it when they are
missing, and cannot remove them when it closes. So: when there is no `-wal` (the service is not
running, or stopped cleanly), the main file holds everything and is read as immutable, which
creates nothing; if the file changed meanwhile (a service started and checkpointed), the read is
done again the ordinary way, beside the service's own `-wal` and `-shm`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TypeVar

from sidecar.db import BUSY_TIMEOUT_MS, SCHEMA_VERSION, DatabaseError

T = TypeVar("T")


def existing_file(path: str, what: str = "database") -> os.stat_result:
    """The file's stat; refuses (DatabaseError) a missing, non-regular or empty file."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise DatabaseError(f"no {what} at {path}") from None
    except OSError as error:
        raise DatabaseError(f"cannot read {path}: {error.strerror}") from None
    if not Path(path).is_file():
        raise DatabaseError(f"{path} is not a regular file")
    if status.st_size == 0:
        raise DatabaseError(f"{path} is empty (0 bytes): not a {what}")
    return status


def _identity(path: str) -> tuple[int, ...]:
    status = os.stat(path)
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


def _connect(path: str, flags: str) -> sqlite3.Connection:
    uri = f"{Path(path).resolve().as_uri()}?mode=ro{flags}"
    connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


def read(path: str, work: Callable[[sqlite3.Connection], T], what: str = "database") -> T:
    """`work(connection)` on the file, read-only, creating no file. Refuses a missing or empty
    file; a file SQLite cannot read is a DatabaseError naming it."""
    existing_file(path, what)
    try:
        if not os.path.exists(f"{path}-wal"):
            before = _identity(path)
            with closing(_connect(path, "&immutable=1")) as connection:
                result = work(connection)
            if not os.path.exists(f"{path}-wal") and _identity(path) == before:
                return result
        with closing(_connect(path, "")) as connection:
            return work(connection)
    except sqlite3.DatabaseError as error:
        raise DatabaseError(f"{path} is not a usable SQLite database: {error}") from None


def schema_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def require_current_schema(connection: sqlite3.Connection, path: str) -> None:
    """A read that uses the tables needs this release's schema (a read-only command never
    migrates: the service does, at its next start)."""
    version = schema_version(connection)
    if version == 0:
        raise DatabaseError(f"{path} is not an achievements database (schema version 0)")
    if version > SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} has schema version {version}; this release knows up to {SCHEMA_VERSION}"
        )
    if version < SCHEMA_VERSION:
        raise DatabaseError(
            f"{path} has schema version {version}: start the service once to upgrade it"
        )
