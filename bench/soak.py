"""python -m bench.soak [--minutes N] [--concurrency C]: a long mixed load on the real server.

Starts `python -m sidecar serve` on a fresh file, seeds 20 definitions, then keeps C concurrent
clients busy (an asyncio httpx client, each sending its next request when the last is answered)
with a mix of upsert, apply (with an Idempotency-Key), unlock, get, list and events reads over a
bounded set of rows, for N minutes (default 10). The server's resident memory (VmRSS) is sampled
every 10 s, the size of the `-wal` file on disk every 0.5 s. At the end: requests, errors, RSS
at minute 2 and at the end, the growth between them, the WAL's peak and final size, the
idempotency store's size as /metrics gives it (keys, bytes, keys evicted early), and the file's
integrity check after a clean stop.

Exit status 0 only when every request got a 2xx answer, RSS grew by less than 10% from minute 2
to the end, the server stopped cleanly and the file is intact; 1 otherwise; 2 when it cannot run.
For runs shorter than 4 minutes the baseline is taken at half the run instead of minute 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
PROGRESS = "/users/achievements/progress"
DEFINITIONS = "/users/achievements/definitions"

ACHIEVEMENTS = 20
USERS = 2_000  # x 20 achievements: at most 40,000 rows, so the data stops growing early
SAMPLE_SECONDS = 10.0
WAL_SAMPLE_SECONDS = 0.5  # a stat() each: the WAL grows and is reset between two RSS samples
# The idempotency store's gauges in /metrics, by what the report calls them.
STORE_METRICS = {
    "keys": "sidecar_idempotency_keys",
    "bytes": "sidecar_idempotency_bytes",
    "evicted": "sidecar_idempotency_evicted_keys",
}
BASELINE_MINUTES = 2.0
MAX_GROWTH = 0.10
STARTUP_SECONDS = 30.0
STOP_SECONDS = 30.0
REQUEST_TIMEOUT = 10.0
# Weights of the mix: writes and reads about half and half.
MIX = {"upsert": 20, "apply": 20, "unlock": 10, "get": 25, "list": 15, "events": 10}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def mib(value: int) -> str:
    return f"{value / 1024 / 1024:.1f} MiB"


@dataclass
class Tally:
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    samples: list[str] = field(default_factory=list)  # the first few errors, for the report

    def error(self, kind: str, what: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < 10:
            self.samples.append(f"{kind}: {what}")


class Load:
    """The request mix; every call returns the response (2xx or not) or raises."""

    def __init__(self, client: httpx.AsyncClient, rng: random.Random) -> None:
        self.client = client
        self.rng = rng
        self.cursor = 0

    def _row(self) -> tuple[int, int]:
        return self.rng.randint(1, USERS), self.rng.randint(1, ACHIEVEMENTS)

    async def upsert(self) -> httpx.Response:
        user, achievement = self._row()
        metadata = {"current": self.rng.randint(0, 100), "lastActivityDate": "2026-11-24"}
        body = {"userId": user, "achievementId": achievement, "metadata": metadata}
        return await self.client.post(PROGRESS, json=body)

    async def apply(self) -> httpx.Response:
        user, achievement = self._row()
        body = {
            "userId": user,
            "achievementId": achievement,
            "ops": [
                {"op": "inc", "path": "stats.count", "value": 1},
                {"op": "max", "path": "stats.best", "value": self.rng.randint(0, 50)},
            ],
            "unlockWhen": [{"path": "stats.count", "gte": 25}],
        }
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        return await self.client.post(f"{PROGRESS}/apply", json=body, headers=headers)

    async def unlock(self) -> httpx.Response:
        user, achievement = self._row()
        body = {"userId": user, "achievementId": achievement}
        return await self.client.put(f"{PROGRESS}/unlock", json=body)

    async def get(self) -> httpx.Response:
        user, achievement = self._row()
        params = {"userId": user, "achievementId": achievement}
        return await self.client.get(PROGRESS, params=params)

    async def list(self) -> httpx.Response:
        user, _ = self._row()
        return await self.client.get(f"{PROGRESS}/list", params={"userId": user})

    async def events(self) -> httpx.Response:
        # A feed reader: follows the cursor, so each call reads what is new.
        response = await self.client.get(
            "/users/achievements/events", params={"after": self.cursor, "limit": 100}
        )
        if response.status_code == 200 and (events := response.json()):
            self.cursor = max(self.cursor, events[-1]["id"])
        return response


async def worker(load: Load, deadline: float, tally: Tally) -> None:
    kinds = list(MIX)
    weights = list(MIX.values())
    calls: dict[str, Callable[[], Awaitable[httpx.Response]]] = {
        kind: getattr(load, kind) for kind in kinds
    }
    while time.monotonic() < deadline:
        kind = load.rng.choices(kinds, weights)[0]
        started = time.perf_counter()
        tally.requests[kind] += 1
        try:
            response = await calls[kind]()
        except httpx.HTTPError as error:
            tally.error(kind, f"{type(error).__name__}: {error}")
            continue
        finally:
            tally.seconds[kind] += time.perf_counter() - started
        if not 200 <= response.status_code < 300:
            tally.error(kind, f"{response.status_code} {response.text[:200]}")


async def sampler(
    pid: int, start: float, deadline: float, tally: Tally, samples: list[tuple[float, int]]
) -> None:
    while True:
        now = time.monotonic()
        rss = rss_bytes(pid)
        if rss is not None:
            samples.append((now - start, rss))
        requests, errors = sum(tally.requests.values()), sum(tally.errors.values())
        print(
            f"  {now - start:6.0f} s  requests {requests:>9,}  errors {errors}  "
            f"rss {mib(rss) if rss else '?'}",
            flush=True,
        )
        if now >= deadline:
            return
        await asyncio.sleep(min(SAMPLE_SECONDS, max(0.0, deadline - now)))


def file_bytes(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # no WAL (yet, or after a checkpoint that removed it)
        return 0


async def wal_sampler(wal: Path, deadline: float, peak: list[int]) -> None:
    """The largest size of the `-wal` file seen, in peak[0]."""
    while True:
        peak[0] = max(peak[0], file_bytes(wal))
        now = time.monotonic()
        if now >= deadline:
            return
        await asyncio.sleep(min(WAL_SAMPLE_SECONDS, deadline - now))


async def store_size(client: httpx.AsyncClient) -> dict[str, float]:
    """The idempotency store's gauges from /metrics (absent ones left out)."""
    response = await client.get("/metrics")
    response.raise_for_status()
    values = dict(
        line.split(" ", 1) for line in response.text.splitlines() if line.startswith("sidecar_")
    )
    return {label: float(values[name]) for label, name in STORE_METRICS.items() if name in values}


