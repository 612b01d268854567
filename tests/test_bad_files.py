"""Bad database files: `serve` refuses to start with one clear line on stderr and a non-zero exit,
`check` fails with a clear message, and neither rewrites nor deletes anything of the user's.

Read-only cases: the tests may run as root, whom chmod does not stop; the commands then run
without root's power to override file modes (tests.faults.honour_file_modes), like any user.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sidecar import backup, db, store
from tests.faults import honour_file_modes, sidecar
from tests.realserver import free_port

ROWS = 3000
START_SECONDS = 20.0


def make_database(path: Path) -> None:
    """A real, sound file made by the service's own code: a few thousand rows, some unlocked,
    checkpointed so that the one file holds everything (no -wal beside it)."""
    db.prepare(str(path))
    connection = db.connect(str(path))
    try:
        connection.execute("BEGIN IMMEDIATE")
        achievements = [
            store.create_achievement(connection, f"A{n}", None, f"a{n}", "{}").id for n in range(3)
        ]
        for user in range(1, ROWS + 1):
            achievement = achievements[user % 3]
            store.upsert_progress(
                connection, user, achievement, f'{{"n":{user},"pad":"{user:0>80}"}}'
            )
            if user % 7 == 0:
                store.unlock_progress(connection, user, achievement)
        connection.execute("COMMIT")
    finally:
        connection.close()
    assert backup.check(str(path)) == []
    db.checkpoint(str(path))
    assert sorted(os.listdir(path.parent)) == [path.name]


@dataclass
class Case:
    db: Path  # what --db names
    watched: Path  # the directory whose files must be left as they were
    names: tuple[str, ...]  # the message must name one of these
    preexec: Callable[[], None] | None = None


def not_sqlite(tmp_path: Path) -> Case:
    path = tmp_path / "notes.db"
    path.write_text("".join(f"line {n}: this is not a database\n" for n in range(200)))
    return Case(path, tmp_path, (str(path),))


def truncated(tmp_path: Path) -> Case:
    path = tmp_path / "truncated.db"
    make_database(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Case(path, tmp_path, (str(path),))


def future_version(tmp_path: Path) -> Case:
    path = tmp_path / "future.db"
    make_database(path)
    with sqlite3.connect(path) as connection:
        connection.execute(f"PRAGMA user_version = {db.SCHEMA_VERSION + 1}")
    connection.close()
    assert not Path(f"{path}-wal").exists()
    return Case(path, tmp_path, (str(path),))


def directory(tmp_path: Path) -> Case:
    path = tmp_path / "achievements.db"
    path.mkdir()
    (path / "inside.txt").write_text("keep me")
    return Case(path, path, (str(path),))


def missing_directory(tmp_path: Path) -> Case:
    path = tmp_path / "missing" / "achievements.db"
    return Case(path, tmp_path, (str(path), str(path.parent)))


def read_only_file(tmp_path: Path) -> Case:
    path = tmp_path / "readonly.db"
    make_database(path)
    path.chmod(0o444)
    return Case(path, tmp_path, (str(path),), honour_file_modes())


def read_only_directory(tmp_path: Path) -> Case:
    folder = tmp_path / "locked"
    folder.mkdir()
    path = folder / "achievements.db"
    make_database(path)
    folder.chmod(0o555)
    return Case(path, folder, (str(path), str(folder)), honour_file_modes())


def new_file_in_read_only_directory(tmp_path: Path) -> Case:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "other.txt").write_text("keep me")
    folder.chmod(0o555)
    path = folder / "achievements.db"
    return Case(path, folder, (str(path), str(folder)), honour_file_modes())


CASES = [
    not_sqlite,
    truncated,
    future_version,
    directory,
    missing_directory,
    read_only_file,
    read_only_directory,
    new_file_in_read_only_directory,
]
# `check` only reads: a sound file that is merely read-only is no problem to it.
CHECK_FAILS = [not_sqlite, truncated, future_version, directory, missing_directory]


@pytest.fixture(autouse=True)
def writable_again(tmp_path: Path) -> Iterator[None]:
    """Give back write permission after the test, so that pytest can remove tmp_path."""
    yield
    for folder, _, files in os.walk(tmp_path):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` and a hash of its bytes."""
    if not folder.exists():
        return {}
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def assert_untouched(before: dict[str, str], folder: Path) -> None:
    after = snapshot(folder)
    for name, digest in before.items():
        assert name in after, f"{name} was deleted"
        assert after[name] == digest, f"{name} was rewritten"


@dataclass
class Outcome:
    returncode: int | None  # None: it started serving instead of refusing
    stdout: str
    stderr: str


def serve(case: Case) -> Outcome:
    """`python -m sidecar serve --db ...`: its exit, or None once it answers /health."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIDECAR_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "sidecar", "serve", "--db", str(case.db), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        preexec_fn=case.preexec,
    )
    served = False
    deadline = time.monotonic() + START_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        try:
            served = httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).is_success
        except httpx.HTTPError:
            served = False
        if served:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
    stdout, stderr = process.communicate(timeout=10)
    return Outcome(None if served else process.returncode, stdout, stderr)


@pytest.mark.parametrize("make_case", CASES)
def test_serve_refuses_a_bad_file_with_one_line_and_changes_nothing(
    tmp_path: Path, make_case: Callable[[Path], Case]
) -> None:
    case = make_case(tmp_path)
    before = snapshot(case.watched)
    outcome = serve(case)
    assert outcome.returncode is not None, f"it started serving {case.db}: {outcome.stderr}"
    assert outcome.returncode > 0, outcome.stderr
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{outcome.stderr}"
    assert any(name in lines[0] for name in case.names), lines[0]
    assert "Traceback" not in outcome.stderr
    assert outcome.stdout == ""
    assert_untouched(before, case.watched)
    if make_case is missing_directory:
        assert not case.db.parent.exists()


@pytest.mark.parametrize("make_case", CHECK_FAILS)
def test_check_fails_clearly_on_a_bad_file_and_changes_nothing(
    tmp_path: Path, make_case: Callable[[Path], Case]
) -> None:
    case = make_case(tmp_path)
    before = snapshot(case.watched)
    result = sidecar("check", "--db", str(case.db), preexec_fn=case.preexec)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    assert any(name in result.stderr for name in case.names), output
    assert_untouched(before, case.watched)


@pytest.mark.parametrize("make_case", [read_only_file, read_only_directory])
def test_check_reads_a_sound_read_only_file(
    tmp_path: Path, make_case: Callable[[Path], Case]
) -> None:
    case = make_case(tmp_path)
    before = snapshot(case.watched)
    result = sidecar("check", "--db", str(case.db), preexec_fn=case.preexec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{case.db}: ok" in result.stdout
    assert_untouched(before, case.watched)


def test_read_only_cases_really_are_read_only(tmp_path: Path) -> None:
    """The premise of the read-only cases: the commands cannot write there (also as root)."""
    case = read_only_file(tmp_path)
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(case.db)!r}, 'ab')"],
        capture_output=True,
        text=True,
        preexec_fn=case.preexec,
    )
    assert probe.returncode != 0 and "PermissionError" in probe.stderr
    folder = read_only_directory(tmp_path).watched
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(folder / 'new')!r}, 'w')"],
        capture_output=True,
        text=True,
        preexec_fn=honour_file_modes(),
    )
    assert probe.returncode != 0 and "PermissionError" in probe.stderr
