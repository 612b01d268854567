"""`python -m sidecar ...` in a subprocess, as an operator types it; what a refusal looks like."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """The command with the test's environment minus every SIDECAR_* variable, plus `env`.
    A TimeoutExpired means it did not finish (e.g. it started serving)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sidecar", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environ,
        cwd=cwd,
    )


def refusal(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """A non-zero exit with exactly one line on stderr (no traceback) that holds every word."""
    assert result.returncode != 0, f"it succeeded: {result.stdout}{result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"
    return lines[0]