@dataclass
class Files:
    """What the run measured of the file and the idempotency store."""

    wal_peak: int = 0
    wal_end: int = 0
    store: dict[str, float] = field(default_factory=dict)


async def seed(client: httpx.AsyncClient) -> None:
    for number in range(1, ACHIEVEMENTS + 1):
        body = {"name": f"Soak {number}", "key": f"soak-{number}"}
        response = await client.post(DEFINITIONS, json=body)
        if response.status_code != 201:
            raise RuntimeError(f"seeding failed: {response.status_code} {response.text}")


async def run_load(
    base_url: str, pid: int, seconds: float, concurrency: int, tally: Tally, files: Files, wal: Path
) -> list[tuple[float, int]]:
    # One client (one keep-alive connection) per worker: a shared httpx pool costs more CPU per
    # request as the concurrency grows, and the load generator shares the machine's cores.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT)
        for _ in range(concurrency)
    ]
    samples: list[tuple[float, int]] = []
    try:
        await seed(clients[0])
        start = time.monotonic()
        deadline = start + seconds
        workers = [
            worker(Load(client, random.Random(number)), deadline, tally)
            for number, client in enumerate(clients, 1)
        ]
        peak = [0]
        await asyncio.gather(
            sampler(pid, start, deadline, tally, samples),
            wal_sampler(wal, deadline, peak),
            *workers,
        )
        files.wal_peak, files.wal_end = peak[0], file_bytes(wal)
        files.store = await store_size(clients[0])
    finally:
        for client in clients:
            await client.aclose()
    return samples


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is installed (the server's extra), else asyncio's own loop."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def start_server(db_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    command = [sys.executable, "-m", "sidecar", "serve", "--db", str(db_path), "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1.0).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"the server was not healthy after {STARTUP_SECONDS} s: {log.read_text()}")


