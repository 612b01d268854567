"""The machine and the software versions a run was measured with."""

from __future__ import annotations

import os
import platform
import sqlite3
from importlib import metadata
from pathlib import Path

PACKAGES = ("litestar", "msgspec", "uvicorn", "granian")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def describe(load_generator: str, postgres: str | None = None) -> str:
    """One line: cores, CPU, OS, Python, SQLite (and PostgreSQL when measured, with its
    driver), the web stack, the load generator."""
    packages = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    databases = f"SQLite {sqlite3.sqlite_version}"
    if postgres is not None:
        databases += f", PostgreSQL {postgres} (psycopg {_version('psycopg')})"
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}, {databases}, {packages}; "
        f"load from {load_generator}"
    )
