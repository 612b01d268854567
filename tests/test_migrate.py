"""`sidecar migrate --from FILE --to postgresql://...`, as an operator runs it: a file built
through the HTTP API is copied while its sidecar serves it; a sidecar on the copy then answers
every read as the SQLite one does, replays a stored Idempotency-Key, never gives an old id again,
and `check` finds nothing. Each refusal is one line and leaves the target as it was; a copy that
fails midway leaves nothing behind."""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar import db
from tests import pg
from tests.clirun import refusal, run
from tests.realserver import RealServer, free_port, start_server

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[test]')"
)

DEFINITIONS = "/users/achievements/definitions"
PROGRESS = "/users/achievements/progress"
SECRET = "s3cret-pw"

# Metadata as a bot might send it: key order that sorting would change, keys that only look
# alike, numbers past a double's digits, emoji, an escaped NUL. Sent as these very bytes.
ODD_METADATA = [
    b'{"z": 1, "a": 2, "m": {"y": [1, 2, {"b": null, "a": true}], "x": "\\u00e9"}}',
    b'{"a": 1, "A": 2, "a ": 3, " a": 4, "\\u0061b": 5, "ab ": 6}',
    b'{"big": 123456789012345678901234567890123, "exact": 0.1000000000000000000000000001, '
    b'"tiny": 1e-300, "neg": -0, "e": 1.5E+10}',
    '{"emoji": "🏆🎉", "🔑": "e\u0301", "nul": "a\\u0000b", "tab": "a\\tb"}'.encode(),
]


@pytest.fixture
def target(postgres_url: str) -> Iterator[str]:
    """An empty database of its own (no schema): what an operator creates for the move."""
    with pg.fresh_database(postgres_url) as url:
        yield url


def table_count(url: str) -> int:
    return int(
        pg.query_function(url)("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")[0][0]
    )


def migrate(source: Path, url: str, **env: str) -> Any:
    return run("migrate", "--from", str(source), "--to", url, env=env, timeout=300)


def post(client: httpx.Client, path: str, body: bytes | dict[str, Any], **headers: str) -> Any:
    content = body if isinstance(body, bytes) else None
    answer = client.post(
        path,
        content=content,
        json=None if content is not None else body,
        headers={"Content-Type": "application/json", **headers},
    )
    assert answer.status_code in (200, 201), answer.text
    return answer


def build_through_the_api(server: RealServer) -> dict[str, Any]:
    """Definitions (two deleted: ids with gaps, the highest one of them), users, progress with
    odd metadata, unlocks (some of a deleted definition), a deleted user, and idempotency keys."""
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        keyed = client.put(
            f"{DEFINITIONS}/by-key/daily-streak",
            json={"name": "Daily streak", "metadata": {"days": 7, "tier": "gold"}},
        ).json()["id"]
        ids = [
            post(client, DEFINITIONS, {"name": name, "description": f"about {name}"}).json()["id"]
            for name in ("first", "Zweite 🏆", "third", "gone soon", "last, gone too")
        ]
        users = [1, 2, 3, 2**62 + 5]
        for index, user in enumerate(users):
            for offset, achievement in enumerate([*ids, keyed]):
                metadata = ODD_METADATA[(index + offset) % len(ODD_METADATA)]
                body = b'{"userId": %d, "achievementId": %d, "metadata": %s}' % (
                    user,
                    achievement,
                    metadata,
                )
                post(client, PROGRESS, body)
            for achievement in [*ids, keyed][: index + 2]:
                answer = client.put(
                    f"{PROGRESS}/unlock", json={"userId": user, "achievementId": achievement}
                )
                assert answer.status_code == 200, answer.text
        live = post(
            client,
            PROGRESS,
            {"userId": 7, "achievementId": ids[0], "metadata": {"kept": "as first sent"}},
            **{"Idempotency-Key": "live-key"},
        )
        post(client, PROGRESS, {"userId": 7, "achievementId": ids[1]}, **{"Idempotency-Key": "old"})
        for gone in (ids[3], ids[4]):
            assert client.delete(f"{DEFINITIONS}/{gone}").status_code == 200
        assert client.delete("/users/3").status_code == 200
    return {"ids": [*ids, keyed], "users": [*users, 7], "live": live}


