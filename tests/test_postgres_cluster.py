"""The tests' PostgreSQL server (tests/pg.py): reachable, and never run as root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests import pg

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[test]')"
)


def test_the_server_answers_and_runs_no_process_as_root(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        version = connection.execute("SHOW server_version_num").fetchone()[0]
        backend = connection.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert int(version) >= 150000
        if os.environ.get(pg.URL_VARIABLE):
            return  # someone else's server: its processes are not ours to inspect
        assert Path(f"/proc/{backend}").stat().st_uid != 0


def test_a_cluster_that_cannot_start_says_why_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg, "binaries", lambda: Path("/nonexistent"))
    with pytest.raises(pg.Unavailable) as raised:
        pg.start_cluster()
    assert "\n" not in str(raised.value)
