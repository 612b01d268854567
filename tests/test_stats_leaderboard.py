"""Rarity per achievement and the leaderboard (API.md "Stats and leaderboard"): a hand-computed
fixture, then the same numbers recomputed after deletions and checked against a brute-force
query over user_achievements."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sidecar import store
from tests.helpers import (
    DEFINITIONS,
    PROGRESS,
    TIMESTAMP,
    assert_problem,
    create_definition,
    error_fields,
    unlock,
    upsert,
)

pytestmark = pytest.mark.both_backends

STATS = "/users/achievements/stats"
LEADERBOARD = "/users/achievements/leaderboard"
STATS_FIELDS = {"achievementId", "name", "unlockedCount", "inProgressCount", "unlockRate"}
ENTRY_FIELDS = {"rank", "userId", "unlockedCount", "lastUnlockedAt"}
# Pause between unlocks so that each gets its own millisecond: the order of unlocks is the test's.
STEP_SECONDS = 0.004


@dataclass
class World:
    achievements: list[int]
    # Unlock timestamps by step number (1-based, in the order the unlocks were made).
    at: dict[int, str]


async def build(client: Any) -> World:
    """4 achievements, users 101-105 with progress, user 106 with none left.

    Unlocks, in order: 1 u103·a1, 2 u101·a1, 3 u103·a2, 4 u102·a3, 5 u104·a1, 6 u102·a1,
    7 u101·a2. Locked rows: u105·a1, u104·a2, u105·a3 (through apply), u103·a3.
    """
    names = ["Zeta", "alpha", "Mu", "beta"]  # name order differs from id order
    achievements = [(await create_definition(client, name))["id"] for name in names]
    a1, a2, a3, a4 = achievements
    at: dict[int, str] = {}
    steps = [(103, a1), (101, a1), (103, a2), (102, a3), (104, a1), (102, a1), (101, a2)]
    for step, (user, achievement) in enumerate(steps, start=1):
        row = await unlock(client, user, achievement)
        assert row["newlyUnlocked"] is True
        at[step] = row["unlockedAt"]
        await asyncio.sleep(STEP_SECONDS)
    assert len(set(at.values())) == len(at), at  # the test's own premise: distinct moments
    assert sorted(at.values()) == [at[step] for step in sorted(at)]

    await upsert(client, 105, a1, {"current": 1})
    await upsert(client, 104, a2, {"current": 2})
    response = await client.post(
        f"{PROGRESS}/apply",
        json={
            "userId": 105,
            "achievementId": a3,
            "ops": [{"op": "inc", "path": "current", "value": 1}],
            "unlockWhen": [{"path": "current", "gte": 10}],
        },
    )
    assert response.status_code == 200, response.text
    await upsert(client, 103, a3)
    # A repeated unlock changes no count.
    assert (await unlock(client, 101, a1))["newlyUnlocked"] is False
    # User 106 had progress and lost it: the users row stays, but it has no progress row.
    await upsert(client, 106, a4)
    deleted = await client.delete(PROGRESS, params={"userId": 106, "achievementId": a4})
    assert deleted.status_code == 200, deleted.text
    return World(achievements, at)


def stat(achievement: int, name: str, unlocked: int, in_progress: int, rate: float) -> Any:
    return (achievement, name, unlocked, in_progress, pytest.approx(rate, rel=1e-12, abs=1e-15))


async def get_stats(client: Any) -> list[tuple[Any, ...]]:
    response = await client.get(STATS)
    assert response.status_code == 200, response.text
    body = response.json()
    for item in body:
        assert set(item) == STATS_FIELDS, item
        rate = item["unlockRate"]
        assert isinstance(rate, int | float) and not isinstance(rate, bool), item
        assert 0 <= rate <= 1
    return [
        (
            item["achievementId"],
            item["name"],
            item["unlockedCount"],
            item["inProgressCount"],
            item["unlockRate"],
        )
        for item in body
    ]


async def get_board(client: Any, **params: Any) -> list[tuple[Any, ...]]:
    response = await client.get(LEADERBOARD, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    for entry in body:
        assert set(entry) == ENTRY_FIELDS, entry
        assert TIMESTAMP.match(entry["lastUnlockedAt"])
    return [
        (entry["rank"], entry["userId"], entry["unlockedCount"], entry["lastUnlockedAt"])
        for entry in body
    ]


async def get_entry(client: Any, user: int) -> tuple[Any, ...]:
    response = await client.get(f"{LEADERBOARD}/{user}")
    assert response.status_code == 200, response.text
    entry = response.json()
    assert set(entry) == ENTRY_FIELDS, entry
    return (entry["rank"], entry["userId"], entry["unlockedCount"], entry["lastUnlockedAt"])


def brute_stats(sql: Any) -> list[Any]:
    [(users,)] = sql("SELECT count(DISTINCT user_id) FROM user_achievements")
    rows = sql(
        "SELECT a.id, a.name, count(ua.unlocked_at), count(ua.id) - count(ua.unlocked_at)"
        " FROM achievements a LEFT JOIN user_achievements ua ON ua.achievement_id = a.id"
        " GROUP BY a.id ORDER BY a.id"
    )
    return [
        stat(achievement, name, unlocked, locked, unlocked / users if users else 0)
        for achievement, name, unlocked, locked in rows
    ]


def brute_board(sql: Any) -> list[tuple[Any, ...]]:
    rows = sql(
        "SELECT user_id, count(*), max(unlocked_at) FROM user_achievements"
        " WHERE unlocked_at IS NOT NULL GROUP BY user_id"
        " ORDER BY count(*) DESC, max(unlocked_at), user_id"
    )
    return [(rank, *row) for rank, row in enumerate(rows, start=1)]


async def full_board(client: Any) -> list[tuple[Any, ...]]:
    entries: list[tuple[Any, ...]] = []
    while True:
        page = await get_board(client, limit=100, offset=len(entries))
        entries.extend(page)
        if len(page) < 100:
            return entries


async def assert_matches_brute_force(client: Any, sql: Any) -> None:
    assert await get_stats(client) == brute_stats(sql)
    board = brute_board(sql)
    assert await full_board(client) == board
    for entry in board:
        assert await get_entry(client, entry[1]) == entry


# --- the hand-computed fixture ------------------------------------------------------------------


async def test_stats_of_the_fixture(client: Any) -> None:
    world = await build(client)
    a1, a2, a3, a4 = world.achievements
    # 5 users have a progress row (101-105); 106 has none and does not count.
    assert await get_stats(client) == [
        stat(a1, "Zeta", 4, 1, 4 / 5),
        stat(a2, "alpha", 2, 1, 2 / 5),
        stat(a3, "Mu", 1, 2, 1 / 5),
        stat(a4, "beta", 0, 0, 0),
    ]


async def test_stats_with_nothing(client: Any) -> None:
    assert await get_stats(client) == []
    first = (await create_definition(client, "Lonely"))["id"]
    assert await get_stats(client) == [stat(first, "Lonely", 0, 0, 0)]
    assert await get_board(client) == []


async def test_stats_follow_a_rename(client: Any) -> None:
    achievement = (await create_definition(client, "Old name"))["id"]
    await unlock(client, 1, achievement)
    response = await client.put(f"{DEFINITIONS}/{achievement}", json={"name": "New name"})
    assert response.status_code == 200, response.text
    assert await get_stats(client) == [stat(achievement, "New name", 1, 0, 1)]


async def test_leaderboard_of_the_fixture(client: Any) -> None:
    world = await build(client)
    at = world.at
    # Three users reach 2 unlocks: 103 first (step 3), then 102 (step 6), then 101 (step 7).
    # 104 unlocked at step 5, earlier than two of them, but has fewer. 105 and 106 have none.
    expected = [
        (1, 103, 2, at[3]),
        (2, 102, 2, at[6]),
        (3, 101, 2, at[7]),
        (4, 104, 1, at[5]),
    ]
    assert await get_board(client) == expected
    assert await get_board(client, limit=100, offset=0) == expected
    assert await get_board(client, limit=2) == expected[:2]
    assert await get_board(client, limit=2, offset=1) == expected[1:3]
    assert await get_board(client, limit=1, offset=3) == expected[3:]
    assert await get_board(client, offset=3) == expected[3:]
    assert await get_board(client, offset=4) == []
    assert await get_board(client, offset=1000) == []
    for entry in expected:
        assert await get_entry(client, entry[1]) == entry


async def test_leaderboard_entry_of_a_user_without_unlocks_is_404(client: Any) -> None:
    await build(client)
    for user in (105, 106, 999, 2**63 - 1):
        response = await client.get(f"{LEADERBOARD}/{user}")
        assert_problem(response, 404, "USER_NOT_FOUND")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "x"}, "offset"),
        ({"offset": "1.0"}, "offset"),
    ],
)
async def test_bad_leaderboard_parameters_are_422(
    client: Any, params: dict[str, Any], field: str
) -> None:
    response = await client.get(LEADERBOARD, params=params)
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]


@pytest.mark.parametrize("user", ["abc", "0", "-1", str(2**63), "1.5"])
async def test_bad_leaderboard_user_id_is_422(client: Any, user: str) -> None:
    response = await client.get(f"{LEADERBOARD}/{user}")
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["userId"]


async def test_equal_count_and_moment_rank_by_user_id(client: Any, sql: Any) -> None:
    """A tie on both count and lastUnlockedAt goes to the smaller userId.

    Two HTTP unlocks cannot be made to share a millisecond, so the rows are written straight
    into the file's tables (the storage API.md describes), as another process could.
    """
    achievement = (await create_definition(client, "Tied"))["id"]
    moment = "2026-01-02T03:04:05.678Z"
    later = "2026-01-02T03:04:05.679Z"
    for user, unlocked_at in ((30, moment), (20, moment), (10, later), (40, moment)):
        sql("INSERT INTO users (id, created_at) VALUES (?, ?)", user, moment)
        sql(
            "INSERT INTO user_achievements"
            " (user_id, achievement_id, unlocked_at, metadata, created_at, updated_at)"
            " VALUES (?, ?, ?, '{}', ?, ?)",
            user,
            achievement,
            unlocked_at,
            moment,
            unlocked_at,
        )
    expected = [(1, 20, 1, moment), (2, 30, 1, moment), (3, 40, 1, moment), (4, 10, 1, later)]
    assert await get_board(client) == expected
    assert await get_entry(client, 40) == expected[2]
    assert await get_stats(client) == [stat(achievement, "Tied", 4, 0, 1)]


# --- recomputed after deletions -----------------------------------------------------------------


async def test_after_deleting_a_user(client: Any, sql: Any) -> None:
    world = await build(client)
    a1, a2, a3, a4 = world.achievements
    at = world.at
    response = await client.delete("/users/103")
    assert response.status_code == 200, response.text
    assert response.json() == {"userId": 103, "deletedProgress": 3}

    assert await get_board(client) == [(1, 102, 2, at[6]), (2, 101, 2, at[7]), (3, 104, 1, at[5])]
    assert_problem(await client.get(f"{LEADERBOARD}/103"), 404, "USER_NOT_FOUND")
    assert await get_entry(client, 104) == (3, 104, 1, at[5])
    # 4 users with progress left: 101, 102, 104, 105.
    assert await get_stats(client) == [
        stat(a1, "Zeta", 3, 1, 3 / 4),
        stat(a2, "alpha", 1, 1, 1 / 4),
        stat(a3, "Mu", 1, 1, 1 / 4),
        stat(a4, "beta", 0, 0, 0),
    ]
    await assert_matches_brute_force(client, sql)


async def test_after_deleting_an_achievement(client: Any, sql: Any) -> None:
    world = await build(client)
    a1, a2, a3, a4 = world.achievements
    at = world.at
    assert (await client.delete("/users/103")).status_code == 200
    response = await client.delete(f"{DEFINITIONS}/{a1}")
    assert response.status_code == 200, response.text

    # 102 is back to its step-4 unlock (its newest remaining one); 104 has none left.
    assert await get_board(client) == [(1, 102, 1, at[4]), (2, 101, 1, at[7])]
    assert await get_entry(client, 102) == (1, 102, 1, at[4])
    assert_problem(await client.get(f"{LEADERBOARD}/104"), 404, "USER_NOT_FOUND")
    # Users with progress: 101 (a2), 102 (a3), 104 (a2, locked), 105 (a3, locked).
    assert await get_stats(client) == [
        stat(a2, "alpha", 1, 1, 1 / 4),
        stat(a3, "Mu", 1, 1, 1 / 4),
        stat(a4, "beta", 0, 0, 0),
    ]
    await assert_matches_brute_force(client, sql)


async def test_after_deleting_unlocked_progress(client: Any, sql: Any) -> None:
    world = await build(client)
    a1, a2, *_ = world.achievements
    at = world.at
    # 101's newest unlock (a2, step 7) goes: it falls back to 1 unlock at step 2.
    response = await client.delete(PROGRESS, params={"userId": 101, "achievementId": a2})
    assert response.status_code == 200, response.text
    assert await get_board(client) == [
        (1, 103, 2, at[3]),
        (2, 102, 2, at[6]),
        (3, 101, 1, at[2]),
        (4, 104, 1, at[5]),
    ]
    # 104 loses its only unlock but keeps a locked row: still counted among users with progress.
    response = await client.delete(PROGRESS, params={"userId": 104, "achievementId": a1})
    assert response.status_code == 200, response.text
    assert_problem(await client.get(f"{LEADERBOARD}/104"), 404, "USER_NOT_FOUND")
    assert (await get_stats(client))[0] == stat(a1, "Zeta", 3, 1, 3 / 5)
    await assert_matches_brute_force(client, sql)


async def random_steps(
    client: Any, rng: random.Random, achievements: list[int], users: list[int], steps: int
) -> None:
    """Unlocks, upserts, deletions of progress and of users, at random."""
    for _ in range(steps):
        user, achievement = rng.choice(users), rng.choice(achievements)
        roll = rng.random()
        if roll < 0.55:
            await unlock(client, user, achievement)
        elif roll < 0.8:
            await upsert(client, user, achievement, {"n": rng.randint(0, 9)})
        elif roll < 0.92:
            response = await client.delete(
                PROGRESS, params={"userId": user, "achievementId": achievement}
            )
            assert response.status_code in (200, 404), response.text
        else:
            response = await client.delete(f"/users/{user}")
            assert response.status_code in (200, 404), response.text


async def test_random_history_matches_brute_force(client: Any, sql: Any) -> None:
    rng = random.Random(424242)
    achievements = [(await create_definition(client, f"R{i}"))["id"] for i in range(4)]
    users = list(range(1, 9))
    for round_ in range(5):
        await random_steps(client, rng, achievements, users, 25)
        if round_ in (2, 3):
            gone = achievements.pop(rng.randrange(len(achievements)))
            assert (await client.delete(f"{DEFINITIONS}/{gone}")).status_code == 200
            achievements.append((await create_definition(client, f"New{round_}"))["id"])
        await assert_matches_brute_force(client, sql)


async def test_ranks_across_many_hours_and_days_match_brute_force(
    client: Any, sql: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's rank sums per-month, per-day and per-hour counters (unlock_months, unlock_days,
    unlock_hours) and counts only within their own hour: with a clock that jumps minutes to
    weeks between writes, and sometimes not at all (ties), the counters and every rank match a
    brute-force computation."""
    rng = random.Random(8080)
    clock = [datetime(2026, 3, 1, 23, 58, tzinfo=UTC)]

    def jumping_clock() -> str:
        clock[0] += timedelta(minutes=rng.choice((0, 0, 1, 20, 59, 61, 180, 1500, 15000)))
        return clock[0].strftime("%Y-%m-%dT%H:%M:%S.000Z")

    monkeypatch.setattr(store, "utc_now", jumping_clock)
    achievements = [(await create_definition(client, f"T{i}"))["id"] for i in range(3)]
    for _ in range(4):
        await random_steps(client, rng, achievements, list(range(1, 13)), 40)
        for table, length in (("unlock_hours", 13), ("unlock_days", 10), ("unlock_months", 7)):
            brute = (
                f"SELECT unlocked_count, substr(reached_at, 1, {length}), count(*) "
                "FROM user_stats WHERE unlocked_count > 0 GROUP BY 1, 2 ORDER BY 1, 2"
            )
            # Sums: one row a key on SQLite, deltas on PostgreSQL.
            column = table.removeprefix("unlock_")[:-1]
            kept = (
                f"SELECT unlocked_count, {column}, sum(users) FROM {table} "
                "GROUP BY 1, 2 HAVING sum(users) <> 0 ORDER BY 1, 2"
            )
            assert sql(kept) == sql(brute) != [], table
        await assert_matches_brute_force(client, sql)
    assert len(sql("SELECT DISTINCT day FROM unlock_days WHERE users > 0")) > 3
    assert len(sql("SELECT DISTINCT hour FROM unlock_hours WHERE users > 0")) > 5
    assert len(sql("SELECT DISTINCT month FROM unlock_months WHERE users > 0")) > 2
    for table in ("unlock_hours", "unlock_days", "unlock_months"):
        column = table.removeprefix("unlock_")[:-1]
        negative = f"SELECT 1 FROM {table} GROUP BY unlocked_count, {column} HAVING sum(users) < 0"
        assert sql(f"SELECT count(*) FROM ({negative}) AS negative") == [(0,)]