def reads(base_url: str, ids: list[int], users: list[int]) -> dict[str, tuple[int, bytes]]:
    """Every read of the API that shows stored data: status and body bytes."""
    paths = [
        DEFINITIONS,
        f"{DEFINITIONS}/by-key/daily-streak",
        "/users/achievements/events?after=0&limit=1000",
        "/users/achievements/events?after=3&limit=2",
        "/users/achievements/stats",
        "/users/achievements/leaderboard?limit=100",
        "/users/achievements/leaderboard?limit=2&offset=1",
        *(f"{DEFINITIONS}/{id_}" for id_ in [*ids, max(ids) + 1]),
    ]
    for user in users:
        paths += [
            f"{PROGRESS}/list?userId={user}",
            f"{PROGRESS}/list?userId={user}&unlockedOnly=true",
            f"/users/achievements/leaderboard/{user}",
            *(f"{PROGRESS}?userId={user}&achievementId={id_}" for id_ in ids),
        ]
    with httpx.Client(base_url=base_url, timeout=30) as client:
        return {path: (r.status_code, r.content) for path in paths if (r := client.get(path))}


def test_a_file_built_through_the_api_answers_the_same_on_postgresql(
    tmp_path: Path, target: str
) -> None:
    source = tmp_path / "achievements.db"
    sqlite_server = start_server(source)
    try:
        built = build_through_the_api(sqlite_server)
        # The second key past its TTL: left out by the copy (the service would ignore it).
        with closing(sqlite3.connect(source)) as connection, connection:
            connection.execute(
                "UPDATE idempotency_keys SET created_at = '2001-01-01T00:00:00.000Z' "
                "WHERE key = 'old'"
            )
        # Copied while the SQLite sidecar serves the file (its WAL beside it).
        assert (tmp_path / "achievements.db-wal").exists()
        result = migrate(source, target)
        assert result.returncode == 0, result.stderr
        print(result.stdout)
        assert "idempotency_keys" in result.stdout and "1 past their TTL left out" in result.stdout
        sqlite_reads = reads(sqlite_server.base_url, built["ids"], built["users"])
    finally:
        sqlite_server.stop()

    # Byte for byte: every row of the copied tables (metadata text, timestamps, ids).
    query = pg.query_function(target)
    with closing(sqlite3.connect(source)) as connection:
        for table, columns in {
            "achievements": "id, key, name, description, metadata, created_at, updated_at",
            "users": "id, created_at",
            "user_achievements": "id, user_id, achievement_id, unlocked_at, metadata, "
            "created_at, updated_at",
            "events": "id, type, user_id, achievement_id, unlocked_at",
        }.items():
            rows = connection.execute(f"SELECT {columns} FROM {table} ORDER BY 1").fetchall()
            assert rows and query(f"SELECT {columns} FROM {table} ORDER BY 1") == rows, table
    assert [key for (key,) in query("SELECT key FROM idempotency_keys")] == ["live-key"]

    server = start_server(target, log_dir=tmp_path)
    try:
        assert reads(server.base_url, built["ids"], built["users"]) == sqlite_reads
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            replay = post(
                client,
                PROGRESS,
                {
                    "userId": 7,
                    "achievementId": built["ids"][0],
                    "metadata": {"kept": "as first sent"},
                },
                **{"Idempotency-Key": "live-key"},
            )
            assert (replay.status_code, replay.content) == (
                built["live"].status_code,
                built["live"].content,
            )
            # Ids: above every id the file ever gave, the deleted definitions' too.
            new = post(client, DEFINITIONS, {"name": "after the move"}).json()["id"]
            assert new == 7 > max(built["ids"])
            before = client.get("/users/achievements/events?after=0&limit=1000").json()
            assert client.put(f"{PROGRESS}/unlock", json={"userId": 99, "achievementId": new})
            after = client.get(f"/users/achievements/events?after={before[-1]['id']}").json()
            assert [event["id"] for event in after] == [before[-1]["id"] + 1]
    finally:
        server.stop()
    checked = run("check", "--db", target)
    assert (checked.returncode, checked.stdout.strip()) == (0, f"{target}: ok"), checked.stderr


