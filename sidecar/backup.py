"""Backup, restore and check of the database file, from outside the running service.

What they must never do: write over the live database or its -wal/-shm (whatever name OUT has),
replace something that is not a regular file, delete a file they did not create, or leave a
half-written file under the name asked for. Every file they create is 0600 (it holds every
user's data and stored answers).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass

from sidecar import readonly
from sidecar.db import SCHEMA_VERSION, DatabaseError

BEFORE_RESTORE = ".before-restore"


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _live_files(database: str) -> Iterator[tuple[str, os.stat_result]]:
    """The database and whichever of its -wal and -shm exist now."""
    for name in (database, f"{database}-wal", f"{database}-shm"):
        with contextlib.suppress(OSError):
            yield name, os.stat(name)


def _check_output(database: str, output: str, force: bool) -> None:
    """Refuse an OUT that is (a name of) the live files, not a regular file, or in no directory."""
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise DatabaseError(f"directory {directory} does not exist (for {output})")
    # -wal and -shm by name too: they may not exist while the service is stopped.
    resolved = os.path.realpath(output)
    live = os.path.realpath(database)
    if resolved in (live, f"{live}-wal", f"{live}-shm", f"{live}-journal"):
        raise DatabaseError(f"{output} is the database {database} itself or its -wal/-shm")
    try:
        target = os.stat(output)
    except FileNotFoundError:
        if os.path.islink(output):
            raise DatabaseError(f"{output} is a dangling symbolic link") from None
        return
    for name, status in _live_files(database):
        if _same_file(target, status):
            raise DatabaseError(f"{output} is the same file as {name}: refused")
    if not stat.S_ISREG(target.st_mode) or os.path.islink(output):
        raise DatabaseError(f"{output} is not a regular file: refused")
    if not force:
        raise DatabaseError(f"{output} exists; use --force to replace it")


def _fsync(path: str) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _private_temporary(near: str) -> str:
    """An empty, uniquely named, 0600 file in `near`'s directory (renamed into place later)."""
    directory = os.path.dirname(os.path.abspath(near))
    descriptor, path = tempfile.mkstemp(
        prefix=f".{os.path.basename(near)}.", suffix=".partial", dir=directory
    )
    os.close(descriptor)
    return path


def _copy_into(source: sqlite3.Connection, temporary: str) -> int:
    """SQLite's online backup of `source` into the temporary file: one step, so one consistent
    snapshot even under write load; left in rollback-journal mode, a single complete file."""
    with closing(sqlite3.connect(temporary)) as target:
        source.backup(target, pages=-1)
        target.execute("PRAGMA journal_mode = DELETE")
        pages = int(target.execute("PRAGMA page_count").fetchone()[0])
    _fsync(temporary)
    return pages


@dataclass
class Backup:
    """A backup being written: `temporary` grows while `write` runs (the CLI shows its size)."""

    database: str
    output: str
    force: bool
    temporary: str

    @classmethod
    def plan(cls, database: str, output: str, force: bool) -> Backup:
        readonly.existing_file(database)
        _check_output(database, output, force)
        return cls(database, output, force, _private_temporary(output))

    def write(self) -> int:
        """Copy, then put the copy under OUT; returns the number of pages copied."""
        try:
            pages = readonly.read(self.database, lambda c: _copy_into(c, self.temporary))
            # OUT may have appeared meanwhile: check again, then never replace it without --force.
            _check_output(self.database, self.output, self.force)
            if self.force:
                os.replace(self.temporary, self.output)
            else:
                try:
                    os.link(self.temporary, self.output)  # fails if OUT exists by now
                except FileExistsError:
                    raise DatabaseError(
                        f"{self.output} exists; use --force to replace it"
                    ) from None
                os.unlink(self.temporary)
            _fsync(os.path.dirname(os.path.abspath(self.output)))
            return pages
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temporary)


# --- check -------------------------------------------------------------------------------------