async def test_unlock_histogram_follows_every_change(client: Any, sql: Any) -> None:
    """The per-count user totals behind a user's rank match a brute-force count after unlocks,
    deletions of progress, of users and of achievements (cascades)."""
    ids = [(await client.post(DEFINITIONS, json={"name": f"H{i}"})).json()["id"] for i in range(4)]
    for user in range(1, 9):
        for achievement in ids[: user % 5]:
            body = {"userId": user, "achievementId": achievement}
            assert (await client.put(f"{PROGRESS}/unlock", json=body)).status_code == 200
    brute = (
        "SELECT unlocked_count, count(*) FROM user_stats WHERE unlocked_count > 0 "
        "GROUP BY unlocked_count ORDER BY unlocked_count"
    )
    kept = (
        "SELECT unlocked_count, sum(users) FROM unlock_histogram "
        "GROUP BY 1 HAVING sum(users) > 0 ORDER BY 1"
    )
    assert sql(kept) == sql(brute) != []
    await client.delete(PROGRESS, params={"userId": 4, "achievementId": ids[0]})
    await client.delete("/users/3")
    await client.delete(f"{DEFINITIONS}/{ids[1]}")
    assert sql(kept) == sql(brute)
    negative = "SELECT 1 FROM unlock_histogram GROUP BY unlocked_count HAVING sum(users) < 0"
    assert sql(f"SELECT count(*) FROM ({negative}) AS negative") == [(0,)]