def sidecar_file(path: Path) -> Path:
    """A current, empty sidecar file."""
    db.prepare(str(path))
    db.checkpoint(str(path))
    return path


def fill(path: Path, users: int, per_user: int) -> None:
    """users x per_user progress rows (every third unlocked, with its event), straight into the
    file: the triggers keep the file's counters as the service's writes do."""
    with closing(db.connect(str(path))) as connection:
        connection.execute("BEGIN")
        connection.executemany(
            "INSERT INTO achievements (name, created_at, updated_at) VALUES (?, ?, ?)",
            [
                (f"a{n}", "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.000Z")
                for n in range(per_user)
            ],
        )
        connection.executemany(
            "INSERT INTO users (id, created_at) VALUES (?, '2026-01-01T00:00:00.000Z')",
            [(user,) for user in range(1, users + 1)],
        )

        def rows() -> Iterator[tuple[Any, ...]]:
            for user in range(1, users + 1):
                for achievement in range(1, per_user + 1):
                    day = f"2026-{1 + user % 12:02d}-{1 + achievement % 28:02d}"
                    at = f"{day}T{user % 24:02d}:00:00.000Z"
                    unlocked = at if (user + achievement) % 3 == 0 else None
                    yield user, achievement, unlocked, f'{{"n": {user * achievement}}}', at, at

        connection.executemany(
            "INSERT INTO user_achievements "
            "(user_id, achievement_id, unlocked_at, metadata, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows(),
        )
        connection.execute(
            "INSERT INTO events (type, user_id, achievement_id, unlocked_at) "
            "SELECT 'achievement.unlocked', user_id, achievement_id, unlocked_at "
            "FROM user_achievements WHERE unlocked_at IS NOT NULL ORDER BY unlocked_at, id"
        )
        connection.execute("COMMIT")
    db.checkpoint(str(path))


def test_a_hundred_thousand_progress_rows(tmp_path: Path, target: str) -> None:
    source = sidecar_file(tmp_path / "big.db")
    fill(source, users=10_000, per_user=10)
    result = migrate(source, target)
    assert result.returncode == 0, result.stderr
    seconds = float(re.search(r" in ([0-9.]+) s:", result.stdout).group(1))  # type: ignore[union-attr]
    print(f"100,000 progress rows migrated in {seconds:.1f} s\n{result.stdout}")
    query = pg.query_function(target)
    assert query("SELECT count(*) FROM user_achievements") == [(100_000,)]
    assert query("SELECT count(*) FROM events") == [(33_333,)]
    checked = run("check", "--db", target)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_copies_one_snapshot_while_the_sidecar_takes_writes(tmp_path: Path, target: str) -> None:
    """Unlocks of new users go on through the SQLite sidecar during the copy: the target holds
    the writes up to one moment, each whole (user, row, event), the feed gap-free."""
    source = sidecar_file(tmp_path / "busy.db")
    fill(source, users=10_000, per_user=10)
    first = 1_000_000
    written: list[int] = []
    failures: list[str] = []
    stop = threading.Event()
    server = start_server(source)

    def write() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            for user in range(first, first + 100_000):
                if stop.is_set():
                    return
                answer = client.put(f"{PROGRESS}/unlock", json={"userId": user, "achievementId": 3})
                if answer.status_code != 200:
                    failures.append(answer.text)
                    return
                written.append(user)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while len(written) < 20 and not failures and time.monotonic() < deadline:
            time.sleep(0.01)
        result = migrate(source, target)
        during = len(written)
    finally:
        stop.set()
        thread.join(timeout=60)
        server.stop()
    assert not failures and result.returncode == 0, (failures, result.stderr)
    query = pg.query_function(target)
    copied = [user for (user,) in query("SELECT id FROM users WHERE id >= ? ORDER BY id", first)]
    print(f"{len(copied)} of the {during} users written during the copy are in it")
    assert len(copied) >= 20
    assert copied == list(range(first, first + len(copied)))  # the writes up to one moment
    assert query(
        "SELECT count(*) FROM user_achievements WHERE user_id >= ? AND unlocked_at IS NOT NULL",
        first,
    ) == [(len(copied),)]
    events = 33_333 + len(copied)
    assert query("SELECT count(*), max(id), (SELECT last_id FROM event_counter) FROM events") == [
        (events, events, events)
    ]


