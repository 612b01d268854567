"""python -m bench [--quick] [--write-readme] [--server uvicorn|granian|both]

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
from pathlib import Path

from bench import datafile, machine, report, wrk
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
    ScaleFiles,
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
        "--quick", action="store_true", help="a smoke run: short runs, no scale files (< 60 s)"
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
    return " ".join(parts)


def _scale_files(workdir: Path) -> ScaleFiles:
    """The small file by the schema's triggers, the big one in bulk; the bulk way is checked
    against the triggers on a small file first, and the big file by `sidecar check`."""
    started = time.perf_counter()
    small, twin, big = workdir / "small.db", workdir / "small-bulk.db", workdir / "big.db"
    datafile.generate(small, SMALL_USERS, by_triggers=True)
    datafile.generate(twin, SMALL_USERS)
    differing = datafile.differing_tables(small, twin)
    if differing:
        # The schema keeps a counter the bulk way does not compute (yet): correct but slower.
        print(
            f"bulk-made tables differ from the triggers' ({', '.join(differing)}): "
            "the big file is written with the triggers on (slower)"
        )
    datafile.generate(big, BIG_USERS, by_triggers=bool(differing))
    print(f"generated {BIG_USERS * 10:,} rows in {time.perf_counter() - started:.0f} s; checking")
    subprocess.run(
        [sys.executable, "-m", "sidecar", "check", "--db", str(big)], cwd=ROOT, check=True
    )
    return ScaleFiles(small, SMALL_USERS, big, BIG_USERS)


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


def _measure(suite: Suite, servers: list[str], quick: bool) -> list[report.Row]:
    files = None if quick else _scale_files(suite.workdir)
    rows: list[report.Row] = []
    for server in servers:
        rows += suite.service(server)
        if files is not None:
            rows += suite.scale(server, files)
        rows.append(suite.memory_row(server))
    return rows


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
        seconds,
        rounds,
        workdir,
        retries=0 if args.quick else RETRIES,
        idle_streams=QUICK_IDLE_STREAMS if args.quick else IDLE_STREAMS,
    )
    try:
        rows = _measure(suite, servers, args.quick)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    description = machine.describe(wrk.version() if isinstance(loader, wrk.Wrk) else loader.name)
    print(f"\nMachine: {description}")
    print(report.table(rows))
    print(f"\nother processes took up to {suite.foreign_cpu:.0%} of the CPUs during a run")
    print(f"finished in {time.perf_counter() - started:.0f} s")
    if args.write_readme:
        date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
        text = report.section(rows, description, date, _command(args), _method(loader, suite))
        report.write_readme(ROOT / "README.md", text)
        print("README.md: performance section replaced")
    for problem in suite.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    return 1 if suite.problems else 0
