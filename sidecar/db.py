"""SQLite: connections and pragmas, the schema and its version, the writer thread.

All writes go through one `Writer`: a thread that owns the only writing connection and runs each
request's whole transaction as one function call on that thread (one hop from the event loop).
Jobs that queue up while a commit is in progress are run together in one transaction, each in its
own SAVEPOINT, and committed once (group commit); every caller is answered only after the commit
that holds its write. The WAL is folded into the file by a thread of its own (Checkpointer), not
inside a commit. Reads go through read-only connections beside the writer (see Readers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import resource
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import aiosqlite

from sidecar import postgres

log = logging.getLogger("sidecar")

T = TypeVar("T")
P = ParamSpec("P")
Parameters = Sequence[Any] | Mapping[str, Any]

SCHEMA_VERSION = 5
# RETURNING, STRICT tables and the JSON functions are all there from 3.37.
MIN_SQLITE = (3, 37, 0)
BUSY_TIMEOUT_MS = 5000
# How many queued writes may share one transaction.
MAX_GROUP = 256
# While writes go on, the WAL is checkpointed at most this often.
CHECKPOINT_EVERY_SECONDS = 0.1
# A checkpoint that could not finish (a reader on an old snapshot) is tried again this often,
# also when no write comes.
CHECKPOINT_RETRY_SECONDS = 1.0
# The WAL grows during a burst while readers hold old snapshots; once it is folded in, it is
# cut back to this size (journal_size_limit at the writer's next commit, or a TRUNCATE
# checkpoint when quiet).
JOURNAL_SIZE_LIMIT_BYTES = 64 * 1024 * 1024


class DatabaseError(Exception):
    """The database file cannot be used; the message is one clear line for the operator."""


class DatabaseUnavailable(Exception):
    """The database server cannot be reached (PostgreSQL): 503, and the service goes on."""


class DatabaseGone(Exception):
    """The file at the database's path is no longer the one the service has open."""


class StorageFull(Exception):
    """A write failed for lack of room: a full filesystem or the file-size limit."""


class WriterStopped(Exception):
    """The writer thread is not running: a bug, since it survives every failing job."""


# Room below which an I/O error of a write counts as a full disk (see `out_of_room`).
ROOM_MARGIN_BYTES = 1024 * 1024


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def out_of_room(path: str) -> bool:
    """Whether the database's files have no room left to grow.

    SQLite reports ENOSPC as SQLITE_FULL, but a write past the process's file-size limit (EFBIG)
    as a plain I/O error: that one is told from other I/O errors by the files' sizes.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    files = (path, f"{path}-wal")
    if soft != resource.RLIM_INFINITY and any(_size(f) + ROOM_MARGIN_BYTES > soft for f in files):
        return True
    try:
        stats = os.statvfs(Path(path).parent)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < ROOM_MARGIN_BYTES


FileIdentity = tuple[tuple[int, int] | None, ...]


def file_identity(path: str) -> FileIdentity:
    """(device, inode) of the database file and its WAL (None where missing)."""
    identity: list[tuple[int, int] | None] = []
    for name in (path, f"{path}-wal"):
        try:
            stats = os.stat(name)
        except FileNotFoundError:
            identity.append(None)
        else:
            identity.append((stats.st_dev, stats.st_ino))
    return tuple(identity)


def schema_sql() -> str:
    """schema.sql: shipped inside the wheel, or at the top of a source checkout."""
    packaged = resources.files("sidecar").joinpath("schema.sql")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).resolve().parent.parent / "schema.sql").read_text(encoding="utf-8")


def migrations_after(version: int) -> list[tuple[int, str]]:
    """The migration scripts that bring a file of `version` to SCHEMA_VERSION, in order.

    sidecar/migrations/NNNN_name.sql takes a file from version NNNN - 1 to NNNN.
    """
    scripts = []
    for entry in resources.files("sidecar.migrations").iterdir():
        number = entry.name.split("_", 1)[0]
        if entry.name.endswith(".sql") and number.isdigit() and int(number) > version:
            scripts.append((int(number), entry.read_text(encoding="utf-8")))
    return sorted(scripts)


def schema_objects(connection: sqlite3.Connection, kind: str) -> list[tuple[str, str]]:
    """(name, sql) of a file's own triggers or indexes (not the automatic UNIQUE ones)."""
    return connection.execute(
        "SELECT name, sql FROM sqlite_schema WHERE type = ? AND sql IS NOT NULL ORDER BY name",
        (kind,),
    ).fetchall()