# --- refusals -------------------------------------------------------------------------------


def test_refuses_a_target_that_is_not_empty(tmp_path: Path, target: str) -> None:
    source = sidecar_file(tmp_path / "a.db")
    fill(source, users=3, per_user=2)
    assert migrate(source, target).returncode == 0
    before = pg.dump(target)
    refusal(migrate(source, target), "is not empty", "migrate copies into an empty database")
    assert pg.dump(target) == before


def test_refuses_a_schema_of_another_version_or_tables_of_another_program(
    tmp_path: Path, target: str
) -> None:
    source = sidecar_file(tmp_path / "a.db")
    query = pg.query_function(target)
    query("CREATE TABLE orders (id integer)")
    refusal(migrate(source, target), "tables that are not this service's")
    query("DROP TABLE orders")
    from sidecar.postgres import backend

    backend.prepare(target)
    query("UPDATE schema_version SET version = 99")
    before = pg.dump(target)
    refusal(migrate(source, target), "schema version 99")
    assert pg.dump(target) == before


def test_takes_an_empty_schema_that_a_sidecar_created(tmp_path: Path, target: str) -> None:
    """An operator who started a sidecar on the new database first: nothing in it yet."""
    from sidecar.postgres import backend

    backend.prepare(target)
    source = sidecar_file(tmp_path / "a.db")
    fill(source, users=5, per_user=3)
    assert migrate(source, target).returncode == 0
    assert pg.query_function(target)("SELECT count(*) FROM user_achievements") == [(15,)]


def older_file(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as connection:
        connection.executescript(Path("tests/data/schema_v4.sql").read_text())
        connection.execute("PRAGMA user_version = 4")
    return path


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda path: path, ["no database at"]),
        (
            lambda path: path.write_text("not a database, just text\n" * 100) and path,
            ["not a usable SQLite database"],
        ),
        (
            lambda path: sqlite3.connect(path).execute("CREATE TABLE t (x)") and path,
            ["not an achievements database"],
        ),
        (older_file, ["schema version 4", "start the service once to upgrade it"]),
    ],
    ids=["missing", "not-sqlite", "another-program", "older-release"],
)
def test_refuses_a_source_that_is_not_a_sidecar_file_of_this_release(
    tmp_path: Path, target: str, make: Any, words: list[str]
) -> None:
    source = make(tmp_path / "source.db")
    refusal(migrate(source, target), *words)
    assert table_count(target) == 0


def test_names_with_nul_are_copied_exactly_or_refused_naming_the_definitions(
    tmp_path: Path, target: str
) -> None:
    """SQLite's text holds U+0000 and PostgreSQL's cannot: with the backend's escaping
    (sidecar/postgres/text.py, where it has landed) the names come back exactly; without it
    the copy is refused, naming the definitions, and nothing is written."""
    source = sidecar_file(tmp_path / "a.db")
    fill(source, users=2, per_user=4)
    with closing(db.connect(str(source))) as connection:
        connection.execute("UPDATE achievements SET name = 'a' || char(0) || 'b' WHERE id = 2")
        connection.execute("UPDATE achievements SET description = char(0) WHERE id = 4")
    result = migrate(source, target)
    if importlib.util.find_spec("sidecar.postgres.text") is None:
        line = refusal(result, "U+0000", "change them first")
        assert "achievement(s) 2, 4 " in line
        assert table_count(target) == 0
        return
    assert result.returncode == 0, result.stderr
    server = start_server(target, log_dir=tmp_path)
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            assert client.get(f"{DEFINITIONS}/2").json()["name"] == "a\x00b"
            assert client.get(f"{DEFINITIONS}/4").json()["description"] == "\x00"
    finally:
        server.stop()


