"""The PostgreSQL backend: connections that run the store's SQL, the writer, the readers.

The store's functions run unchanged on a `Connection` here: it rewrites SQLite's placeholders
(`?`, `:name`) into psycopg's (`%s`, `%(name)s`) and the few SQLite-only expressions the store
names (REWRITES), once per statement text, and carries the PostgreSQL dialect: the locks that
make each write correct beside other sidecar processes (see sidecar/dialect.py).

The Writer keeps the SQLite writer's shape: one thread, one connection, group commit (queued
jobs share a transaction). Its statements are pipelined (`Pipelined`): a job waits for the server
only where it reads a result. A group first runs without a SAVEPOINT a job; if one of its jobs
fails, the group is rolled back and run again with one SAVEPOINT a job, as on SQLite (and so are
the next CAUTIOUS_GROUPS groups). A job that PostgreSQL picks as a deadlock's victim (groups of
several processes may take rows in opposite orders) or that fails to serialise is run again,
alone, after its group commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import errors as pg_errors

from sidecar import db, store
from sidecar.db import MAX_GROUP, DatabaseError, DatabaseUnavailable, Parameters
from sidecar.dialect import Dialect
from sidecar.postgres import SCHEMA_LOCK, SCHEMA_VERSION, create_schema, redacted, text

log = logging.getLogger("sidecar")

T = TypeVar("T")
P = ParamSpec("P")

# A server that does not answer a connection attempt (a host gone from the network) is given
# up on after this long: the request gets 503 DATABASE_UNAVAILABLE.
CONNECT_SECONDS = 5
# The counters' deltas (see schema.sql) are folded this often by each sidecar's writer, between
# groups (one sidecar at a time: the others' calls return at once).
FOLD_SECONDS = 5.0
# Until LISTEN/NOTIFY: how often the feed looks for events that other sidecars committed.
POLL_SECONDS = 1.0
# Runs of a deadlock's victim alone, after its group, before its caller gets the error.
RETRIES = 3
# After a group run without savepoints failed on one of its jobs (and ran again with them), the
# groups of several jobs that take a SAVEPOINT a job at once: a run of failing writes (unknown
# achievements, replayed keys) then costs a wasted group now and then, not every time.
CAUTIOUS_GROUPS = 16


# --- statements -----------------------------------------------------------------------------


def _later(column: str) -> str:
    return (
        f"CASE WHEN :now > {column} THEN :now ELSE to_char("
        f"({column}::timestamptz + interval '1 millisecond') AT TIME ZONE 'UTC', "
        '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') END'
    )


# The store's SQLite-only expressions and statements, and what PostgreSQL runs instead.
REWRITES = {
    store.LATER: _later("updated_at"),
    store.LATER_IN_UPSERT: _later("user_achievements.updated_at"),
    store.LAST_EVENT_ID: "SELECT last_id FROM event_counter",
    store.COUNT_EVICTED: "INSERT INTO idempotency_usage (evicted) VALUES (?)",
    store.HEALTH: "SELECT version, current_setting('server_version') FROM schema_version",
}

# A string literal, a quoted name, a `::` cast, or a placeholder (`?` or `:name`), or a `%`.
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|\?|:([A-Za-z_]\w*)|%")


@functools.lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """The store's SQL (SQLite's placeholders) as psycopg runs it."""
    for sqlite, postgres in REWRITES.items():
        sql = sql.replace(sqlite, postgres)

    def token(match: re.Match[str]) -> str:
        text = match.group(0)
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        if match.group(1):
            return f"%({match.group(1)})s"
        return text

    return _TOKENS.sub(token, sql)


class PostgresDialect(Dialect):
    name = "postgresql"
    key_share = " FOR KEY SHARE"
    lock_creates_user = True

    def lock_user(self, connection: Any, user_id: int) -> None:
        # ON CONFLICT DO UPDATE locks the row it meets, also when its WHERE changes nothing.
        connection.execute(
            "INSERT INTO users (id, created_at) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET created_at = users.created_at WHERE false",
            (user_id, store.utc_now()),
        )

    def lock_existing_user(self, connection: Any, user_id: int) -> None:
        connection.execute("SELECT FROM users WHERE id = ? FOR NO KEY UPDATE", (user_id,))

    def claim(self, connection: Any, name: str) -> None:
        connection.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (name,))

    def watch_appended_events(self, connection: Any, appended: Callable[[], None]) -> None:
        # Told by Connection.execute when it runs the store's event insert; the Writer also
        # calls it every POLL_SECONDS, so streams see other sidecars' events that soon.
        connection.appended = appended


POSTGRES = PostgresDialect()


class Connection:
    """A psycopg connection that runs the store's SQL (see `translate`)."""

    dialect: Dialect = POSTGRES

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.appended: Callable[[], None] | None = None
        self._cursor = raw.cursor()

    def execute(self, sql: str, parameters: Parameters = ()) -> psycopg.Cursor[Any]:
        if sql is store.APPEND_EVENT and self.appended is not None:
            self.appended()
        return self.raw.execute(translate(sql), parameters or None)

    def query(self, sql: str, parameters: Parameters = ()) -> psycopg.Cursor[Any]:
        """A read whose rows are taken at once, on the connection's one kept cursor (a new
        cursor a statement costs a reader thread ~10 us of its ~100)."""
        return self._cursor.execute(translate(sql), parameters or None)

    def close(self) -> None:
        self.raw.close()