def recreate_triggers_sql(connection: sqlite3.Connection) -> tuple[str, str]:
    """(drop, create): SQL that drops every trigger the file has, and SQL that creates every
    trigger of schema.sql; an upgrade runs the first before its migrations, the second after.

    Triggers hold no data: taking them from schema.sql after the migrations leaves a migrated
    file with exactly the triggers of a fresh one (also when an old release or an operator added
    one that today's schema does not name), so a migration changes tables and rows only, and
    no old trigger fires while a migration rebuilds a table.
    """
    scratch = sqlite3.connect(":memory:")
    try:
        scratch.executescript(schema_sql())
        triggers = schema_objects(scratch, "trigger")
    finally:
        scratch.close()
    drop = "".join(
        'DROP TRIGGER IF EXISTS "{}";\n'.format(name.replace('"', '""'))
        for name, _ in schema_objects(connection, "trigger")
    )
    return drop, "\n".join(f"{sql};" for _, sql in triggers)


def check_sqlite_version() -> None:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        wanted = ".".join(map(str, MIN_SQLITE))
        raise DatabaseError(f"SQLite {sqlite3.sqlite_version} is too old: {wanted} or newer needed")


def configure(connection: sqlite3.Connection, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Per-connection pragmas; journal_mode=WAL is a property of the file, set once in `prepare`."""
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    connection.execute(f"PRAGMA synchronous = {synchronous}")
    return connection


def connect(path: str, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """A connection in autocommit mode: transactions are begun explicitly (BEGIN IMMEDIATE)."""
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    return configure(connection, synchronous)


def prepare(path: str) -> None:
    """Open or create the file, switch it to WAL and bring its schema to SCHEMA_VERSION.

    Refuses (DatabaseError) a file that is not SQLite, is damaged, or comes from a newer release;
    it never rewrites such a file.
    """
    if postgres.is_url(path):  # a PostgreSQL database: its own schema and checks
        postgres.load().prepare(path)
        return
    check_sqlite_version()
    target = Path(path)
    if target.exists() and not target.is_file():
        raise DatabaseError(f"{path} is not a regular file")
    if not target.parent.exists():
        raise DatabaseError(f"directory {target.parent} does not exist")
    # Created 0600 before SQLite opens it (its -wal and -shm then get the same mode): the file
    # holds every user's data and stored answers.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        connection = connect(path)
    except sqlite3.Error as error:
        raise DatabaseError(f"cannot open {path}: {error}") from error
    try:
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DatabaseError(
                f"{path} has schema version {version}; this release knows up to {SCHEMA_VERSION}"
            )
        if version == 0:
            tables = connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]
            if tables:
                raise DatabaseError(f"{path} holds tables that are not this service's schema")
            _upgrade(connection, [schema_sql()])
        elif version < SCHEMA_VERSION:
            drop, create = recreate_triggers_sql(connection)
            scripts = [script for _, script in migrations_after(version)]
            _upgrade(connection, [drop, *scripts, create])
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise DatabaseError(f"{path} cannot be switched to WAL mode (got {mode})")
        # A write, rolled back: refuses a read-only file or directory now, with one line, rather
        # than at the first request. (BEGIN IMMEDIATE alone succeeds on a read-only WAL file.)
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        finally:
            connection.execute("ROLLBACK")
    except sqlite3.DatabaseError as error:
        if "readonly" in str(error):
            message = f"{path} cannot be written (read-only file or directory)"
            raise DatabaseError(message) from error
        raise DatabaseError(f"{path} is not a usable SQLite database: {error}") from error
    finally:
        connection.close()


def _upgrade(connection: sqlite3.Connection, scripts: list[str]) -> None:
    """Run the scripts and set user_version in one transaction: all of it, or nothing.

    Foreign keys are off meanwhile, so that a migration that rebuilds a table (drop, rename)
    cascades nothing; they are checked before the commit instead.
    """
    body = "\n".join(scripts)
    connection.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction: set before
    try:
        # One script, without the COMMIT: executescript would commit a transaction begun apart.
        connection.executescript(
            f"BEGIN IMMEDIATE;\n{body}\nPRAGMA user_version = {SCHEMA_VERSION};"
        )
        broken = connection.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise sqlite3.IntegrityError(f"foreign keys broken by the upgrade: {broken[:3]}")
        connection.execute("COMMIT")
    except sqlite3.Error:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    finally:
        connection.execute("PRAGMA foreign_keys = ON")


def checkpoint(path: str) -> None:
    """Fold the WAL into the main file and truncate it; the last close then removes it."""
    connection = connect(path)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


class Checkpointer:
    """Folds the WAL into the database file on a thread of its own, after commits.

    SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1000 pages, so
    every write queued behind that commit waits for it: upsert p99 at 32 connections measured
    7.6-8.4 ms with it and 4.1 ms without. A PASSIVE checkpoint from another connection blocks
    neither the writer nor the readers.
    """

    def __init__(self, path: str, synchronous: str) -> None:
        self._connection = connect(path, synchronous)
        self._wal = f"{path}-wal"
        # Set once the file at the path is no longer the one open: nothing more is written to it.
        self.halted = False
        self._wanted = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="sidecar-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """There are new commits in the WAL (called by the writer, cheap)."""
        self._wanted.set()

    def close(self) -> None:
        self._stopping = True
        self._wanted.set()
        self._thread.join()

    def _serve(self) -> None:
        try:
            unfinished = False
            while True:
                self._wanted.wait(CHECKPOINT_RETRY_SECONDS if unfinished else None)
                if self._stopping:
                    return
                self._wanted.clear()
                try:
                    unfinished = self._checkpoint()
                except sqlite3.Error as error:  # e.g. the disk is full: the next poke tries again
                    log.warning("checkpoint failed: %s", error)
                time.sleep(CHECKPOINT_EVERY_SECONDS)
        finally:
            self._connection.close()

    def _checkpoint(self) -> bool:
        """Fold the WAL in (PASSIVE); once all of it is, cut a WAL over its limit back (TRUNCATE,
        without waiting for anyone). Returns whether something is left to do."""
        if self.halted:
            return False
        _, frames, folded = self._connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        if frames != folded:
            return True
        if _size(self._wal) <= JOURNAL_SIZE_LIMIT_BYTES:
            return False
        self._connection.execute("PRAGMA busy_timeout = 0")
        try:
            busy = self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self._connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return bool(busy)


@dataclass
class _Job:
    # A SQLite connection here; PostgreSQL's writer (a subclass) passes its own.
    run: Callable[[Any], Any]
    future: asyncio.Future[Any]


_STOP = object()
# Not a job: wakes the writer thread to act on news (the file is gone) when no write comes.
_WAKE = object()


class Writer:
    """The one thread that writes. `await writer.run(fn)` runs fn(connection) in a transaction.

    Before answering a group, the writer checks that the file at the path is still the one it
    has open (device and inode, of the file and of its WAL): once it is not (deleted, or
    replaced by another file), that group and every later write are refused with DatabaseGone,
    and nothing more is written to the unlinked file. /health checks the same.
    """

    def __init__(self, path: str, synchronous: str = "NORMAL") -> None:
        self._path = path
        self._connection = connect(path, synchronous)
        self._connection.execute("PRAGMA wal_autocheckpoint = 0")  # the Checkpointer does it
        self._connection.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT_BYTES}")
        # A read opens the file and its WAL, so that the identity below is of the open files.
        self._connection.execute("SELECT count(*) FROM sqlite_schema").fetchone()
        self._identity = file_identity(path)
        self._gone = False
        self._gone_lock = threading.Lock()
        self._wal_emptied = False
        self._checkpointer = Checkpointer(path, synchronous)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._serve, name="sidecar-writer", daemon=True)
        self._after_commit: list[Callable[[bool], None]] = []
        self._appended = False  # the group in progress inserted an event (writer thread only)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    @property
    def gone(self) -> bool:
        """The database file was deleted or replaced under the service (checked now)."""
        if not self._gone and file_identity(self._path) != self._identity:
            with self._gone_lock:
                if not self._gone:
                    self._gone = True
                    self._checkpointer.halted = True
                    self._queue.put(_WAKE)  # the writer thread then empties our WAL
                    log.error(
                        "database file %s was deleted or replaced while serving: refusing writes",
                        self._path,
                    )
        return self._gone

    def on_commit(self, callback: Callable[[bool], None]) -> None:
        """Call `callback(appended)` on the event loop after each group, with whether it inserted
        an event (see `note_appended`), e.g. to wake the feed's reader."""
        self._after_commit.append(callback)

    def note_appended(self) -> None:
        """On the writer's thread, inside a transaction: an event was inserted (the dialect's
        `watch_appended_events` calls it). Only a flag: the group's news goes to the loop once,
        with its answers (`_hand_over`); a wake-up of the loop per event cost the unlock
        workload 16% of its requests."""
        self._appended = True

    async def run(self, function: Callable[[sqlite3.Connection], T]) -> T:
        if self._gone:
            raise DatabaseGone(f"{self._path} was deleted or replaced")
        if not self._thread.is_alive():
            raise WriterStopped("the writer thread has stopped")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Job(function, future))
        return await future

    async def close(self) -> None:
        """Finish every queued write, then stop the thread and close its connection."""
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        await asyncio.to_thread(self._checkpointer.close)

    def _serve(self) -> None:
        try:
            while True:
                first = self._queue.get()
                if first is _STOP:
                    return
                group, stop = self._drain([] if first is _WAKE else [first])
                if group:
                    self._run_group(group)
                elif self._gone and not self._wal_emptied:  # found out by /health
                    self._empty_wal()
                if stop:
                    return
        finally:
            self._connection.close()

    def _empty_wal(self) -> None:
        """Once the file is gone: empty our WAL if it is still at the path. Its pages belong to
        the file that is gone; left there, they would be replayed into whatever file is opened
        at the path next (a replacement copy after a kill -9: rows it never had, broken indexes).
        """
        self._wal_emptied = True
        if file_identity(self._path)[1] != self._identity[1]:
            return  # deleted too, or the replacement's own
        try:
            busy = self._connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        if busy:
            # A reader or the checkpoint thread was in the way (seen under load: 294 rows of the
            # gone file then appeared in the replacement after a kill -9). Nothing is written to
            # this WAL any more and its rows belong to a file no path reaches: cut it, so that
            # nothing of it can be replayed into the replacement.
            try:
                os.truncate(f"{self._path}-wal", 0)
            except OSError as error:
                log.error("could not empty the WAL of the replaced database: %s", error)

    def _drain(self, group: list[_Job]) -> tuple[list[_Job], bool]:
        while len(group) < MAX_GROUP:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return group, False
            if job is _STOP:
                return group, True
            if job is not _WAKE:
                group.append(job)
        return group, False

    def _run_group(self, group: Sequence[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        connection = self._connection
        try:
            if self._gone:  # found out before: nothing more is written to the unlinked file
                raise DatabaseGone(f"{self._path} was deleted or replaced")
            connection.execute("BEGIN IMMEDIATE")
            for job in group:
                outcomes.append(self._run_job(connection, job))
            connection.execute("COMMIT")
            self._checkpointer.poke()
            # Checked once a group (two stats, ~7 us), after the commit: a group committed to a
            # file that is no longer at the path is not acknowledged.
            if self.gone:
                raise DatabaseGone(f"{self._path} was deleted or replaced")
        except BaseException as error:
            # The commit (or the transaction around the group) failed, e.g. the disk is full:
            # nothing of the group is written, so every caller gets the error.
            with contextlib.suppress(sqlite3.Error):
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
            failure = self._answerable(error)
            outcomes = [(job, None, failure) for job in group]
        if self._gone and not self._wal_emptied:  # before any caller hears of it
            self._empty_wal()
        self._hand_over(outcomes)

    def _hand_over(self, outcomes: list[tuple[_Job, Any, BaseException | None]]) -> None:
        """On the writer's thread, after a group's commit (or its failure): one wake-up of the
        loop for the group's answers and its news. A group that failed may still say it
        appended: that costs one read that finds nothing."""
        appended, self._appended = self._appended, False
        self._loop.call_soon_threadsafe(self._deliver, outcomes, appended)

    def _answerable(self, error: BaseException) -> Exception:
        """The error a caller gets: a full disk told apart from other I/O errors, and anything
        that is not an Exception (which would end the thread, or the event loop) wrapped."""
        if not isinstance(error, Exception):
            log.error("a write raised %r; the writer goes on", error)
            failure = RuntimeError(f"a write raised {error!r}")
            failure.__cause__ = error
            return failure
        code = getattr(error, "sqlite_errorcode", None)
        if code is not None and code & 0xFF == sqlite3.SQLITE_IOERR and out_of_room(self._path):
            full = StorageFull(str(error))
            full.__cause__ = error
            return full
        return error

    def _run_job(
        self, connection: sqlite3.Connection, job: _Job
    ) -> tuple[_Job, Any, BaseException | None]:
        connection.execute("SAVEPOINT job")
        try:
            result = job.run(connection)
        except BaseException as error:
            try:
                connection.execute("ROLLBACK TO job")
                connection.execute("RELEASE job")
            except sqlite3.Error:
                # SQLite already rolled the whole transaction back (e.g. on SQLITE_FULL):
                # the group fails, and every caller gets this job's error.
                raise error from None
            return job, None, self._answerable(error)
        connection.execute("RELEASE job")
        return job, result, None

    def _deliver(
        self, outcomes: list[tuple[_Job, Any, BaseException | None]], appended: bool
    ) -> None:
        for job, result, error in outcomes:
            if job.future.done():  # the caller went away (cancelled); the write stands
                continue
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)
        for callback in self._after_commit:
            callback(appended)


class Readers:
    """Read-only connections beside the writer, in two kinds.

    Bounded reads (one row, a user's rows, a leaderboard page) run inline on the event loop:
    SQLite answers them in microseconds, while a hop to a connection thread costs ~100 µs and
    measured 4,900 against 7,800 GETs/s here. Reads whose size grows with the data (event pages,
    per-achievement stats, row counts) go through aiosqlite's thread, so they never stall the loop.

    The loop runs a bounded read as `await readers.read(store.function, *args)`, never by calling
    `fetch_one`/`fetch_all` itself: on PostgreSQL each is a network round trip, which `read`
    runs on a reader thread (sidecar/postgres/backend.py); here it runs inline.
    """

    def __init__(self, inline: sqlite3.Connection, threaded: aiosqlite.Connection) -> None:
        self._inline = inline
        self._threaded = threaded

    @classmethod
    async def open(cls, path: str) -> Readers:
        uri = f"{Path(path).resolve().as_uri()}?mode=ro"
        inline = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        configure(inline)
        threaded = await aiosqlite.connect(uri, uri=True, isolation_level=None)
        await threaded.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return cls(inline, threaded)

    async def read(
        self, read: Callable[Concatenate[Readers, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read(self, *args, **kwargs)`: a bounded read, inline (see the class)."""
        return read(self, *args, **kwargs)

    def fetch_one(self, sql: str, parameters: Parameters = ()) -> Any:
        return self._inline.execute(sql, parameters).fetchone()

    def fetch_all(self, sql: str, parameters: Parameters = ()) -> list[Any]:
        return self._inline.execute(sql, parameters).fetchall()

    def data_version(self) -> int:
        """Changes whenever another connection (the writer, another process) has committed."""
        return int(self._inline.execute("PRAGMA data_version").fetchone()[0])

    async def definitions_version(self) -> int:
        """Keys the definitions list: it changes with every commit that may have changed a
        definition, also one acknowledged by another process before the call (PostgreSQL:
        the LISTEN connection's round trip; here, data_version)."""
        return self.data_version()

    def watch(self, changed: Callable[[bool], None]) -> None:
        """Call `changed(True)` on the loop when another process may have appended events.
        Only the writer appends to a SQLite file, and it tells the feed itself (on_commit)."""

    async def fetch_bulk(self, sql: str, parameters: Parameters = ()) -> list[Any]:
        return list(await self._threaded.execute_fetchall(sql, parameters))

    async def close(self) -> None:
        self._inline.close()
        await self._threaded.close()
