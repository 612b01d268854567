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

The "changes" signal between sidecars: a transaction that appended events or changed
definitions sends one NOTIFY on CHANNEL as it commits (PostgreSQL delivers it at the commit, and
not at all on a rollback). Each sidecar's Listener keeps one LISTEN connection: an "events"
notification wakes its feed's reader, which reads by cursor; a "definitions" one moves the
version that keys its definitions list. While that connection is lost the feed polls, and the
list is never served from the cache; after reconnecting, everything is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import queue
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict

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
# A server that falls silent on an open connection (its host gone from the network, a failover:
# no RST, packets dropped) is given up on after about 10 s, not TCP's minutes: sent data left
# unacknowledged for TCP_USER_TIMEOUT_MS, or an idle connection (the LISTEN one, a reader
# waiting for its answer) whose keepalive probes, from 5 s of silence on, every 2 s, go
# unanswered (TCP_USER_TIMEOUT_MS bounds those too). The request waiting on it gets 503
# DATABASE_UNAVAILABLE, and the connection is replaced. A busy but reachable server answers
# probes from its kernel: a long query is not cut. libpq's names; the URL's own settings win.
TCP_USER_TIMEOUT_MS = 10_000
CONNECTION_DEFAULTS: dict[str, Any] = {
    "connect_timeout": CONNECT_SECONDS,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
}
# The counters' deltas (see schema.sql) are folded this often by each sidecar's writer, between
# groups (one sidecar at a time: the others' calls return at once).
FOLD_SECONDS = 5.0
# While the LISTEN connection is lost: how often the feed looks for events that other sidecars
# committed, and the Listener tries to connect again.
POLL_SECONDS = 1.0
# The "changes" signal (see the module's docstring), and what its payload names.
CHANNEL = "sidecar_changes"
EVENTS, DEFINITIONS = "events", "definitions"
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
        # Told by Connection.execute when it runs the store's event insert (other sidecars'
        # events reach the feed through the Listener).
        connection.appended = appended


POSTGRES = PostgresDialect()


_DEFINITIONS_WRITE = re.compile(r"\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+achievements\b", re.I)


@functools.lru_cache(maxsize=4096)
def _writes_definitions(sql: str) -> bool:
    return _DEFINITIONS_WRITE.match(sql) is not None


_NOTIFY = "SELECT pg_notify(%s, %s)"


class Connection:
    """A psycopg connection that runs the store's SQL (see `translate`), and notes what its
    transaction changes for the "changes" signal, sent at its COMMIT."""

    dialect: Dialect = POSTGRES

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.appended: Callable[[], None] | None = None
        self.changes: set[str] = set()  # of the transaction in progress: EVENTS, DEFINITIONS
        self._cursor = raw.cursor()

    def execute(self, sql: str, parameters: Parameters = ()) -> psycopg.Cursor[Any]:
        if sql is store.APPEND_EVENT:
            self.changes.add(EVENTS)
            if self.appended is not None:
                self.appended()
        elif _writes_definitions(sql):
            self.changes.add(DEFINITIONS)
        elif sql in ("COMMIT", "ROLLBACK"):
            changes, self.changes = self.changes, set()
            if sql == "COMMIT" and changes:
                # One a transaction, whatever it wrote; delivered when (if) it commits. (A job
                # rolled back to its savepoint may leave a kind: a wake-up that finds nothing.)
                # The writer commits in pipeline mode, so it rides in the COMMIT's round trip
                # (a round trip of its own measured 10-15% of the unlock workload's rate).
                self.raw.execute(_NOTIFY, (CHANNEL, ",".join(sorted(changes))))
        return self.raw.execute(translate(sql), parameters or None)

    def query(self, sql: str, parameters: Parameters = ()) -> psycopg.Cursor[Any]:
        """A read whose rows are taken at once, on the connection's one kept cursor (a new
        cursor a statement costs a reader thread ~10 us of its ~100)."""
        return self._cursor.execute(translate(sql), parameters or None)

    def close(self) -> None:
        self.raw.close()


