"""The measurements: every workload against the service and against the bare ceiling of the
same kind, then the same reads on a big and on a small file (or database).

The service runs on SQLite, on PostgreSQL, or on both (bench/backends.py): with both, each
workload's rounds take the bare app and the two services in turn, so that the PostgreSQL figure
is compared with the bare one and with SQLite's from the same rounds.

A comparison alternates its two sides in rounds (reference, subject, reference, subject...),
so that a change in the machine's speed during the run (it is shared) hits both sides alike.

Correctness is checked along the way: any answer that is not a 2xx fails its workload, and the
hot-row `inc` count must come out exact. Those failures are collected in `Suite.problems`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import workloads as w
from bench.backends import LABELS, POSTGRES, SQLITE, Backend
from bench.client import call_ok
from bench.load import Loader, LoadResult, combined
from bench.noise import CpuWatch
from bench.report import Row, milliseconds, per_second, ratio
from bench.seed import seed
from bench.servers import Process, start_bare, start_service
from bench.streams import IdleStreams

CONNECTIONS = 32
BATCH_CONNECTIONS = 4
# Between runs: let the last answers drain.
SETTLE_SECONDS = 0.5
# A process's first run is slower (allocator arenas, caches): each one is loaded this long first.
WARM_UP_SECONDS = 1.0
STARTS = 3  # start-to-healthy is the median of this many starts
# A run during which other processes took more than this share of the CPUs is repeated, after
# waiting for a quiet moment, up to RETRIES times; the last one stands (and says so).
MAX_FOREIGN_CPU = 0.10
RETRIES = 3
QUIET_WAIT_SECONDS = 120.0

P99_LIMIT_MS = 10.0
LEADERBOARD_P99_MS = 5.0
# Of the small file's figure, in a single run: the rest is cold B-tree pages of the big file's
# 77 MiB index, and runs of the same code move by up to 0.11 (issue 17).
SCALE_MINIMUM = 0.75
STARTUP_LIMIT_SECONDS = 1.0
RSS_LIMIT_BYTES = 100_000_000
BATCH_ITEMS_PER_SECOND = 40_000
FULL_MINIMUM = 0.50
# PostgreSQL (issue 17): every single-operation workload, of the bare figure; and the upsert.
POSTGRES_MINIMUM = 0.50
POSTGRES_UPSERT_PER_SECOND = 5_000
# Idle event streams open beside the writers: they must cost the writers (almost) nothing.
IDLE_STREAMS, QUICK_IDLE_STREAMS = 1000, 100
IDLE_STREAMS_MINIMUM = 0.90


@dataclass(frozen=True)
class Compared:
    name: str
    traffic: w.Traffic
    bare: w.Traffic
    minimum: float  # of the bare figure
    # Also run on PostgreSQL by --quick (CI's smoke run: a plain write, the exact count, a keyed
    # write with its events, a read), which keeps PostgreSQL's share of it under 30 s.
    smoke: bool = False


COMPARED = (
    Compared("upsert, spread over 10,000 rows", w.UPSERT_SPREAD, w.BARE_POST, 0.75, smoke=True),
    Compared("upsert, one hot row", w.UPSERT_HOT, w.BARE_POST, 0.70),
    Compared("unlock, half new, half repeated", w.UNLOCK_MIX, w.BARE_POST, 0.70),
    Compared("apply `inc`, one hot row", w.APPLY_HOT, w.BARE_POST, 0.65, smoke=True),
    # What the clients send: a fresh Idempotency-Key on every write, claimed and its answer
    # stored in the write's own transaction.
    Compared("upsert, spread, keyed", w.UPSERT_SPREAD_KEYED, w.BARE_POST_KEYED, 0.75),
    Compared(
        "unlock, half new, half repeated, keyed",
        w.UNLOCK_MIX_KEYED,
        w.BARE_POST_KEYED,
        0.75,
        smoke=True,
    ),
    Compared("apply `inc`, spread, keyed", w.APPLY_SPREAD_KEYED, w.BARE_POST_KEYED, 0.75),
    Compared("get progress", w.GET_PROGRESS, w.BARE_GET, 0.75),
    Compared("list, a user with 20 rows", w.LIST_PROGRESS, w.BARE_LIST, 0.75, smoke=True),
)


@dataclass(frozen=True)
class ScaleRead:
    name: str
    traffic: Callable[[int], w.Traffic]  # from the number of users in the file
    p99_limit_ms: float | None = None


SCALE_READS = (
    ScaleRead("get progress", w.scale_get),
    ScaleRead("list, a user with 10 rows", w.scale_list),
    ScaleRead("leaderboard top 10", lambda _: w.LEADERBOARD_TOP, LEADERBOARD_P99_MS),
    ScaleRead("one user's leaderboard rank", w.leaderboard_rank, LEADERBOARD_P99_MS),
    ScaleRead("stats", lambda _: w.STATS, LEADERBOARD_P99_MS),
)


@dataclass(frozen=True)
class ScaleData:
    """A small and a big database of one backend (what --db takes: a path, or a URL)."""

    database: str  # SQLITE or POSTGRES
    small: str
    small_users: int
    big: str
    big_users: int
    warm: Callable[[], None]  # brings the big one into the OS page cache

    @property
    def kind(self) -> str:
        return "file" if self.database == SQLITE else "database"


def _nothing() -> None:
    pass


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a process, what it is sent, what runs around each of its runs."""

    process: Process
    traffic: w.Traffic
    before: Callable[[], None] = _nothing
    after: Callable[[], None] = _nothing


