"""User progress: upsert, get, list, unlock, delete, and users made by first write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import (
    PROGRESS,
    TIMESTAMP,
    assert_problem,
    create_definition,
    error_fields,
    unlock,
    upsert,
)

SNOWFLAKE = 80351110224678912
MAX = 2**63 - 1


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Worker I"))["id"])


async def get(client: Any, user: int, achievement: int) -> Any:
    response = await client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
    assert response.status_code == 200, response.text
    return response.json()


async def test_upsert_creates_the_row_and_its_user(client: Any, achievement: int, sql: Any) -> None:
    row = await upsert(client, SNOWFLAKE, achievement, {"current": 3})
    assert set(row) == {
        "id", "userId", "achievementId", "unlockedAt", "metadata", "createdAt", "updatedAt"
    }  # fmt: skip
    assert row["userId"] == SNOWFLAKE and row["achievementId"] == achievement
    assert row["unlockedAt"] is None and row["metadata"] == {"current": 3}
    assert TIMESTAMP.match(row["createdAt"]) and row["createdAt"] == row["updatedAt"]
    assert sql("SELECT id FROM users") == [(SNOWFLAKE,)]
    assert await get(client, SNOWFLAKE, achievement) == row


async def test_upsert_replaces_metadata_and_keeps_the_rest(client: Any, achievement: int) -> None:
    first = await upsert(client, 1, achievement, {"a": 1, "b": 2})
    await unlock(client, 1, achievement)
    unlocked = await get(client, 1, achievement)
    second = await upsert(client, 1, achievement, {"c": 3})
    assert second["id"] == first["id"]
    assert second["metadata"] == {"c": 3}
    assert second["createdAt"] == first["createdAt"]
    assert second["unlockedAt"] == unlocked["unlockedAt"] is not None
    assert second["updatedAt"] > unlocked["updatedAt"]
    third = await upsert(client, 1, achievement)
    assert third["metadata"] == {}


async def test_null_metadata_is_refused(client: Any, achievement: int, sql: Any) -> None:
    response = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": None}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]
    assert sql("SELECT count(*) FROM users") == [(0,)]


async def test_users_on_one_achievement_have_separate_rows(client: Any, achievement: int) -> None:
    a = await upsert(client, 1, achievement, {"n": 1})
    b = await upsert(client, 2, achievement, {"n": 2})
    assert a["id"] != b["id"]
    assert (await get(client, 1, achievement))["metadata"] == {"n": 1}
    assert (await get(client, 2, achievement))["metadata"] == {"n": 2}


async def test_concurrent_first_upserts_leave_one_row(
    client: Any, achievement: int, sql: Any
) -> None:
    rows = await asyncio.gather(*(upsert(client, 7, achievement, {"i": i}) for i in range(50)))
    assert len({row["id"] for row in rows}) == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]


async def test_get_answers_null_when_there_is_no_row(client: Any, achievement: int) -> None:
    await upsert(client, 1, achievement)
    assert await get(client, 2, achievement) is None
    assert await get(client, 1, 999) is None
    assert await get(client, MAX, MAX) is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"achievementId": "1"}, "userId"),
        ({"userId": "1"}, "achievementId"),
        ({"userId": "x", "achievementId": "1"}, "userId"),
        ({"userId": "1", "achievementId": "0"}, "achievementId"),
        ({"userId": str(2**63), "achievementId": "1"}, "userId"),
    ],
)
async def test_get_validates_its_query(client: Any, params: dict[str, str], field: str) -> None:
    response = await client.get(PROGRESS, params=params)
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]


async def test_list_orders_unlocked_first_then_locked(client: Any) -> None:
    ids = [(await create_definition(client, f"A{i}"))["id"] for i in range(5)]
    # Timestamps have millisecond resolution: keep the steps apart so that none tie.
    for write in (
        upsert(client, 1, ids[0]),
        unlock(client, 1, ids[1]),
        upsert(client, 1, ids[2]),
        unlock(client, 1, ids[3]),
        upsert(client, 1, ids[4]),
        upsert(client, 1, ids[0], {"touched": True}),  # now the newest locked row
    ):
        await write
        await asyncio.sleep(0.003)
    await upsert(client, 2, ids[0])  # another user's row is not listed
    response = await client.get(f"{PROGRESS}/list", params={"userId": 1})
    listed = [row["achievementId"] for row in response.json()]
    assert listed == [ids[3], ids[1], ids[0], ids[4], ids[2]]
    only = await client.get(f"{PROGRESS}/list", params={"userId": 1, "unlockedOnly": "true"})
    assert [row["achievementId"] for row in only.json()] == [ids[3], ids[1]]
    every = await client.get(f"{PROGRESS}/list", params={"userId": 1, "unlockedOnly": "false"})
    assert [row["achievementId"] for row in every.json()] == listed


async def test_list_of_unknown_user_is_empty(client: Any) -> None:
    response = await client.get(f"{PROGRESS}/list", params={"userId": 12345})
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize("value", ["yes", "1", "TRUE", ""])
async def test_list_refuses_other_booleans(client: Any, value: str) -> None:
    response = await client.get(f"{PROGRESS}/list", params={"userId": 1, "unlockedOnly": value})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["unlockedOnly"]


async def test_unlock_keeps_metadata_and_moves_updated_at(client: Any, achievement: int) -> None:
    row = await upsert(client, 1, achievement, {"current": 100})
    unlocked = await unlock(client, 1, achievement)
    assert unlocked["newlyUnlocked"] is True
    assert unlocked["metadata"] == {"current": 100}
    assert TIMESTAMP.match(unlocked["unlockedAt"])
    assert unlocked["updatedAt"] > row["updatedAt"]
    assert unlocked["createdAt"] == row["createdAt"]


async def test_unlock_creates_a_missing_row(client: Any, achievement: int, sql: Any) -> None:
    unlocked = await unlock(client, 9, achievement)
    assert unlocked["newlyUnlocked"] is True and unlocked["metadata"] == {}
    assert unlocked["unlockedAt"] == unlocked["createdAt"] == unlocked["updatedAt"]
    assert sql("SELECT id FROM users") == [(9,)]


async def test_repeated_unlock_changes_nothing(client: Any, achievement: int) -> None:
    first = await unlock(client, 1, achievement)
    second = await unlock(client, 1, achievement)
    assert second["newlyUnlocked"] is False
    assert {k: v for k, v in second.items() if k != "newlyUnlocked"} == {
        k: v for k, v in first.items() if k != "newlyUnlocked"
    }


async def test_concurrent_unlocks_answer_newly_unlocked_once(client: Any, achievement: int) -> None:
    answers = await asyncio.gather(*(unlock(client, 5, achievement) for _ in range(50)))
    assert sum(answer["newlyUnlocked"] for answer in answers) == 1
    assert len({answer["unlockedAt"] for answer in answers}) == 1


async def test_writes_to_unknown_achievement_are_404_and_create_nothing(
    client: Any, sql: Any
) -> None:
    for method, path in (("post", PROGRESS), ("put", f"{PROGRESS}/unlock")):
        response = await getattr(client, method)(path, json={"userId": 1, "achievementId": 42})
        assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    assert sql("SELECT count(*) FROM users") == [(0,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


async def test_delete_returns_the_row_and_leaves_others(
    client: Any, achievement: int, sql: Any
) -> None:
    other = (await create_definition(client, "Other"))["id"]
    await upsert(client, 1, achievement, {"x": 1})
    await unlock(client, 1, achievement)
    kept = await upsert(client, 1, other)
    kept_too = await upsert(client, 2, achievement)
    row = await get(client, 1, achievement)
    response = await client.delete(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert response.status_code == 200 and response.json() == row
    assert await get(client, 1, achievement) is None
    assert await get(client, 1, other) == kept
    assert await get(client, 2, achievement) == kept_too
    assert sql("SELECT id FROM users ORDER BY id") == [(1,), (2,)]
    again = await client.delete(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert_problem(again, 404, "PROGRESS_NOT_FOUND")


async def test_big_ids_come_back_exactly(client: Any, achievement: int) -> None:
    row = await upsert(client, MAX, achievement)
    assert (
        b'"userId":9223372036854775807'
        in (
            await client.get(PROGRESS, params={"userId": MAX, "achievementId": achievement})
        ).content
    )
    assert row["userId"] == MAX
