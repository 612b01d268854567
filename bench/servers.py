"""The processes under test: the service and the bare app, on uvicorn or granian.

The service on uvicorn is exactly how it is run: `python -m sidecar serve`. On granian it is the
same app built by bench/granian_service.py. The bare app runs with the same server and the same
settings as the service it is compared to.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.client import healthy

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("uvicorn", "granian")
STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0


def installed(server: str) -> bool:
    return importlib.util.find_spec(server) is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def descendants(pid: int) -> list[int]:
    """pid and every process below it (granian runs the app in a worker process)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The second field is "(comm)" and may hold spaces: the parent pid follows the last ")".
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def _peak_rss(pid: int) -> int:
    """VmHWM (the kernel's peak resident set) of one process, in bytes."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Process:
    def __init__(self, name: str, command: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.port = int(env["BENCH_PORT"])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log
        self._log = log.open("wb")
        self.started = time.perf_counter()
        self.startup_seconds: float | None = None  # from the start to the first healthy answer
        self.popen = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_healthy(self) -> float:
        """Seconds from the process start to the first 200 from /health."""
        deadline = self.started + STARTUP_SECONDS
        while time.perf_counter() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log_path.read_text()[-2000:]}")
            if healthy(self.base_url):
                self.startup_seconds = time.perf_counter() - self.started
                return self.startup_seconds
            time.sleep(0.005)
        raise RuntimeError(f"{self.name} not healthy after {STARTUP_SECONDS} s")

    def peak_rss(self) -> int:
        """Peak resident memory in bytes, summed over the process and its children (the sum of
        their peaks: an upper bound of the peak of the whole)."""
        return sum(_peak_rss(pid) for pid in descendants(self.popen.pid))

    def stop(self) -> int:
        """SIGTERM, as a container stop does; the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            status = self.popen.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            status = self.popen.wait()
        self._log.close()
        return status


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIDECAR_", "GRANIAN_"))}
    env["BENCH_PORT"] = str(free_port())
    env.update(extra)
    return env


def _granian(target: str, port: str, factory: bool) -> list[str]:
    command = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"]
    command += ["--port", port, "--workers", "1", "--log-level", "warning"]
    return [*command, "--factory", target] if factory else [*command, target]


def start_service(
    server: str,
    db_path: Path | str,
    log_dir: Path,
    extra_env: dict[str, str] | None = None,
    name: str = "service",
) -> Process:
    env = _environment(extra_env or {})
    port = env["BENCH_PORT"]
    if server == "uvicorn":
        command = [sys.executable, "-m", "sidecar", "serve", "--db", str(db_path), "--port", port]
    else:
        env["SIDECAR_DB"] = str(db_path)
        command = _granian("bench.granian_service:create_app", port, factory=True)
    log = log_dir / f"service-{server}-{port}.log"
    return Process(f"{name} on {server}", command, env, log)


def start_bare(server: str, log_dir: Path, extra_env: dict[str, str] | None = None) -> Process:
    env = _environment(extra_env or {})
    port = env["BENCH_PORT"]
    if server == "uvicorn":
        # The service's own uvicorn settings (sidecar/server.py): no access log, 5 s keep-alive.
        command = [sys.executable, "-m", "uvicorn", "bench.bare:app", "--host", "127.0.0.1"]
        command += ["--port", port, "--no-access-log", "--timeout-keep-alive", "5"]
        command += ["--log-level", "warning"]
    else:
        command = _granian("bench.bare:app", port, factory=False)
    return Process(f"bare on {server}", command, env, log_dir / f"bare-{server}-{port}.log")