def _failure_note(result: LoadResult) -> str:
    return f"{result.failed:,} failed: {result.failure_text()}" if result.failed else ""


def _noise_note(*results: LoadResult) -> str:
    worst = max(result.foreign_cpu for result in results)
    if worst <= MAX_FOREIGN_CPU:
        return ""
    return f"measured while other processes took {worst:.0%} of the CPUs"


def _notes(*notes: str) -> str:
    return "; ".join(note for note in notes if note)


def _share(value: float, reference: float) -> float:
    return value / reference if reference else 0.0


@dataclass
class Suite:
    loader: Loader
    seconds: float  # per comparison side, split over the rounds
    rounds: int
    workdir: Path
    retries: int = RETRIES  # of a run disturbed by other processes
    idle_streams: int = IDLE_STREAMS  # open beside the writers in the idle-streams row
    smoke: bool = False  # --quick: PostgreSQL runs only the Compared rows marked `smoke`
    say: Callable[[str], None] = print
    problems: list[str] = field(default_factory=list)
    # By database (SQLITE, POSTGRES), then by service process.
    peak_rss: dict[str, dict[str, int]] = field(default_factory=dict)
    foreign_cpu: float = 0.0  # the largest share of the CPUs other processes took in a run
    _warm: set[int] = field(default_factory=set)  # pids of the processes already warmed up
    # By workload: PostgreSQL's rate over SQLite's in the same rounds, and whether it reads.
    postgres_costs: dict[str, tuple[float, bool]] = field(default_factory=dict)
    # By pid: hot-row incs answered 200 or in flight, over every run that sent them.
    _incs_sent: dict[int, int] = field(default_factory=dict)

    # --- plumbing ------------------------------------------------------------------------

    def _load(
        self, process: Process, traffic: w.Traffic, connections: int, seconds: float
    ) -> LoadResult:
        result = self.loader.run(process.base_url, traffic, connections, seconds)
        if traffic is w.APPLY_HOT:
            pid = process.popen.pid
            self._incs_sent[pid] = self._incs_sent.get(pid, 0) + result.ok200 + result.in_flight
        return result

    def _run(
        self, process: Process, traffic: w.Traffic, connections: int, seconds: float
    ) -> LoadResult:
        if process.popen.pid not in self._warm:
            self._warm.add(process.popen.pid)
            self._load(process, traffic, connections, WARM_UP_SECONDS)
        for attempt in range(self.retries + 1):
            time.sleep(SETTLE_SECONDS)
            with CpuWatch() as watch:
                result = self._load(process, traffic, connections, seconds)
            if watch.foreign <= MAX_FOREIGN_CPU or attempt == self.retries:
                break
            self.say(f"  (other processes took {watch.foreign:.0%} of the CPUs: run again)")
            _wait_for_quiet()
        self.foreign_cpu = max(self.foreign_cpu, watch.foreign)
        return result.with_foreign_cpu(watch.foreign)

    def _alternate(self, sides: Sequence[Side]) -> list[LoadResult]:
        """Each side's result, the sum of `rounds` runs, the sides taken in turn in each."""
        seconds = self.seconds / self.rounds
        runs: list[list[LoadResult]] = [[] for _ in sides]
        for _ in range(self.rounds):
            for side, results in zip(sides, runs, strict=True):
                side.before()
                results.append(self._run(side.process, side.traffic, CONNECTIONS, seconds))
                side.after()
        return [combined(results) for results in runs]

    def _pair(self, name: str, reference: Side, subject: Side) -> tuple[LoadResult, LoadResult]:
        """(reference, subject), each the sum of `rounds` alternating runs."""
        before, after = self._alternate([reference, subject])
        self._say(name, after, before)
        return before, after

    def _say(self, name: str, result: LoadResult, reference: LoadResult | None = None) -> None:
        line = f"  {name}: {result.rate:,.0f} req/s, p99 {result.p99_ms:.1f} ms"
        if reference is not None:
            line += f" / {reference.rate:,.0f} = {_share(result.rate, reference.rate):.2f}"
        line += f"; other processes took {result.foreign_cpu:.0%} of the CPUs"
        self.say(line + (f"; FAILED {result.failure_text()}" if result.failed else ""))

    def _check(self, server: str, name: str, result: LoadResult) -> None:
        if result.failed:
            self.problems.append(f"{name} on {server}: {result.failure_text()}")

    @contextmanager
    def _running(self, process: Process, database: str | None = SQLITE) -> Iterator[Process]:
        """Wait until healthy; at the end note a service's peak memory (by its `database`;
        None: not a service), then stop it."""
        try:
            process.wait_healthy()
            yield process
        finally:
            if database is not None:
                peaks = self.peak_rss.setdefault(database, {})
                peaks[process.name] = max(peaks.get(process.name, 0), process.peak_rss())
            status = process.stop()
            if database is not None and status != 0:
                self.say(f"  {process.name} exited with status {status} at SIGTERM")

    # --- the service against the bare ceiling ---------------------------------------------

    def service(self, server: str, backends: Sequence[Backend]) -> list[Row]:
        names = " and ".join(LABELS[backend.name] for backend in backends)
        self.say(f"== {server}: service on {names} / bare app")
        logs = self.workdir
        with ExitStack() as stack:
            services: dict[str, Process] = {}
            for backend in backends:
                database = stack.enter_context(backend.database(server))
                process = start_service(server, database, logs, name=_service(backend.name))
                services[backend.name] = stack.enter_context(self._running(process, backend.name))
                answers = seed(process.base_url)
            # The bare app sends the answers of the last service seeded (every backend's are
            # the same bytes).
            captured = {"BENCH_BARE_GET": answers.get, "BENCH_BARE_LIST": answers.list}
            for variable, data in captured.items():
                (self.workdir / variable).write_bytes(data)
            env = {variable: str(self.workdir / variable) for variable in captured}
            bare = stack.enter_context(self._running(start_bare(server, logs, env), None))
            rows = [row for c in COMPARED for row in self._compared(server, c, services, bare)]
            if SQLITE in services:
                rows.append(self._batch(server, services[SQLITE]))
                rows.append(self._full(server, bare))
        if SQLITE in services:
            rows.append(self._idle_streams(server))
        return rows

    def _compared(
        self, server: str, compared: Compared, services: dict[str, Process], bare: Process
    ) -> list[Row]:
        """One workload on every service, the bare app and the services taken in turn."""
        if self.smoke and not compared.smoke:
            services = {database: p for database, p in services.items() if database == SQLITE}
            if not services:
                return []
        counted = compared.traffic is w.APPLY_HOT
        before = {
            database: (_settled_count(p.base_url), self._incs_sent.get(p.popen.pid, 0))
            for database, p in services.items()
            if counted
        }
        sides = [Side(bare, compared.bare), *(Side(p, compared.traffic) for p in services.values())]
        ceiling, *results = self._alternate(sides)
        by_database = dict(zip(services, results, strict=True))
        rows = []
        for database, result in by_database.items():
            name = f"{compared.name} ({LABELS[database]})"
            self._say(name, result, ceiling)
            self._check(server, name, result)
            count_note = ""
            exact = True
            if counted:
                exact, count_note = self._count_exact(services[database], before[database])
            if database == SQLITE:
                rows += self._sqlite_rows(server, compared, ceiling, result, exact, count_note)
            else:
                sqlite = by_database.get(SQLITE)
                rows.append(
                    self._postgres_row(server, compared, ceiling, result, sqlite, exact, count_note)
                )
        return rows

    def _sqlite_rows(
        self,
        server: str,
        compared: Compared,
        ceiling: LoadResult,
        result: LoadResult,
        exact: bool,
        count_note: str,
    ) -> list[Row]:
        met = _share(result.rate, ceiling.rate) >= compared.minimum and not result.failed
        rows = [
            Row(
                compared.name,
                server,
                per_second(result.rate),
                ratio(result.rate, ceiling.rate),
                milliseconds(result.p99_ms),
                f"≥ {compared.minimum:.2f} x bare",
                met and exact,
                _notes(count_note, _failure_note(result), _noise_note(ceiling, result)),
            )
        ]
        if compared.traffic is w.UPSERT_SPREAD:
            rows.append(
                Row(
                    "p99 latency of upsert (the spread run)",
                    server,
                    "—",
                    p99=milliseconds(result.p99_ms),
                    target=f"≤ {P99_LIMIT_MS:.0f} ms",
                    met=result.p99_ms <= P99_LIMIT_MS and not result.failed,
                    note=_noise_note(result),
                )
            )
        return rows

    def _postgres_row(
        self,
        server: str,
        compared: Compared,
        ceiling: LoadResult,
        result: LoadResult,
        sqlite: LoadResult | None,
        exact: bool,
        count_note: str,
    ) -> Row:
        """Against the bare figure, and SQLite's from the same rounds when it was measured."""
        met = _share(result.rate, ceiling.rate) >= POSTGRES_MINIMUM and not result.failed
        target = f"≥ {POSTGRES_MINIMUM:.2f} x bare"
        if compared.traffic is w.UPSERT_SPREAD:
            target += f", ≥ {POSTGRES_UPSERT_PER_SECOND:,} req/s"
            met = met and result.rate >= POSTGRES_UPSERT_PER_SECOND
        shares = ratio(result.rate, ceiling.rate)
        if sqlite is not None:
            shares += f"; {ratio(result.rate, sqlite.rate, 'SQLite')}"
            reads = compared.traffic.method == "GET"
            self.postgres_costs[compared.name] = (_share(result.rate, sqlite.rate), reads)
        noise = _noise_note(ceiling, result, *([sqlite] if sqlite else []))
        return Row(
            compared.name,
            server,
            per_second(result.rate),
            shares,
            milliseconds(result.p99_ms),
            target,
            met and exact,
            _notes(count_note, _failure_note(result), noise),
            LABELS[POSTGRES],
        )

    def _count_exact(self, service: Process, before: tuple[int, int]) -> tuple[bool, str]:
        """Every 200 (and every request still in flight when the load stopped, which the
        server finishes) must be in the count: no lost update, no double one."""
        counted = _settled_count(service.base_url) - before[0]
        sent = self._incs_sent.get(service.popen.pid, 0) - before[1]
        exact = counted == sent
        text = f"count +{counted:,} for {sent:,} answered 200 or in flight at the stop"
        if not exact:
            self.problems.append(f"apply inc on {service.name}: {text}")
        return exact, f"{'exact' if exact else 'NOT EXACT'}: {text}"

    def _batch(self, server: str, service: Process) -> Row:
        name = f"batch of {w.BATCH_ITEMS} `apply` items ({BATCH_CONNECTIONS} connections)"
        result = self._run(service, w.BATCH_APPLY, BATCH_CONNECTIONS, self.seconds)
        self._say(name, result)
        self._check(server, name, result)
        items = result.ok * w.BATCH_ITEMS / result.seconds if result.seconds else 0.0
        return Row(
            name,
            server,
            per_second(items, "items/s"),
            p99=milliseconds(result.p99_ms),
            target=f"≥ {BATCH_ITEMS_PER_SECOND:,} items/s",
            met=items >= BATCH_ITEMS_PER_SECOND and not result.failed,
            note=_notes(_failure_note(result), _noise_note(result)),
        )

    def _full(self, server: str, bare: Process) -> Row:
        name = "upsert, spread, `synchronous=FULL`"
        path = self.workdir / f"{server}-full.db"
        env = {"SIDECAR_SYNCHRONOUS": "FULL"}
        with self._running(
            start_service(server, path, self.workdir, env, "service (synchronous=FULL)")
        ) as full:
            seed(full.base_url)
            ceiling, result = self._pair(name, Side(bare, w.BARE_POST), Side(full, w.UPSERT_SPREAD))
        self._check(server, name, result)
        return Row(
            name,
            server,
            per_second(result.rate),
            ratio(result.rate, ceiling.rate),
            milliseconds(result.p99_ms),
            f"≥ {FULL_MINIMUM:.2f} x bare",
            _share(result.rate, ceiling.rate) >= FULL_MINIMUM and not result.failed,
            _notes(_failure_note(result), _noise_note(ceiling, result)),
        )

    def _idle_streams(self, server: str) -> Row:
        """Apply throughput with many idle event streams open against none, on one service,
        the two alternating. A commit without events must wake no stream."""
        count = self.idle_streams
        name = f"apply, spread, with {count:,} idle event streams open"
        # Room for the streams of one round while the last round's are still being closed.
        env = {
            "SIDECAR_MAX_STREAMS": str(2 * count + 100),
            "SIDECAR_MAX_CONNECTIONS": str(4 * count + 200),
            "GRANIAN_BACKPRESSURE": str(4 * count + 200),
        }
        path = self.workdir / f"{server}-streams.db"
        with self._running(
            start_service(server, path, self.workdir, env, "service (idle streams)")
        ) as service:
            seed(service.base_url)
            with IdleStreams(service.port) as streams:
                reference, result = self._pair(
                    name,
                    Side(service, w.APPLY_SPREAD),
                    Side(service, w.APPLY_SPREAD, lambda: streams.open(count), streams.close),
                )
        self._check(server, name, result)
        self._check(server, "apply, spread, no streams open", reference)
        share = _share(result.rate, reference.rate)
        return Row(
            name,
            server,
            per_second(result.rate),
            ratio(result.rate, reference.rate, "no streams"),
            milliseconds(result.p99_ms),
            f"≥ {IDLE_STREAMS_MINIMUM:.2f} x no streams",
            share >= IDLE_STREAMS_MINIMUM and not (result.failed or reference.failed),
            _notes(_failure_note(result), _failure_note(reference), _noise_note(reference, result)),
        )

    # --- scale ----------------------------------------------------------------------------

    def scale(self, server: str, data: ScaleData) -> list[Row]:
        kind, label = data.kind, LABELS[data.database]
        self.say(f"== {server}: scale on {label}, big {kind} / small {kind}")
        small_rows, big_rows = f"{data.small_users * 10:,}-row", f"{data.big_users * 10:,}-row"
        small_start = self._startup(server, data, data.small, f"{small_rows} {kind}")
        big_start = self._startup(server, data, data.big, f"{big_rows} {kind}")
        rows = [
            Row(
                f"start to healthy, {big_rows} {kind}",
                server,
                f"{big_start:.2f} s",
                target=f"≤ {STARTUP_LIMIT_SECONDS:.0f} s",
                met=big_start <= STARTUP_LIMIT_SECONDS,
                note=f"median of {STARTS}; {small_rows} {kind}: {small_start:.2f} s",
                database=label,
            )
        ]
        name = _service(data.database)
        small = start_service(server, data.small, self.workdir, name=f"{name} ({small_rows})")
        with self._running(small, data.database):
            big = start_service(server, data.big, self.workdir, name=f"{name} ({big_rows})")
            with self._running(big, data.database):
                for read in SCALE_READS:
                    rows.append(self._scale_row(server, read, data, small, big))
        return rows

    def _scale_row(
        self, server: str, read: ScaleRead, data: ScaleData, small: Process, big: Process
    ) -> Row:
        label = LABELS[data.database]
        name = f"scale: {read.name}, {data.big_users * 10:,}-row {data.kind}"
        reference, result = self._pair(
            f"{name} ({label})",
            Side(small, read.traffic(data.small_users)),
            Side(big, read.traffic(data.big_users), before=data.warm),
        )
        self._check(server, f"{name} ({label})", result)
        self._check(server, f"{read.name} on the small {data.kind} ({label})", reference)
        target = f"≥ {SCALE_MINIMUM:.2f} x small {data.kind}"
        met = _share(result.rate, reference.rate) >= SCALE_MINIMUM
        met = met and not (result.failed or reference.failed)
        if read.p99_limit_ms is not None:
            target += f", p99 ≤ {read.p99_limit_ms:.0f} ms"
            met = met and result.p99_ms <= read.p99_limit_ms
        return Row(
            name,
            server,
            per_second(result.rate),
            ratio(result.rate, reference.rate, f"{data.small_users * 10:,}-row {data.kind}"),
            milliseconds(result.p99_ms),
            target,
            met,
            _notes(
                # Beside the big one's: whether a tail comes with the size or with the host.
                f"p99 on the small {data.kind}: {reference.p99_ms:.1f} ms",
                _failure_note(result),
                _failure_note(reference),
                _noise_note(reference, result),
            ),
            label,
        )

    def _startup(self, server: str, data: ScaleData, database: str, label: str) -> float:
        """Median seconds from process start to the first healthy answer."""
        times = []
        for _ in range(STARTS):
            process = start_service(server, database, self.workdir, name=_service(data.database))
            with self._running(process, data.database) as p:
                times.append(p.startup_seconds or 0.0)
        self.say(f"  start to healthy, {label}: " + ", ".join(f"{t:.2f} s" for t in times))
        return statistics.median(times)

    # --- memory ---------------------------------------------------------------------------

    def memory_rows(self, server: str) -> list[Row]:
        """One row a database: the largest peak among its service processes."""
        rows = []
        for database, peaks in self.peak_rss.items():
            largest = max(peaks, key=peaks.__getitem__)
            rows.append(
                Row(
                    "peak RSS of the service",
                    server,
                    f"{peaks[largest] / 1e6:.0f} MB",
                    target=f"≤ {RSS_LIMIT_BYTES / 1e6:.0f} MB",
                    met=peaks[largest] <= RSS_LIMIT_BYTES,
                    note=f"VmHWM; largest of {len(peaks)} service processes: {largest}",
                    database=LABELS[database],
                )
            )
        self.peak_rss.clear()
        return rows


def _service(database: str) -> str:
    """A service process's name: SQLite's as it always was, PostgreSQL's saying so."""
    return "service" if database == SQLITE else f"service ({LABELS[database]})"


def _wait_for_quiet() -> None:
    """Until other processes leave the CPUs alone for a few seconds (or QUIET_WAIT_SECONDS)."""
    deadline = time.monotonic() + QUIET_WAIT_SECONDS
    while time.monotonic() < deadline:
        with CpuWatch() as watch:
            time.sleep(3)
        if watch.foreign <= MAX_FOREIGN_CPU / 2:
            return


def _settled_count(base_url: str) -> int:
    """The hot row's count once it stops moving (the last requests of a run may still land)."""
    path = f"{w.PROGRESS}?userId={w.APPLY_USER}&achievementId=1"
    previous = -1
    for _ in range(100):
        row = json.loads(call_ok(base_url, "GET", path))
        count = int(row["metadata"].get("count", 0)) if row else 0
        if count == previous:
            return count
        previous = count
        time.sleep(0.2)
    return previous