def _problems(connection: sqlite3.Connection) -> list[str]:
    problems = [
        str(row[0]) for row in connection.execute("PRAGMA integrity_check") if row[0] != "ok"
    ]
    problems += [
        f"foreign key: table {row[0]} rowid {row[1]} references missing {row[2]}"
        for row in connection.execute("PRAGMA foreign_key_check")
    ]
    version = readonly.schema_version(connection)
    if version > SCHEMA_VERSION:
        problems.append(
            f"schema version {version} is newer than this release knows ({SCHEMA_VERSION})"
        )
    elif version == 0:
        problems.append("not an achievements database (schema version 0)")
    return problems


def check(path: str, what: str = "database") -> list[str]:
    """integrity_check, foreign_key_check and the schema version; the problems found (empty when
    sound). A missing or empty file is a DatabaseError; an unreadable one is a problem."""
    try:
        return readonly.read(path, _problems, what)
    except DatabaseError as error:
        if not os.path.isfile(path) or os.path.getsize(path) == 0:
            raise
        return [str(error)]


# --- restore -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _exclusive(database: str) -> Iterator[sqlite3.Connection | None]:
    """Hold the database so that no service has it or can open it: SQLite's exclusive locking
    mode takes an EXCLUSIVE lock on the file, which fails while any connection (a running
    service holds its connections open, and in WAL mode each keeps a SHARED lock) has it.
    Meanwhile the WAL is folded in. None when the file is not SQLite at all (nothing can serve
    it)."""
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA busy_timeout = 0")
        connection.execute("PRAGMA locking_mode = EXCLUSIVE")
        try:
            connection.execute("BEGIN EXCLUSIVE")
            connection.execute("COMMIT")
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as error:
            if "locked" in str(error) or "busy" in str(error):
                raise DatabaseError(
                    f"{database} is open in a running service (or another program): "
                    "stop it, then restore"
                ) from None
            raise
        except sqlite3.DatabaseError:  # not a database: nothing can have it open as one
            yield None
            return
        yield connection
    finally:
        connection.close()


def _keep(database: str, before: str) -> None:
    """A second name for the current file (a hard link; a copy where links are not possible)."""
    linked = _private_temporary(before)
    os.unlink(linked)
    try:
        os.link(database, linked)
    except OSError:
        with open(database, "rb") as old, open(linked, "xb") as copy:
            while chunk := old.read(1024 * 1024):
                copy.write(chunk)
        _fsync(linked)
    os.replace(linked, before)


def restore(backup: str, database: str, force: bool) -> str | None:
    """Check BACKUP, then replace the database with it atomically (the service must be stopped).
    Returns where the replaced file was kept (`<db>.before-restore`), None if there was none."""
    problems = check(backup, "backup")
    if problems:
        more = (
            f" and {len(problems) - 1} more (sidecar check --db {backup})" if problems[1:] else ""
        )
        raise DatabaseError(f"{backup} is not a sound backup: {problems[0]}{more}")
    directory = os.path.dirname(os.path.abspath(database))
    if not os.path.isdir(directory):
        raise DatabaseError(f"directory {directory} does not exist (for {database})")
    existing = dict(_live_files(database))
    target = os.stat(backup)
    if any(_same_file(target, status) for status in existing.values()):
        raise DatabaseError(f"{backup} is the database {database} itself")
    before = f"{database}{BEFORE_RESTORE}"
    if database in existing and os.path.lexists(before) and not force:
        raise DatabaseError(f"{before} exists (from an earlier restore); use --force to replace it")
    temporary = _private_temporary(database)
    try:
        readonly.read(backup, lambda c: _copy_into(c, temporary), "backup")
        if database not in existing:
            if f"{database}-wal" in existing:  # it would be replayed into the restored file
                raise DatabaseError(f"{database}-wal exists without {database}: move it away first")
            os.replace(temporary, database)
            _fsync(directory)
            return None
        with _exclusive(database):
            _keep(database, before)
            # Nothing else has the file open while we hold it: a stale -shm can go.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{database}-shm")
        # Closing the exclusive connection removed its (empty, checkpointed) -wal. One that is
        # there now belongs to a service that started meanwhile: it would be replayed into the
        # restored file, so stop here.
        if os.path.exists(f"{database}-wal"):
            raise DatabaseError(f"{database} was opened by another program during the restore")
        os.replace(temporary, database)
        _fsync(directory)
        return before
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