def connection_options(url: str) -> dict[str, Any]:
    """CONNECTION_DEFAULTS that the URL does not set itself (psycopg's keywords override it)."""
    given = conninfo_to_dict(url)
    return {name: value for name, value in CONNECTION_DEFAULTS.items() if name not in given}


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
        raw = psycopg.connect(url, autocommit=True, **connection_options(url))
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(f"cannot reach {redacted(url)}: {_first_line(error)}") from error
    text.adapt(raw)  # U+0000 in names and descriptions (sidecar/postgres/text.py)
    return raw


def database_bytes(readers: db.Readers) -> int:
    """The database's size on disk, for /metrics."""
    return int(readers.fetch_one("SELECT pg_database_size(current_database())")[0])


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
                    first = self._queue.get(timeout=FOLD_SECONDS)
                except queue.Empty:
                    self._fold_when_due()
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


# --- the "changes" signal ------------------------------------------------------------------


class Listener:
    """One LISTEN connection per sidecar, on a thread of its own (see the module's docstring).

    `version()` keys the definitions list. It must never let the list be served older than a
    change that any sidecar acknowledged before the request began, and a notification arrives
    asynchronously. So each call makes one round trip on the LISTEN connection: a listening
    session gets every notification committed before its query began ahead of that query's
    answer (PostgreSQL delivers them between transactions, before the session goes idle), so
    the version the round trip returns counts every such change. Calls that wait together
    share one round trip. While not listening, every call returns a new version: no cache.
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._versions = itertools.count()  # next() is atomic: both threads draw from it
        self._version = next(self._versions)  # moved by "definitions", and by each reconnection
        self._listening = False
        self._syncs: queue.SimpleQueue[asyncio.Future[int]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = os.pipe()
        self._stopping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: Callable[[bool], None] | None = None
        self._thread = threading.Thread(target=self._serve, name="sidecar-listener", daemon=True)

    def start(self, changed: Callable[[bool], None]) -> None:
        """Call `changed(True)` on the loop when events may have been appended by any sidecar
        (an "events" notification, a poll while not listening, a reconnection)."""
        self._loop = asyncio.get_running_loop()
        self._changed = changed
        self._thread.start()

    async def version(self) -> int:
        if not self._listening or not self._thread.is_alive():
            return next(self._versions)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._syncs.put(future)
        os.write(self._wake_write, b"s")
        return await future

    async def close(self) -> None:
        self._stopping = True
        os.write(self._wake_write, b"x")
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)
        os.close(self._wake_read)
        os.close(self._wake_write)

    def _serve(self) -> None:
        connection: psycopg.Connection[Any] | None = None
        try:
            while not self._stopping:
                connection = self._turn(connection)
        finally:  # also if it failed: nobody waits for an answer, nothing more is kept
            self._listening = False
            if connection is not None:
                connection.close()
            self._answer_syncs(None)

    def _turn(self, connection: psycopg.Connection[Any] | None) -> psycopg.Connection[Any] | None:
        """Wait for a notification, a call of `version()` or POLL_SECONDS, and act on it;
        returns the connection to go on with (None: not listening)."""
        if connection is None:
            connection = self._listen()
        try:
            socket = None if connection is None else connection.fileno()
            watched = [self._wake_read] if socket is None else [self._wake_read, socket]
            readable, _, _ = select.select(watched, [], [], POLL_SECONDS)
            if self._wake_read in readable:
                os.read(self._wake_read, 4096)
            if connection is not None and socket in readable:
                connection.pgconn.consume_input()  # psycopg.OperationalError once lost
                while (notify := connection.pgconn.notifies()) is not None:
                    self._notified(notify.extra.decode())
            self._answer_syncs(connection)
        except (psycopg.Error, OSError) as error:
            log.warning(
                "the LISTEN connection was lost (%s): polling until it is back",
                _first_line(error),
            )
            self._listening = False
            self._version = next(self._versions)
            if connection is not None:
                with contextlib.suppress(psycopg.Error):
                    connection.close()
            connection = None
            self._answer_syncs(None)
        if connection is None:
            self._tell(True)  # the poll: the feed reads whatever is past its cursor
        return connection

    def _listen(self) -> psycopg.Connection[Any] | None:
        try:
            connection = psycopg.connect(
                self._url,
                autocommit=True,
                application_name="sidecar-listener",  # for operators, in pg_stat_activity
                **connection_options(self._url),
            )
            connection.add_notify_handler(lambda notify: self._notified(notify.payload))
            connection.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error:
            return None  # the server away: poll meanwhile, try again after POLL_SECONDS
        # Anything may have changed while not listening: the list is built again, and the
        # feed reads everything past its cursor.
        self._version = next(self._versions)
        self._listening = True
        self._tell(True)
        return connection

    def _notified(self, payload: str) -> None:
        kinds = payload.split(",")
        if DEFINITIONS in kinds:
            self._version = next(self._versions)
        if EVENTS in kinds:
            self._tell(True)

    def _answer_syncs(self, connection: psycopg.Connection[Any] | None) -> None:
        waiting: list[asyncio.Future[int]] = []
        while not self._syncs.empty():
            waiting.append(self._syncs.get_nowait())
        if not waiting or self._loop is None:
            return
        exact = False
        try:
            if connection is not None:
                connection.execute("SELECT")  # takes in every notification committed before it
                exact = True
        finally:  # also when the connection is lost meanwhile: then each gets a new version
            versions = [self._version if exact else next(self._versions) for _ in waiting]
            self._loop.call_soon_threadsafe(_settle_versions, waiting, versions)

    def _tell(self, appended: bool) -> None:
        if self._loop is not None and self._changed is not None:
            self._loop.call_soon_threadsafe(self._changed, appended)


def _settle_versions(futures: list[asyncio.Future[int]], versions: list[int]) -> None:
    for future, version in zip(futures, versions, strict=True):
        if not future.done():
            future.set_result(version)


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
        self._listener = Listener(url)

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

    def _connection(self) -> tuple[Connection, bool]:
        """This thread's connection, and whether it is the one kept from earlier reads."""
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is not None and not connection.raw.closed:
            return connection, True
        connection = connect(self._url)  # DatabaseUnavailable while the server is away
        self._local.connection = connection
        with self._lock:
            self._connections.append(connection)
        return connection, False

    def _run(self, sql: str, parameters: Parameters, all_: bool) -> Any:
        while True:
            connection, kept = self._connection()
            began = time.monotonic()
            try:
                cursor = connection.query(sql, parameters)
                return cursor.fetchall() if all_ else cursor.fetchone()
            except psycopg.OperationalError as error:
                if kept and connection.raw.closed and time.monotonic() - began < 1:
                    # Found closed at once: the server closed it while it sat unused (it
                    # restarted meanwhile). A read is safe to run again, on a new connection,
                    # before anyone is told. (A host gone silent took its timeouts: told.)
                    continue
                detail = f"{redacted(self._url)}: {_first_line(error)}"
                raise DatabaseUnavailable(detail) from error

    def fetch_one(self, sql: str, parameters: Parameters = ()) -> Any:
        return self._run(sql, parameters, all_=False)

    def fetch_all(self, sql: str, parameters: Parameters = ()) -> list[Any]:
        rows: list[Any] = self._run(sql, parameters, all_=True)
        return rows

    def data_version(self) -> int:
        """A new value each call: the per-user list answers are never kept on PostgreSQL. Kept
        exactly, they would need a NOTIFY from every write, and PostgreSQL serialises the
        commits of notifying transactions (one lock for the database), which only unlocks
        (already in line for the event counter) and definition changes can afford."""
        return next(self._version)

    def watch(self, changed: Callable[[bool], None]) -> None:
        self._listener.start(changed)

    async def definitions_version(self) -> int:
        return await self._listener.version()

    async def fetch_bulk(self, sql: str, parameters: Parameters = ()) -> list[Any]:
        return await self._off_loop(functools.partial(self.fetch_all, sql, parameters))

    async def close(self) -> None:
        await self._listener.close()
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
