"""The PostgreSQL backend: connections that run the store's SQL, the writer, the readers.

The store's functions run unchanged on a `Connection` here: it rewrites SQLite's placeholders
(`?`, `:name`) into psycopg's (`%s`, `%(name)s`) and the few SQLite-only expressions the store
names (REWRITES), once per statement text, and carries the PostgreSQL dialect: the locks that
make each write correct beside other sidecar processes (see sidecar/dialect.py).

The Writer keeps the SQLite writer's shape: one thread, one connection, group commit (queued
jobs share a transaction, one SAVEPOINT each). A job that PostgreSQL picks as a deadlock's
victim (groups of several processes may take rows in opposite orders) or that fails to
serialise is run again, alone, after its group commits.

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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
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


@functools.lru_cache(maxsize=8)
def _notify_and_commit(payload: str) -> str:
    # The payload is ours (EVENTS, DEFINITIONS joined): no quote to escape. Two statements in
    # one text: psycopg sends a text without parameters as one simple query.
    return f"NOTIFY {CHANNEL}, '{payload}'; COMMIT"


class Connection:
    """A psycopg connection that runs the store's SQL (see `translate`), and notes what its
    transaction changes for the "changes" signal, sent at its COMMIT."""

    dialect: Dialect = POSTGRES

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        self.appended: Callable[[], None] | None = None
        self.changes: set[str] = set()  # of the transaction in progress: EVENTS, DEFINITIONS

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
                # Sent with the COMMIT, in one round trip: measured 10-15% of the unlock
                # workload's rate as a statement of its own.
                sql = _notify_and_commit(",".join(sorted(changes)))
        return self.raw.execute(translate(sql), parameters or None)

    def close(self) -> None:
        self.raw.close()


def connection_options(url: str) -> dict[str, Any]:
    """CONNECTION_DEFAULTS that the URL does not set itself (psycopg's keywords override it)."""
    given = conninfo_to_dict(url)
    return {name: value for name, value in CONNECTION_DEFAULTS.items() if name not in given}


def connect(url: str) -> Connection:
    """An autocommit connection: transactions are begun explicitly, as on SQLite."""
    try:
        raw = psycopg.connect(url, autocommit=True, **connection_options(url))
    except psycopg.OperationalError as error:
        raise DatabaseUnavailable(f"cannot reach {redacted(url)}: {_first_line(error)}") from error
    text.adapt(raw)  # U+0000 in names and descriptions (sidecar/postgres/text.py)
    return Connection(raw)


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
        self._pg: Connection | None = connect(url)
        self._path = redacted(url)  # for the parent's messages
        self._gone = False
        self._watcher: Callable[[], None] | None = None  # kept across reconnections
        self._folded_at = time.monotonic()
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
                self._pg = connect(self._url)
                self._pg.appended = watcher
            connection = self._pg
            connection.execute("BEGIN")
            outcomes = [self._one(connection, job) for job in group]
            connection.execute("COMMIT")
            return outcomes
        except BaseException as error:
            failure = self._answerable(error)
            if self._pg is not None and not self._pg.raw.closed:
                with contextlib.suppress(psycopg.Error):
                    self._pg.execute("ROLLBACK")
            return [(job, None, failure) for job in group]

    def _answerable(self, error: BaseException) -> Exception:
        if isinstance(error, psycopg.OperationalError) and not isinstance(error, _RETRIED):
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

    def _one(
        self, connection: Connection, job: db._Job
    ) -> tuple[db._Job, Any, BaseException | None]:
        connection.execute("SAVEPOINT job")
        try:
            result = job.run(connection)
        except Exception as error:
            if isinstance(error, psycopg.OperationalError) and not isinstance(error, _RETRIED):
                raise  # the connection is lost: the group fails
            connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            return job, None, error
        connection.execute("RELEASE job")
        return job, result, None


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
            self._loop.call_soon_threadsafe(_settle, waiting, versions)

    def _tell(self, appended: bool) -> None:
        if self._loop is not None and self._changed is not None:
            self._loop.call_soon_threadsafe(self._changed, appended)


def _settle(futures: list[asyncio.Future[int]], versions: list[int]) -> None:
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
        self._pool = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="sidecar-reader")
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
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

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
            cursor = self._connection().execute(sql, parameters)
            return cursor.fetchall() if all_ else cursor.fetchone()
        except psycopg.OperationalError as error:
            raise DatabaseUnavailable(f"{redacted(self._url)}: {_first_line(error)}") from error

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
        await asyncio.to_thread(self._pool.shutdown)
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()
