"""The commands on a PostgreSQL URL: check (schema, constraints, foreign keys, counters) and
definitions import/export behave as on a SQLite file; backup and restore name PostgreSQL's own
tools; an unreachable server is one line, and no line shows the password."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tests.clirun import refusal, run
from tests.helpers import DEFINITIONS, PROGRESS
from tests.realserver import free_port

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[test]')"
)

SECRET = "s3cret-pw"


def unreachable() -> str:
    return f"postgresql://bot:{SECRET}@127.0.0.1:{free_port()}/achievements"


def test_serve_refuses_an_unreachable_server_in_one_line_without_the_password() -> None:
    line = refusal(run("serve", "--db", unreachable(), "--port", str(free_port())), "127.0.0.1")
    assert SECRET not in line
    assert "bot:***@" in line


@pytest.mark.parametrize(
    ("command", "tool"),
    [(["backup", "out.db"], "pg_dump"), (["restore", "backup.db"], "pg_restore")],
)
def test_backup_and_restore_name_the_postgresql_tool(command: list[str], tool: str) -> None:
    line = refusal(run(*command, "--db", unreachable()), tool)
    assert SECRET not in line


@pytest.mark.parametrize(
    "command", [["check"], ["definitions", "export"], ["definitions", "import"]]
)
def test_an_unreachable_server_is_one_line_without_the_password(
    command: list[str], tmp_path: Path
) -> None:
    if command[-1] == "import":
        command = [*command, str(write(tmp_path / "d.json", [{"key": "k", "name": "K"}]))]
    result = run(*command, "--db", unreachable())
    line = refusal(result, "cannot reach", "bot:***@127.0.0.1")
    assert SECRET not in line
    assert result.returncode == 2


# --- check ----------------------------------------------------------------------------------


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    """A database the service prepared, with a few rows written as the service writes them."""
    with pg.prepared_database(postgres_url) as name:
        url = pg.database_url(postgres_url, name)
        query = pg.query_function(url)
        for id_ in (1, 2, 3):
            query(
                "INSERT INTO achievements (name, created_at, updated_at) VALUES (?, ?, ?)",
                f"a{id_}",
                "2026-01-01T00:00:00.000Z",
                "2026-01-01T00:00:00.000Z",
            )
        for user in (10, 11):
            query("INSERT INTO users (id, created_at) VALUES (?, '2026-01-01T00:00:00.000Z')", user)
            for achievement in (1, 2):
                at = f"2026-0{achievement}-0{user - 9}T0{user - 9}:00:00.000Z"
                query(
                    "INSERT INTO user_achievements (user_id, achievement_id, unlocked_at, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?)",
                    user,
                    achievement,
                    at if achievement == 1 or user == 11 else None,
                    at,
                    at,
                )
        yield url


def test_check_passes_on_a_sound_database(database: str) -> None:
    result = run("check", "--db", database)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{database}: ok\n", "")


def test_check_is_read_only_and_passes_beside_folded_counters(database: str) -> None:
    before = pg.dump(database)
    pg.query_function(database)("SELECT compact_counters()")
    assert run("check", "--db", database).returncode == 0
    assert pg.query_function(database)("SELECT count(*) FROM totals") == [(1,)]
    assert len(pg.dump(database)) < len(before)  # folded: fewer delta rows, the same sums


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (
            ["UPDATE user_stats SET unlocked_count = unlocked_count + 1 WHERE user_id = 10"],
            "counter user_stats differs from a recount of the rows",
        ),
        (["INSERT INTO totals (users) VALUES (1)"], "counter totals differs"),
        (["UPDATE event_counter SET last_id = 7"], "counter events differs"),
        (
            ["ALTER TABLE user_achievements DISABLE TRIGGER progress_counted"],
            "trigger progress_counted is missing or disabled",
        ),
        (["DROP INDEX user_stats_ranking"], "index user_stats_ranking is missing"),
        (
            ["ALTER TABLE user_achievements DROP CONSTRAINT user_achievements_user_id_fkey"],
            "table user_achievements: 2 foreign key constraint(s) expected, 1 valid",
        ),
        (
            [
                "ALTER TABLE achievements DROP CONSTRAINT achievements_name_check",
                "ALTER TABLE achievements ADD CONSTRAINT achievements_name_check "
                "CHECK (name <> '') NOT VALID",
            ],
            "table achievements: 3 check constraint(s) expected, 2 valid",
        ),
        (
            # Written with the foreign keys' triggers off, as a restore with
            # session_replication_role = replica may leave it.
            [
                "SET session_replication_role = replica",
                "INSERT INTO user_achievements (user_id, achievement_id, created_at, updated_at) "
                "VALUES (99, 1, '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
            ],
            "foreign key: 1 row(s) of user_achievements.user_id reference a missing row",
        ),
        (["UPDATE schema_version SET version = 99"], "schema version 99; this release knows up"),
        (["DROP TABLE events"], "table events is missing"),
    ],
    ids=[
        "counter",
        "totals",
        "event-counter",
        "trigger",
        "index",
        "foreign-key",
        "not-valid",
        "orphan",
        "version",
        "table",
    ],
)
def test_check_names_each_problem(database: str, damage: list[str], problem: str) -> None:
    with psycopg.connect(database, autocommit=True) as connection:
        for statement in damage:
            connection.execute(statement)
    result = run("check", "--db", database)
    assert result.returncode == 1, result.stdout + result.stderr
    assert problem in result.stdout, result.stdout
    count = len(result.stdout.splitlines())
    assert result.stderr == f"{database}: {count} problem(s)\n"


def test_check_refuses_a_database_without_any_table(postgres_url: str) -> None:
    with pg.fresh_database(postgres_url) as url:
        result = run("check", "--db", url)
        refusal(result, "is empty: no achievements schema")
        assert result.returncode == 2
        assert pg.query_function(url)(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ) == [(0,)]


def test_check_names_a_database_of_another_program(postgres_url: str) -> None:
    with pg.fresh_database(postgres_url) as url:
        pg.query_function(url)("CREATE TABLE orders (id integer)")
        result = run("check", "--db", url)
        assert result.returncode == 1
        assert "not an achievements database" in result.stdout


# --- definitions import / export: the same on both -----------------------------------------


def write(path: Path, entries: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"achievements": entries}, ensure_ascii=False), encoding="utf-8")
    return path


FIRST = [
    {"key": "worker-1", "name": "Worker I", "metadata": {"z": 1, "a": [1.50, "é"]}},
    {"key": "explorer.north", "name": "Explorer ❄", "description": "Reach the pole"},
    {"key": "zeta_9", "name": "zeta"},
]
SECOND = [
    FIRST[0],
    {"key": "explorer.north", "name": "Explorer ❄", "description": "Reach both poles"},
    {"key": "new-one", "name": "New", "metadata": {"big": 123456789012345678901234567890}},
]


def session(tmp_path: Path, database: str) -> list[tuple[int, str, str]]:
    """Imports (one a dry run) and exports in each format, as an operator would run them: each
    command's exit status, output and errors (the database's name left out)."""
    first = write(tmp_path / "first.json", FIRST)
    second = write(tmp_path / "second.json", SECOND)
    bad = write(tmp_path / "bad.json", [*FIRST, {"key": "Upper", "name": "x"}])
    toml = tmp_path / "first.toml"
    commands = [
        ["definitions", "import", str(bad)],
        ["definitions", "import", str(first)],
        ["definitions", "import", str(first)],
        ["definitions", "import", str(second), "--dry-run"],
        ["definitions", "export"],
        ["definitions", "import", str(second)],
        ["definitions", "export", "--format", "toml"],
        ["definitions", "export", "--output", str(toml)],
    ]
    results = []
    for command in commands:
        result = run(*command, "--db", database)
        results.append(
            (result.returncode, result.stdout, result.stderr.replace(database, "DATABASE"))
        )
    results.append((0, toml.read_text(encoding="utf-8"), ""))
    return results


def test_definitions_import_and_export_behave_as_on_sqlite(
    tmp_path: Path, postgres_url: str
) -> None:
    (tmp_path / "sqlite").mkdir()
    (tmp_path / "postgres").mkdir()
    on_sqlite = session(tmp_path / "sqlite", str(tmp_path / "sqlite" / "a.db"))
    # A database with no schema yet: import creates it, as it creates a missing file.
    with pg.fresh_database(postgres_url) as url:
        on_postgres = session(tmp_path / "postgres", url)
        assert run("check", "--db", url).returncode == 0
    assert on_postgres == [
        (code, out.replace("/sqlite/", "/postgres/"), err.replace("/sqlite/", "/postgres/"))
        for code, out, err in on_sqlite
    ]
    assert [line.split()[0] for line in on_sqlite[1][1].splitlines()] == ["created"] * 3


def test_export_refuses_a_database_without_the_schema_and_creates_nothing(
    postgres_url: str,
) -> None:
    with pg.fresh_database(postgres_url) as url:
        result = run("definitions", "export", "--db", url)
        refusal(result, "not an achievements database")
        assert pg.query_function(url)(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ) == [(0,)]


def test_import_of_a_name_with_nul_is_stored_exactly_or_refused_in_one_line(
    tmp_path: Path, database: str
) -> None:
    """With the backend's escaping of U+0000 (sidecar/postgres/text.py, where it has landed)
    the name comes back exactly, as on SQLite; without it the import is one line naming the
    key, and writes nothing."""
    before = pg.dump(database)
    file = write(
        tmp_path / "d.json", [{"key": "fine", "name": "Fine"}, {"key": "nul", "name": "a\u0000b"}]
    )
    result = run("definitions", "import", str(file), "--db", database)
    if importlib.util.find_spec("sidecar.postgres.text") is None:
        refusal(result, "'nul'", "U+0000")
        assert pg.dump(database) == before
        return
    assert result.returncode == 0, result.stderr
    exported = run("definitions", "export", "--db", database)
    entries = json.loads(exported.stdout)["achievements"]
    assert {"key": "nul", "name": "a\x00b"} in entries


def test_check_passes_while_a_sidecar_takes_writes(postgres_url: str, tmp_path: Path) -> None:
    """One snapshot: the counters (deltas folded meanwhile) and the rows agree at every moment,
    so a check beside live writes finds nothing."""
    import threading

    import httpx

    from tests.realserver import start_server

    with pg.fresh_database(postgres_url) as url:
        server = start_server(url, log_dir=tmp_path)
        stop = threading.Event()
        failures: list[str] = []
        written = [0]

        def write() -> None:
            with httpx.Client(base_url=server.base_url, timeout=30) as client:
                ids = [
                    client.post(DEFINITIONS, json={"name": f"a{n}"}).json()["id"] for n in range(3)
                ]
                for n in range(100_000):
                    if stop.is_set():
                        return
                    body = {"userId": 1 + n % 50, "achievementId": ids[n % 3]}
                    answer = (
                        client.put(f"{PROGRESS}/unlock", json=body)
                        if n % 2
                        else client.post(PROGRESS, json={**body, "metadata": {"n": n}})
                    )
                    if answer.status_code != 200:
                        failures.append(answer.text)
                        return
                    written[0] += 1

        thread = threading.Thread(target=write)
        thread.start()
        try:
            results = []
            for _ in range(3):
                before = written[0]
                results.append(run("check", "--db", url))
                assert written[0] > before or failures  # writes went on during the check
        finally:
            stop.set()
            thread.join(timeout=60)
            server.stop()
        assert not failures, failures
        for result in results:
            assert (result.returncode, result.stdout) == (0, f"{url}: ok\n"), result.stdout
