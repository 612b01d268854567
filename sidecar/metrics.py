"""Prometheus metrics: requests by route and status, latency, database size, rows per table.

The database's gauges are read at each scrape: on SQLite the file's and its WAL's sizes; on
PostgreSQL pg_database_size (no WAL gauge there: the server's WAL is the whole cluster's, shared
with every other database on it, and its own exporter reports it). While a PostgreSQL server is
away, /metrics still answers (the requests' counts, the 503s among them, are what an operator
looks at then): sidecar_database_up is 0 and the database's gauges keep their last values.
"""

from __future__ import annotations

import os
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from sidecar import postgres, store
from sidecar.clientlog import client_log
from sidecar.db import DatabaseUnavailable, Readers

# Sub-millisecond buckets: most answers take well under a millisecond of server time.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """One registry per app, so several apps in one process (tests) do not share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "sidecar_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency = Histogram(
            "sidecar_http_request_duration_seconds",
            "Time from request to the start of the answer, by route template.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.database_up = Gauge(
            "sidecar_database_up",
            "1 when the database answered this scrape's reads; 0 when its server was away "
            "(PostgreSQL): the database's gauges then keep their last values.",
            registry=self.registry,
        )
        self.database_bytes = Gauge(
            "sidecar_database_bytes",
            "Size of the database: the SQLite file, or pg_database_size on PostgreSQL.",
            registry=self.registry,
        )
        # Registered at the first scrape of a SQLite database (see the module's docstring).
        self.wal_bytes: Gauge | None = None
        self.table_rows = Gauge(
            "sidecar_table_rows", "Rows per table.", ("table",), registry=self.registry
        )
        # From the idempotency_usage row.
        self.idempotency_keys = Gauge(
            "sidecar_idempotency_keys", "Stored idempotent answers.", registry=self.registry
        )
        self.idempotency_bytes = Gauge(
            "sidecar_idempotency_bytes",
            "Bytes of the stored idempotent answers (about what they take in the file), "
            "held within SIDECAR_IDEMPOTENCY_BUDGET_MB.",
            registry=self.registry,
        )
        self.idempotency_evicted = Gauge(
            "sidecar_idempotency_evicted_keys",
            "Idempotency keys purged before their TTL to keep within the budget (ever).",
            registry=self.registry,
        )

        # Labelled children, looked up once: `labels()` costs more than the increment itself.
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        histogram = self._histograms.get(route)
        if histogram is None:
            histogram = self._histograms[route] = self.latency.labels(route)
        histogram.observe(seconds)
        key = (method, route, str(status))
        counter = self._counters.get(key)
        if counter is None:
            counter = self._counters[key] = self.requests.labels(*key)
        counter.inc()

    async def exposition(self, readers: Readers, database: str) -> bytes:
        """The text of GET /metrics; the database's gauges read through `readers` (on
        PostgreSQL: on its reader threads, off the event loop)."""
        try:
            rows = await store.table_rows(readers)
            keys, size, evicted = await readers.read(store.idempotency_usage)
            if postgres.is_url(database):
                from sidecar.postgres import backend  # psycopg: only with the postgres extra

                database_bytes = await readers.read(backend.database_bytes)
            else:
                database_bytes = _size(database)
                if self.wal_bytes is None:
                    self.wal_bytes = Gauge(
                        "sidecar_wal_bytes",
                        "Size of the SQLite write-ahead log.",
                        registry=self.registry,
                    )
                self.wal_bytes.set(_size(f"{database}-wal"))
        except DatabaseUnavailable:
            self.database_up.set(0)
        else:
            self.database_up.set(1)
            self.database_bytes.set(database_bytes)
            for table, count in rows.items():
                self.table_rows.labels(table).set(count)
            self.idempotency_keys.set(keys)
            self.idempotency_bytes.set(size)
            self.idempotency_evicted.set(evicted)
        return generate_latest(self.registry)


def _size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class ClientDisconnected(BaseException):
    """The client hung up before its request was complete.

    Raised from `receive` in place of the disconnect message, and a BaseException (as
    CancelledError is) so that no handler on the way turns it into an answer: there is no one left
    to answer, and it is the client's abort, not a server error (no 500, no traceback).
    """


class Instrument:
    """ASGI wrapper counting every answer (unknown paths as route "unmatched"); a request whose
    client went away first is counted as 499 (nginx's "client closed request")."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        started = time.perf_counter()
        answered = False
        complete = False

        async def observe(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                route = scope.get("path_template") or "unmatched"
                elapsed = time.perf_counter() - started
                self.metrics.observe(method, route, message["status"], elapsed)
            await send(message)

        async def whole_request() -> ReceiveMessage:
            nonlocal complete
            message = await receive()
            if message["type"] == "http.request":
                complete = not message.get("more_body", False)
            elif not complete:  # a disconnect after the request is a stream's end, not an abort
                raise ClientDisconnected
            return message

        try:
            await self.app(scope, whole_request, observe)
        except ClientDisconnected:
            client = scope.get("client") or ("?", 0)
            client_log.note(
                "cut requests",
                "request from %s:%s ended before its body was complete (%s %s): "
                "the client hung up, or it timed out",
                *client,
                method,
                scope["path"],
            )
        finally:
            if not answered:  # the client went away first: nginx's 499, "client closed request"
                route = scope.get("path_template") or "unmatched"
                self.metrics.observe(method, route, 499, time.perf_counter() - started)
