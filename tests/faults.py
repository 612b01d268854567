"""Real faults for the reliability tests: a server under a file-size limit, a process without
root's power to ignore file permissions, and the command line run as a subprocess."""

from __future__ import annotations

import ctypes
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.realserver import RealServer, free_port

# A `python -c` wrapper: the soft RLIMIT_FSIZE low, the hard one left where it was (so it can be
# raised again while the server runs), SIGXFSZ ignored (a write past the limit then fails with
# EFBIG instead of killing the process), then the ordinary `serve` command.
_LIMITED_SERVE = """
import resource, signal, sys
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, hard))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from sidecar.cli import main
sys.exit(main(["serve", "--db", {db!r}, "--port", "{port}"]))
"""


class LimitedServer(RealServer):
    """`sidecar serve` whose files may not grow past `limit` bytes (RLIMIT_FSIZE)."""

    def __init__(self, db_path: Path, limit: int, env: dict[str, str]) -> None:
        self.db_path = db_path
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = db_path.with_suffix(f".{self.port}.log")
        self._log = self.log_path.open("wb")
        code = _LIMITED_SERVE.format(limit=limit, db=str(db_path), port=self.port)
        self.process = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def file_size_limit(self) -> tuple[int, int]:
        return resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE)

    def give_space_back(self) -> None:
        """Raise the running server's soft limit to its hard one: space returns, no restart."""
        _, hard = self.file_size_limit()
        resource.prlimit(self.process.pid, resource.RLIMIT_FSIZE, (hard, hard))


def start_limited_server(db_path: Path, limit: int) -> LimitedServer:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    server = LimitedServer(db_path, limit, env)
    try:
        server.wait_healthy()
    except Exception:
        server.stop()
        raise
    return server


# Capabilities that let root read and write files whatever their mode (linux/capability.h).
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2
_CAP_FOWNER = 3
_PR_CAPBSET_DROP = 24


def _drop_file_capabilities() -> None:  # runs in the child between fork and exec
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def honour_file_modes() -> Callable[[], None] | None:
    """A preexec_fn under which file modes bind the child as they bind any user.

    As root, chmod 0o444 stops nobody: drop CAP_DAC_OVERRIDE (and friends) from the child's
    bounding set, so that after exec it is root without the power to ignore permissions.
    Not root: modes bind already.
    """
    return _drop_file_capabilities if os.geteuid() == 0 else None


def sidecar(
    *args: str,
    timeout: float = 30,
    preexec_fn: Callable[[], None] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m sidecar ARGS`; a TimeoutExpired means it did not finish (e.g. it served)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
        preexec_fn=preexec_fn,
    )