def stop_server(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9


def integrity(db_path: Path) -> str:
    connection = sqlite3.connect(db_path)
    try:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        problems += [str(row) for row in connection.execute("PRAGMA foreign_key_check")]
    finally:
        connection.close()
    return "ok" if problems == ["ok"] else "; ".join(problems)


def at(samples: list[tuple[float, int]], second: float) -> tuple[float, int]:
    """The sample taken closest to `second` into the run."""
    return min(samples, key=lambda sample: abs(sample[0] - second))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the load (10)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="concurrent clients, each one request at a time"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database and server log")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.minutes <= 0 or args.concurrency < 1:
        print("--minutes must be positive and --concurrency at least 1")
        return 2
    seconds = args.minutes * 60
    baseline = BASELINE_MINUTES * 60 if seconds >= 2 * BASELINE_MINUTES * 60 else seconds / 2
    workdir = Path(tempfile.mkdtemp(prefix="sidecar-soak-"))
    db_path, log = workdir / "soak.db", workdir / "server.log"
    port = free_port()
    try:
        process = start_server(db_path, port, log)
    except RuntimeError as error:
        print(error)
        return 2
    base_url = f"http://127.0.0.1:{port}"
    print(
        f"soak: {args.minutes:g} min, {args.concurrency} concurrent clients, "
        f"server pid {process.pid} on {db_path}",
        flush=True,
    )
    tally, files = Tally(), Files()
    wal = db_path.with_name(db_path.name + "-wal")
    try:
        samples = run(run_load(base_url, process.pid, seconds, args.concurrency, tally, files, wal))
    finally:
        status = stop_server(process)
    check = integrity(db_path)

    requests, errors = sum(tally.requests.values()), sum(tally.errors.values())
    print(f"requests: {requests:,} ({requests / seconds:,.0f}/s)")
    for kind in MIX:
        count = tally.requests[kind]
        mean = tally.seconds[kind] / count * 1000 if count else 0.0
        print(f"  {kind:<7} {count:>9,}  errors {tally.errors[kind]:>5}  mean {mean:6.2f} ms")
    print(f"errors: {errors}")
    for sample in tally.samples:
        print(f"  {sample}")
    base_second, base_rss = at(samples, baseline)
    end_second, end_rss = samples[-1]
    growth = (end_rss - base_rss) / base_rss
    print(f"rss at minute {base_second / 60:.1f}: {mib(base_rss)}")
    print(f"rss at the end (minute {end_second / 60:.1f}): {mib(end_rss)}")
    print(f"rss growth: {growth * 100:+.1f}%")
    print(f"wal peak: {mib(files.wal_peak)}; at the end of the load: {mib(files.wal_end)}")
    keys, stored = int(files.store.get("keys", 0)), int(files.store.get("bytes", 0))
    per_key = f" ({stored / keys:,.0f} B a key)" if keys else ""
    print(
        f"idempotency store: {keys:,} keys, {mib(stored)}{per_key}, "
        f"{int(files.store.get('evicted', 0)):,} evicted before their TTL"
    )
    print(f"server exit status: {status}")
    print(f"integrity_check, foreign_key_check: {check}")
    failed = errors > 0 or growth >= MAX_GROWTH or status != 0 or check != "ok"
    if args.keep or failed:
        print(f"files kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print("FAIL" if failed else "PASS")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