class _Pending:
    """A statement sent in pipeline mode: its result is waited for only when read."""

    __slots__ = ("_connection", "_cursor", "_number")

    def __init__(self, connection: Pipelined, cursor: psycopg.Cursor[Any], number: int) -> None:
        self._connection, self._cursor, self._number = connection, cursor, number

    def fetchone(self) -> Any:
        row = self._cursor.fetchone()  # one round trip: every statement sent up to this one
        self._connection.read_up_to(self._number)
        return row

    def fetchall(self) -> list[Any]:
        rows = self._cursor.fetchall()
        self._connection.read_up_to(self._number)
        return rows

    def __iter__(self) -> Any:
        return iter(self.fetchall())

    @property
    def rowcount(self) -> int:
        self._connection.sync()
        return self._cursor.rowcount


class Pipelined(Connection):
    """The writer's connection. Inside `pipelined()` a statement is sent without waiting for
    its answer; the round trip is paid when the store reads a result (which brings the answers
    of everything sent before it), or at `sync()`. An upsert then costs 2 round trips, not 6:
    the achievement's lookup (with whatever the writer sent before it), then the user's lock
    and the upsert. An error of a statement sent earlier is raised by the next read or sync
    (the server skips what follows it until the sync)."""

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        super().__init__(raw)
        self._pipeline: psycopg.Pipeline | None = None
        self._sent = 0
        self._read = 0

    @contextlib.contextmanager
    def pipelined(self) -> Iterator[None]:
        with self.raw.pipeline() as pipeline:
            self._pipeline = pipeline
            try:
                yield
            finally:
                self._pipeline = None
                self._read = self._sent

    def execute(self, sql: str, parameters: Parameters = ()) -> Any:
        cursor = super().execute(sql, parameters)
        if self._pipeline is None:
            return cursor
        self._sent += 1
        return _Pending(self, cursor, self._sent)

    def read_up_to(self, number: int) -> None:
        self._read = max(self._read, number)

    @property
    def unread(self) -> bool:
        """Statements were sent whose answers (or errors) have not come back yet."""
        return self._read < self._sent

    def sync(self) -> None:
        """Wait for the answers of every statement sent; raises the first error among them."""
        if self._pipeline is not None:
            self._read = self._sent
            self._pipeline.sync()

    def settle(self) -> None:
        """After a job's error: the rest of what it sent answered (skipped by the server after
        the error), so that the next statement runs. Raises only when the connection is lost."""
        try:
            self.sync()
        except psycopg.Error:
            if self.raw.closed or self.raw.broken:
                raise