def unreachable_url() -> str:
    return f"postgresql://bot:{SECRET}@127.0.0.1:{free_port()}/achievements"


def test_refuses_an_unreachable_server_without_showing_the_password(tmp_path: Path) -> None:
    source = sidecar_file(tmp_path / "a.db")
    line = refusal(migrate(source, unreachable_url()), "bot:***@127.0.0.1")
    assert SECRET not in line


def test_needs_a_postgresql_target(tmp_path: Path, postgres_url: str) -> None:
    source = sidecar_file(tmp_path / "a.db")
    refusal(run("migrate", "--from", str(source)), "--to postgresql://")
    line = refusal(run("migrate", "--from", unreachable_url(), "--to", postgres_url), "--from FILE")
    assert SECRET not in line
    refusal(
        run("migrate", "--from", str(source), "--to", str(tmp_path / "b.db")), "--to postgresql://"
    )


def test_the_target_may_come_from_sidecar_db(tmp_path: Path, target: str) -> None:
    """SIDECAR_DB as the sidecars will have it: the password stays out of the process list."""
    source = sidecar_file(tmp_path / "a.db")
    fill(source, users=2, per_user=2)
    result = run("migrate", "--from", str(source), env={"SIDECAR_DB": target})
    assert result.returncode == 0, result.stderr
    assert pg.query_function(target)("SELECT count(*) FROM users") == [(2,)]


def test_a_copy_that_fails_midway_leaves_the_target_empty(tmp_path: Path, target: str) -> None:
    """A progress row of a user the file does not have (written with foreign keys off): the
    definitions and users are copied by then, and PostgreSQL refuses that row."""
    source = sidecar_file(tmp_path / "a.db")
    fill(source, users=50, per_user=4)
    with closing(sqlite3.connect(source)) as connection, connection:
        connection.execute("PRAGMA foreign_keys = OFF")
        connection.execute(
            "INSERT INTO user_achievements (user_id, achievement_id, metadata, created_at, "
            "updated_at) VALUES (4242, 1, '{}', '2026-01-01T00:00:00.000Z', "
            "'2026-01-01T00:00:00.000Z')"
        )
    refusal(migrate(source, target), "nothing was written", "user_achievements")
    assert table_count(target) == 0


def test_help_names_the_source_the_target_and_sidecar_db() -> None:
    result = run("migrate", "--help")
    assert result.returncode == 0, result.stderr
    for word in ("--from FILE", "--to URL", "SIDECAR_DB", "PGPASSWORD", "empty"):
        assert word in result.stdout, word


@pytest.mark.parametrize("skipped", ["unlock_days", "user_achievements"])
def test_a_copy_that_does_not_check_out_is_refused_and_leaves_the_target_empty(
    tmp_path: Path, target: str, monkeypatch: pytest.MonkeyPatch, skipped: str
) -> None:
    """The checks before the commit can fail: a counter left out of the recount, or a table
    whose rows are not all copied (both by hand here), and nothing is written."""
    from sidecar import migrate as module

    source = sidecar_file(tmp_path / "a.db")
    fill(source, users=20, per_user=3)
    if skipped == "user_achievements":
        copy = module._copy_table

        def short(*args: Any) -> None:  # after the snapshot's counts: every 7th row left out
            if args[2] == "user_achievements":
                monkeypatch.setitem(module._WHERE, "user_achievements", " WHERE id % 7 <> 0")
            copy(*args)

        monkeypatch.setattr(module, "_copy_table", short)
    else:
        kept = tuple(s for s in module.RECOUNT if not s.startswith(f"INSERT INTO {skipped}"))
        monkeypatch.setattr(module, "RECOUNT", kept)
    with pytest.raises(db.DatabaseError, match=r"did not check out .*nothing was written"):
        module.migrate(str(source), target, 3600, lambda *_: None)
    assert table_count(target) == 0
