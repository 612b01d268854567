"""sidecar/postgres/schema.sql: its trigger-kept counters equal a recount after any mix of
writes, concurrent ones too (no deadlock over a counter), and event ids have no gap."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from sidecar import postgres
from tests import pg

psycopg = pytest.importorskip(
    "psycopg", reason="psycopg is not installed (pip install -e '.[test]')"
)


@pytest.fixture
def database(postgres_url: str) -> Iterator[str]:
    with pg.fresh_database(postgres_url) as url:
        with psycopg.connect(url) as connection:
            connection.execute(postgres.schema_sql())
        yield url


def mismatches(connection: Any) -> dict[str, tuple[Any, Any]]:
    found = {}
    for name, (kept, recount) in postgres.COUNTER_CHECKS.items():
        pair = (connection.execute(kept).fetchall(), connection.execute(recount).fetchall())
        if pair[0] != pair[1]:
            found[name] = pair
    return found


class Writes:
    """Random writes of the kinds the service makes, timestamps moving forward across hours,
    days and months (the service's clock never runs back)."""

    KINDS = ("definition", "progress", "unlock", "forget", "user", "retire", "key", "purge")

    def __init__(
        self,
        seed: int,
        users: int = 12,
        achievements: int = 5,
        weights: tuple[int, ...] = (2, 10, 10, 3, 1, 1, 2, 1),
    ) -> None:
        self.random = random.Random(seed)
        self.weights = weights
        self.users = users
        self.achievements = achievements
        self.minutes = 0

    def now(self) -> str:
        self.minutes += self.random.choice((0, 1, 7, 90, 1500, 20000))
        day, minute = divmod(self.minutes, 1440)
        month, day = divmod(day, 28)
        year, month = divmod(month, 12)
        clock = f"{minute // 60:02d}:{minute % 60:02d}"
        return f"{2026 + year}-{1 + month:02d}-{1 + day:02d}T{clock}:00.000Z"

    def one(self, connection: Any) -> None:
        """One write, in the caller's transaction, taking its locks as the store must beside
        other sidecars: a user's writes lock the user's row first (so a user's deletion and
        their other writes take their rows in one order), and a progress row's definition is
        locked against deletion (KEY SHARE) before the row is written."""
        user = self.random.randrange(1, self.users + 1)
        achievement = self.random.randrange(1, self.achievements + 1)
        now = self.now()
        kind = self.random.choices(self.KINDS, weights=self.weights)[0]
        if kind == "definition":
            connection.execute(
                "INSERT INTO achievements (id, name, created_at, updated_at) "
                "VALUES (%s, 'a', %s, %s) ON CONFLICT DO NOTHING",
                (achievement, now, now),
            )
        elif kind == "progress":
            found = connection.execute(
                "SELECT FROM achievements WHERE id = %s FOR KEY SHARE", (achievement,)
            )
            if found.rowcount:
                # ON CONFLICT DO UPDATE locks the row it meets, also when WHERE leaves it as is.
                connection.execute(
                    "INSERT INTO users VALUES (%s, %s) "
                    "ON CONFLICT (id) DO UPDATE SET created_at = users.created_at WHERE false",
                    (user, now),
                )
                unlocked = now if self.random.random() < 0.3 else None
                self.event(
                    connection,
                    connection.execute(
                        "INSERT INTO user_achievements "
                        "(user_id, achievement_id, unlocked_at, created_at, updated_at) "
                        "VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING "
                        "RETURNING user_id, achievement_id, unlocked_at",
                        (user, achievement, unlocked, now, now),
                    ).fetchone(),
                )
        elif kind == "unlock":
            connection.execute("SELECT FROM users WHERE id = %s FOR NO KEY UPDATE", (user,))
            self.event(
                connection,
                connection.execute(
                    "UPDATE user_achievements SET unlocked_at = %s "
                    "WHERE user_id = %s AND achievement_id = %s AND unlocked_at IS NULL "
                    "RETURNING user_id, achievement_id, unlocked_at",
                    (now, user, achievement),
                ).fetchone(),
            )
        elif kind == "forget":
            connection.execute("SELECT FROM users WHERE id = %s FOR NO KEY UPDATE", (user,))
            connection.execute(
                "DELETE FROM user_achievements WHERE user_id = %s AND achievement_id = %s",
                (user, achievement),
            )
        elif kind == "user":
            connection.execute("DELETE FROM users WHERE id = %s", (user,))
        elif kind == "retire":
            connection.execute("DELETE FROM achievements WHERE id = %s", (achievement,))
        elif kind == "key":
            connection.execute(
                "INSERT INTO idempotency_keys VALUES (%s, %s, 200, %s, %s) ON CONFLICT DO NOTHING",
                (f"k{user}", b"f" * 32, b"{}" * achievement, now),
            )
        else:
            connection.execute("DELETE FROM idempotency_keys WHERE key = %s", (f"k{user}",))

    def event(self, connection: Any, unlocked: Any) -> None:
        if unlocked is not None and unlocked[2] is not None:
            connection.execute(
                "INSERT INTO events (type, user_id, achievement_id, unlocked_at) "
                "VALUES ('achievement.unlocked', %s, %s, %s)",
                unlocked,
            )


def test_counters_equal_a_recount_after_random_writes(database: str) -> None:
    writes = Writes(seed=17)
    with psycopg.connect(database, autocommit=True) as connection:
        for step in range(1, 601):
            with connection.transaction():
                writes.one(connection)
            if step % 97 == 0:
                connection.execute("SELECT compact_counters()")
            if step % 150 == 0:
                assert mismatches(connection) == {}, f"after {step} writes"
        written = connection.execute("SELECT count(*) FROM events").fetchone()[0]
        assert written > 10  # the mix did unlock
        connection.execute("SELECT compact_counters()")
        assert mismatches(connection) == {}
        # Folded: at most one row a key.
        assert connection.execute("SELECT count(*) FROM totals").fetchone()[0] == 1


def test_concurrent_writers_never_deadlock_and_events_have_no_gap(database: str) -> None:
    """8 connections write at once on few users and definitions (so their counters collide),
    one of them folding meanwhile: no deadlock, no error, exact counters, event ids 1..N.

    Every kind of write but a definition's deletion, which deletes progress rows of many users
    in the order of the table and may deadlock with another such deletion over user_stats rows:
    the writer must retry a transaction that PostgreSQL chose as a deadlock's victim."""
    errors: list[BaseException] = []
    lock = threading.Lock()
    with psycopg.connect(database, autocommit=True) as setup:
        for achievement in range(1, 5):
            setup.execute(
                "INSERT INTO achievements (id, name, created_at, updated_at) "
                "VALUES (%s, 'a', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
                (achievement,),
            )

    def writer(seed: int) -> None:
        writes = Writes(seed, users=6, achievements=4, weights=(1, 10, 10, 3, 1, 0, 2, 1))
        try:
            with psycopg.connect(database, autocommit=True) as connection:
                for step in range(120):
                    with connection.transaction():
                        writes.one(connection)
                        if seed == 0 and step % 10 == 0:
                            connection.execute("SELECT compact_counters()")
        except BaseException as error:
            with lock:
                errors.append(error)

    threads = [threading.Thread(target=writer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    with psycopg.connect(database, autocommit=True) as connection:
        assert mismatches(connection) == {}
        ids = [row[0] for row in connection.execute("SELECT id FROM events ORDER BY id")]
        assert ids == list(range(1, len(ids) + 1))
        assert len(ids) > 8


async def test_the_service_folds_the_counters_as_it_goes(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each sidecar's writer folds the deltas now and then (here at every chance): the delta
    tables stay at one row a key while the answers stay the same."""
    from litestar.testing import AsyncTestClient

    from sidecar.app import create_app
    from sidecar.postgres import backend
    from sidecar.settings import Settings
    from tests.conftest import BASE_URL
    from tests.helpers import create_definition, unlock, upsert

    monkeypatch.setattr(backend, "FOLD_SECONDS", 0.0)
    async with AsyncTestClient(
        app=create_app(Settings(db_path=database)), base_url=BASE_URL
    ) as client:
        achievement = (await create_definition(client, "Folded"))["id"]
        for user in range(1, 21):
            await upsert(client, user, achievement, {"n": user})
            if user % 2:
                await unlock(client, user, achievement)
        stats = (await client.get("/users/achievements/stats")).json()
        await upsert(client, 99, achievement)  # one more group: the writer folds before it
        with psycopg.connect(database) as connection:
            assert mismatches(connection) == {}
            for table in ("totals", "unlock_histogram"):
                rows = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                # Folded: one row, and the last write's own deltas (a new user: two in totals);
                # unfolded, these writes leave 42 in totals.
                assert rows <= 3, table
        assert [s["unlockedCount"] for s in stats] == [10]