def connect(url: str) -> Connection:
    """An autocommit connection: transactions are begun explicitly, as on SQLite."""
    return Connection(_connect(url))


def _connect(url: str) -> psycopg.Connection[Any]:
    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_SECONDS)
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(f"cannot reach {redacted(url)}: {_first_line(error)}") from error
    text.adapt(raw)  # U+0000 in names and descriptions (sidecar/postgres/text.py)
    return raw


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


# --- schema ---------------------------------------------------------------------------------


def prepare(url: str) -> None:
    """Create the schema in an empty database, or check the version of the one there; refuses
    (DatabaseError) a database that holds other tables or comes from a newer release. Several
    sidecars starting at once on an empty database: one creates, the others wait and check."""
    try:
        connection = connect(url)
    except DatabaseUnavailable as error:
        raise DatabaseError(str(error)) from error
    try:
        with connection.raw.transaction():
            connection.execute(SCHEMA_LOCK)
            tables = connection.execute(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchone()
            has_version = connection.execute(
                "SELECT to_regclass('schema_version') IS NOT NULL"
            ).fetchone()
            if has_version is not None and has_version[0]:
                row = connection.execute("SELECT version FROM schema_version").fetchone()
                version = row[0] if row else 0
                if version > SCHEMA_VERSION:
                    raise DatabaseError(
                        f"{redacted(url)} has schema version {version}; "
                        f"this release knows up to {SCHEMA_VERSION}"
                    )
                return
            if tables is not None and tables[0]:
                raise DatabaseError(f"{redacted(url)} holds tables that are not this service's")
            create_schema(connection)
    except psycopg.Error as error:
        raise DatabaseError(f"{redacted(url)}: {_first_line(error)}") from error
    finally:
        connection.close()


# --- the writer -----------------------------------------------------------------------------


_STOP = object()
_RETRIED = (pg_errors.DeadlockDetected, pg_errors.SerializationFailure)


class Writer(db.Writer):
    """The SQLite Writer on PostgreSQL: its queue, run, on_commit, alive and delivery of the
    answers; its own connection, groups, retries and close. No file: never `gone`."""

    def __init__(self, url: str) -> None:  # not super().__init__(): that opens a SQLite file
        self._url = url
        self._pg: Pipelined | None = Pipelined(_connect(url))
        self._path = redacted(url)  # for the parent's messages
        self._gone = False
        self._watcher: Callable[[], None] | None = None  # kept across reconnections
        self._folded_at = time.monotonic()
        self._cautious = 0  # groups still to run with a SAVEPOINT a job (CAUTIOUS_GROUPS)
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._after_commit: list[Callable[[bool], None]] = []
        self._appended = False
        self._thread = threading.Thread(target=self._serve, name="sidecar-writer", daemon=True)
        self._thread.start()

    @property
    def gone(self) -> bool:
        return False  # a database server has no file to be deleted under us

    async def close(self) -> None:
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)

    def _serve(self) -> None:
        try:
            while True:
                try:
                    first = self._queue.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    self._fold_when_due()
                    self._poll()
                    continue
                self._fold_when_due()
                if first is _STOP:
                    return
                group = [first]
                stop = False
                while len(group) < MAX_GROUP:
                    try:
                        job = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if job is _STOP:
                        stop = True
                        break
                    group.append(job)
                self._group(group)
                if stop:
                    return
        finally:
            if self._pg is not None:
                self._pg.close()

    def _fold_when_due(self) -> None:
        if time.monotonic() - self._folded_at < FOLD_SECONDS or self._pg is None:
            return
        self._folded_at = time.monotonic()
        try:
            self._pg.execute("SELECT compact_counters()")  # autocommit: its own transaction
        except psycopg.Error as error:  # the server away: the next fold tries again
            log.warning("folding the counters failed: %s", _first_line(error))

    def _poll(self) -> None:
        """No write for POLL_SECONDS: tell the feed to look for other sidecars' events."""
        if self._pg is not None and self._pg.appended is not None:
            self._loop.call_soon_threadsafe(self._deliver, [], True)

    def _group(self, group: Sequence[db._Job]) -> None:
        outcomes = self._transaction(group)
        for _ in range(RETRIES):
            again = [job for job, _, error in outcomes if isinstance(error, _RETRIED)]
            if not again:
                break
            settled = [outcome for outcome in outcomes if not isinstance(outcome[2], _RETRIED)]
            outcomes = settled + list(
                itertools.chain.from_iterable(self._transaction([job]) for job in again)
            )
        self._hand_over(outcomes)

    def _transaction(
        self, group: Sequence[db._Job]
    ) -> list[tuple[db._Job, Any, BaseException | None]]:
        try:
            if self._pg is None or self._pg.raw.closed:
                watcher = self._pg.appended if self._pg is not None else self._watcher
                self._pg = Pipelined(_connect(self._url))
                self._pg.appended = watcher
            connection = self._pg
            if len(group) == 1 or not self._cautious:
                with connection.pipelined():
                    connection.execute("BEGIN")
                    optimistic = self._without_savepoints(connection, group)
                if optimistic is not None:
                    return optimistic
                self._cautious = CAUTIOUS_GROUPS
            else:
                self._cautious -= 1
            with connection.pipelined():
                connection.execute("BEGIN")
                outcomes = [self._one(connection, job) for job in group]
                connection.execute("COMMIT")
                connection.sync()
            return outcomes
        except BaseException as error:
            failure = self._answerable(error)
            if self._pg is not None and not self._pg.raw.closed:
                with contextlib.suppress(psycopg.Error):
                    self._pg.execute("ROLLBACK")
            return [(job, None, failure) for job in group]

    def _answerable(self, error: BaseException) -> Exception:
        if _lost(error):
            # The server went away (restarted, unreachable): reconnect at the next group.
            if self._pg is not None:
                self._watcher = self._pg.appended
                with contextlib.suppress(psycopg.Error):
                    self._pg.close()
            self._pg = None
            return DatabaseUnavailable(f"{redacted(self._url)}: {_first_line(error)}")
        if isinstance(error, Exception):
            return error
        failure = RuntimeError(f"a write raised {error!r}")
        failure.__cause__ = error
        return failure

    def _without_savepoints(
        self, connection: Pipelined, group: Sequence[db._Job]
    ) -> list[tuple[db._Job, Any, BaseException | None]] | None:
        """The group in one transaction without a SAVEPOINT a job (two statements a job less,
        and no subtransactions on the server). A job's error rolls the whole group back: a group
        of one answers with it; a larger one returns None, to be run again with savepoints.
        So no job waits for the answers it left unread (an unlock's event insert): an error
        among them, raised by a later job's read or by the COMMIT's sync (the server skips the
        COMMIT after it), is the group's, and the run with savepoints tells whose it is."""
        results = []
        try:
            for job in group:
                results.append(job.run(connection))
            connection.execute("COMMIT")
            connection.sync()
        except Exception as error:
            if _lost(error):
                raise  # the group fails
            connection.settle()
            connection.execute("ROLLBACK")  # a warning only, if the COMMIT ran and failed
            connection.sync()
            return [(group[0], None, error)] if len(group) == 1 else None
        return [(job, result, None) for job, result in zip(group, results, strict=True)]

    def _one(
        self, connection: Pipelined, job: db._Job
    ) -> tuple[db._Job, Any, BaseException | None]:
        connection.execute("SAVEPOINT job")
        try:
            result = self._run(connection, job)
        except Exception as error:
            if _lost(error):
                raise  # the group fails
            connection.settle()
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            connection.sync()
            return job, None, error
        connection.execute("RELEASE job")  # answered with the next job's first read
        return job, result, None

    @staticmethod
    def _run(connection: Pipelined, job: db._Job) -> Any:
        """The job, and the answers of all it sent: its errors are its own, not the next's."""
        result = job.run(connection)
        if connection.unread:
            connection.sync()
        return result


