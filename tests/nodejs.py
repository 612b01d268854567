"""Node.js for the tests of the TypeScript client and the discord.js example: one `npm ci` per
test session into clients/typescript/node_modules (from its package-lock.json), shared by every
test that compiles or runs TypeScript."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "typescript"
NODE_MODULES = CLIENT / "node_modules"
BIN = NODE_MODULES / ".bin"
# Generous (the machine is shared; npm ci fetches from the registry on a cold cache), but bounded.
RUN_SECONDS = 300


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command to its end (no SIDECAR_* variable but those in `env`); its output, or a
    failure that shows it."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**inherited, **(env or {})},
        capture_output=True,
        text=True,
        timeout=RUN_SECONDS,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)} exited with {done.returncode}:\n{output}", False)
    return output


@functools.cache
def _install() -> str | None:
    """npm ci, once per session; the reason to skip when Node.js or npm is missing."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=CLIENT)
    return None


def npm_installed() -> None:
    """Skip the test (one line) without Node.js; else make sure node_modules is installed."""
    reason = _install()
    if reason is not None:
        pytest.skip(reason)


def tsc(project: Path) -> str:
    """Type-check (strict, from the project's tsconfig) and compile a TypeScript project (a
    folder with a tsconfig.json, or a tsconfig file)."""
    folder = project if project.is_dir() else project.parent
    return run([str(BIN / "tsc"), "-p", str(project)], cwd=folder)


@functools.cache
def _compile_client() -> None:
    tsc(CLIENT)


def client_compiled() -> None:
    """npm_installed(), then the client compiled into clients/typescript/dist (once a session):
    its tests, and the package that the example imports."""
    npm_installed()
    _compile_client()


def node_test(files: list[Path], cwd: Path, env: dict[str, str]) -> str:
    """`node --test` on compiled test files; fails with their report."""
    return run(["node", "--test", *map(str, files)], cwd=cwd, env=env)
