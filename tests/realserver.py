"""Start `python -m sidecar serve` as a subprocess on a free port, the way a bot runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RealServer:
    def __init__(
        self, db_path: Path | str, port: int, env: dict[str, str], log_dir: Path | None = None
    ) -> None:
        self.db_path = db_path
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        # Beside the file; a PostgreSQL URL's server logs into log_dir.
        self.log_path = (
            log_dir / f"server.{port}.log" if log_dir else Path(db_path).with_suffix(f".{port}.log")
        )
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sidecar", "serve", "--db", str(db_path), "--port", str(port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server not healthy after {STARTUP_SECONDS}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash or an OOM kill."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """A clean stop; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.terminate()
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def start_server(
    db_path: Path | str, extra_env: dict[str, str] | None = None, log_dir: Path | None = None
) -> RealServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    env.update(extra_env or {})
    server = RealServer(db_path, free_port(), env, log_dir)
    try:
        server.wait_healthy()
    except Exception:
        server.stop()
        raise
    return server