def _lost(error: BaseException) -> bool:
    """Whether a write's error means the connection is lost (rather than a failed statement)."""
    return isinstance(error, psycopg.OperationalError) and not isinstance(
        error, (*_RETRIED, pg_errors.PipelineAborted)
    )


# --- the readers ----------------------------------------------------------------------------

# Reads at once, each on its own thread and connection (per sidecar).
READER_THREADS = 4


class Readers(db.Readers):
    """The SQLite Readers' interface on a pool of reader threads, each with its own autocommit
    connection. Every read, bounded or bulk, runs on a reader thread: a round trip to the server
    (and a reconnection, up to CONNECT_SECONDS, while it is away) never stalls the event loop,
    and a slow read holds one thread, not the others. Each read sees every transaction committed
    before it, by any sidecar."""

    def __init__(self, url: str) -> None:  # no super().__init__(): it holds SQLite connections
        self._url = url
        # The reads to run, each with the future it answers (None: a thread's end).
        self._reads: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
        self._reads = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(target=self._serve, name=f"sidecar-reader-{n}", daemon=True)
            for n in range(READER_THREADS)
        ]
        for thread in self._threads:
            thread.start()
        self._local = threading.local()  # each reader thread's connection
        self._connections: list[Connection] = []  # every one, to close them at the end
        self._lock = threading.Lock()
        self._version = itertools.count()

    @classmethod
    async def open(cls, path: str) -> Readers:
        readers = cls(path)
        await readers._off_loop(functools.partial(readers.fetch_one, "SELECT 1"))  # reachable?
        return readers

    async def read(
        self, read: Callable[Concatenate[db.Readers, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read(self, *args, **kwargs)` on a reader thread."""
        return await self._off_loop(functools.partial(read, self, *args, **kwargs))

    async def _off_loop(self, call: Callable[[], T]) -> T:
        # A queue and the loop's own future: run_in_executor's concurrent future, chained to an
        # asyncio one, cost the loop and the reader thread ~15 us more a read.
        future: asyncio.Future[T] = self._loop.create_future()
        self._reads.put((call, future))
        return await future

    def _serve(self) -> None:
        while (read := self._reads.get()) is not None:
            call, future = read
            try:
                result = call()
            except BaseException as error:  # the caller's to handle, as run_in_executor gives it
                self._loop.call_soon_threadsafe(_settle, future, None, error)
            else:
                self._loop.call_soon_threadsafe(_settle, future, result, None)

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None or connection.raw.closed:  # the first, or lost (server away)
            connection = connect(self._url)  # DatabaseUnavailable while it is still away
            self._local.connection = connection
            with self._lock:
                self._connections.append(connection)
        return connection

    def _run(self, sql: str, parameters: Parameters, all_: bool) -> Any:
        try:
            cursor = self._connection().query(sql, parameters)
            return cursor.fetchall() if all_ else cursor.fetchone()
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(f"{redacted(self._url)}: {_first_line(error)}") from error

    def fetch_one(self, sql: str, parameters: Parameters = ()) -> Any:
        return self._run(sql, parameters, all_=False)

    def fetch_all(self, sql: str, parameters: Parameters = ()) -> list[Any]:
        rows: list[Any] = self._run(sql, parameters, all_=True)
        return rows

    def data_version(self) -> int:
        """Other sidecars' commits are not signalled here yet: a new value each call, so no
        answer is ever served from the cache."""
        return next(self._version)

    async def fetch_bulk(self, sql: str, parameters: Parameters = ()) -> list[Any]:
        return await self._off_loop(functools.partial(self.fetch_all, sql, parameters))

    async def close(self) -> None:
        for _ in self._threads:
            self._reads.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller went away (cancelled)
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
