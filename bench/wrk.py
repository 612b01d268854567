"""Load with wrk (the Debian package): bench/lua/workload.lua makes the requests, report.lua
prints the totals and latency percentiles as one JSON line at the end."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.load import LoadResult
from bench.workloads import Traffic, key_prefix

SCRIPT = Path(__file__).resolve().parent / "lua" / "workload.lua"
MARK = "BENCH "
THREADS = 2
# Slow answers are measured as latency, not dropped as errors.
TIMEOUT_SECONDS = 30


def available() -> bool:
    return shutil.which("wrk") is not None


def version() -> str:
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).splitlines()[0].split(" Copyright")[0].strip()


def _arguments(traffic: Traffic, threads: int, body_file: str | None) -> list[str]:
    arguments = [
        f"method={traffic.method}",
        f"path={traffic.path}",
        f"users={traffic.users[0]}:{traffic.users[1]}",
        f"achievements={traffic.achievements[0]}:{traffic.achievements[1]}",
        f"threads={threads}",
    ]
    if body_file is not None:
        arguments.append(f"bodyfile={body_file}")
    if traffic.fresh is not None:
        arguments.append(f"fresh={traffic.fresh}")
    if traffic.keyed:
        arguments.append(f"keys={key_prefix()}")
    return arguments


class Wrk:
    name = "wrk"

    def run(self, base_url: str, traffic: Traffic, connections: int, seconds: float) -> LoadResult:
        threads = min(THREADS, connections)
        with tempfile.TemporaryDirectory(prefix="bench-wrk-") as scratch:
            body_file = None
            if traffic.body is not None:
                body_file = str(Path(scratch) / "body.json")
                Path(body_file).write_text(traffic.body, encoding="utf-8")
            command = [
                "wrk",
                f"--threads={threads}",
                f"--connections={connections}",
                f"--duration={max(1, round(seconds))}s",
                f"--timeout={TIMEOUT_SECONDS}s",
                f"--script={SCRIPT}",
                base_url,
                "--",
                *_arguments(traffic, threads, body_file),
            ]
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=seconds + 60, check=False
            )
        lines = [line for line in done.stdout.splitlines() if line.startswith(MARK)]
        if done.returncode != 0 or not lines:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
        data = json.loads(lines[-1][len(MARK) :])
        return LoadResult(
            seconds=data["seconds"],
            answered=data["answered"],
            ok=data["ok"],
            ok200=data["ok200"],
            in_flight=data["sent"] - data["answered"],
            p50_ms=data["p50_us"] / 1000,
            p99_ms=data["p99_us"] / 1000,
            failures={str(what): count for what, count in data["failures"].items()},
        )
