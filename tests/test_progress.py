"""User progress: upsert, get, list, unlock, delete, and users made by the first write."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from pytest import Subtests

from tests.helpers import (
    PROGRESS,
    TIMESTAMP,
    assert_problem,
    create_definition,
    error_fields,
    unlock,
    upsert,
)

pytestmark = pytest.mark.both_backends

SNOWFLAKE = 80351110224678912  # a Discord snowflake, above 2**53
MAX = 2**63 - 1
ROW_FIELDS = {"id", "userId", "achievementId", "unlockedAt", "metadata", "createdAt", "updatedAt"}


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Worker I"))["id"])


async def get(client: Any, user: int, achievement: int) -> Any:
    response = await client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
    assert response.status_code == 200, response.text
    return response.json()


async def listing(client: Any, user: int, **params: str) -> list[dict[str, Any]]:
    response = await client.get(f"{PROGRESS}/list", params={"userId": user, **params})
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def row_of(answer: dict[str, Any]) -> dict[str, Any]:
    """An unlock answer without `newlyUnlocked`: the UserAchievement itself."""
    return {key: value for key, value in answer.items() if key != "newlyUnlocked"}


def stored(sql: Any, user: int, achievement: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = sql(
        "SELECT id, unlocked_at, metadata, created_at, updated_at FROM user_achievements"
        " WHERE user_id = ? AND achievement_id = ?",
        user,
        achievement,
    )
    return rows


# --- upsert ---------------------------------------------------------------------------------


async def test_upsert_inserts_a_row(client: Any, achievement: int, sql: Any) -> None:
    response = await client.post(
        PROGRESS, json={"userId": 42, "achievementId": achievement, "metadata": {"current": 3}}
    )
    assert response.status_code == 200, response.text
    row = response.json()
    assert set(row) == ROW_FIELDS
    assert row["userId"] == 42 and row["achievementId"] == achievement
    assert type(row["id"]) is int
    assert row["unlockedAt"] is None
    assert row["metadata"] == {"current": 3}
    assert TIMESTAMP.match(row["createdAt"])
    assert row["createdAt"] == row["updatedAt"]
    assert await get(client, 42, achievement) == row
    assert stored(sql, 42, achievement) == [
        (row["id"], None, '{"current":3}', row["createdAt"], row["updatedAt"])
    ]


async def test_upsert_without_metadata_stores_an_empty_object(
    client: Any, achievement: int, sql: Any
) -> None:
    row = await upsert(client, 1, achievement)
    assert row["metadata"] == {}
    assert stored(sql, 1, achievement)[0][2] == "{}"


async def test_upsert_updates_the_row(client: Any, achievement: int, sql: Any) -> None:
    first = await upsert(client, 1, achievement, {"a": 1, "b": {"c": 2}})
    second = await upsert(client, 1, achievement, {"z": True})
    assert second["id"] == first["id"]
    assert second["metadata"] == {"z": True}  # replaced, not merged
    assert second["createdAt"] == first["createdAt"]
    assert second["updatedAt"] > first["updatedAt"]
    assert TIMESTAMP.match(second["updatedAt"])
    assert second["unlockedAt"] is None
    assert await get(client, 1, achievement) == second
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]


async def test_upsert_without_metadata_replaces_it_with_empty(
    client: Any, achievement: int
) -> None:
    first = await upsert(client, 1, achievement, {"a": 1})
    second = await upsert(client, 1, achievement)
    assert second["metadata"] == {}
    assert second["updatedAt"] > first["updatedAt"]
    assert (await get(client, 1, achievement))["metadata"] == {}


async def test_updated_at_moves_on_every_upsert(client: Any, achievement: int) -> None:
    stamps = [(await upsert(client, 1, achievement, {"i": i}))["updatedAt"] for i in range(8)]
    assert stamps == sorted(set(stamps))


async def test_null_metadata_is_refused(client: Any, achievement: int, sql: Any) -> None:
    response = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": None}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]
    assert sql("SELECT count(*) FROM users") == [(0,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


async def test_null_metadata_on_an_existing_row_changes_nothing(
    client: Any, achievement: int, sql: Any
) -> None:
    row = await upsert(client, 1, achievement, {"kept": 1})
    before = stored(sql, 1, achievement)
    response = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": None}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert stored(sql, 1, achievement) == before
    assert await get(client, 1, achievement) == row


async def test_upsert_never_touches_unlocked_at(client: Any, achievement: int) -> None:
    await upsert(client, 1, achievement, {"n": 1})
    unlocked = row_of(await unlock(client, 1, achievement))
    after = await upsert(client, 1, achievement, {"n": 2})
    assert after["unlockedAt"] == unlocked["unlockedAt"] is not None
    assert after["createdAt"] == unlocked["createdAt"]
    assert after["updatedAt"] > unlocked["updatedAt"]
    assert after["metadata"] == {"n": 2}
    again = await upsert(client, 1, achievement)
    assert again["unlockedAt"] == unlocked["unlockedAt"]


async def test_first_write_creates_the_users_row(client: Any, achievement: int, sql: Any) -> None:
    assert sql("SELECT count(*) FROM users") == [(0,)]
    await upsert(client, 7, achievement)
    users = sql("SELECT id, created_at FROM users")
    assert [user[0] for user in users] == [7]
    assert TIMESTAMP.match(users[0][1])
    await upsert(client, 7, achievement, {"again": 1})
    assert sql("SELECT id, created_at FROM users") == users


async def test_first_unlock_creates_the_users_row(client: Any, achievement: int, sql: Any) -> None:
    await unlock(client, 8, achievement)
    assert sql("SELECT id FROM users") == [(8,)]


async def test_different_users_on_one_achievement(client: Any, achievement: int, sql: Any) -> None:
    a = await upsert(client, 1, achievement, {"n": 1})
    b = await upsert(client, 2, achievement, {"n": 2})
    assert a["id"] != b["id"]
    assert (a["userId"], b["userId"]) == (1, 2)
    await unlock(client, 2, achievement)
    assert await get(client, 1, achievement) == a
    got_b = await get(client, 2, achievement)
    assert got_b["metadata"] == {"n": 2} and got_b["unlockedAt"] is not None
    assert sql("SELECT user_id FROM user_achievements ORDER BY user_id") == [(1,), (2,)]
    assert sql("SELECT id FROM users ORDER BY id") == [(1,), (2,)]


async def test_one_user_on_several_achievements(client: Any, achievement: int) -> None:
    other = (await create_definition(client, "Other"))["id"]
    a = await upsert(client, 1, achievement, {"which": "a"})
    b = await upsert(client, 1, other, {"which": "b"})
    assert a["id"] != b["id"]
    assert (await get(client, 1, achievement))["metadata"] == {"which": "a"}
    assert (await get(client, 1, other))["metadata"] == {"which": "b"}


async def test_concurrent_first_upserts_leave_one_row(
    client: Any, achievement: int, sql: Any
) -> None:
    responses = await asyncio.gather(
        *(
            client.post(
                PROGRESS, json={"userId": 77, "achievementId": achievement, "metadata": {"i": i}}
            )
            for i in range(50)
        )
    )
    assert [response.status_code for response in responses] == [200] * 50
    rows = [response.json() for response in responses]
    assert len({row["id"] for row in rows}) == 1
    assert len({row["createdAt"] for row in rows}) == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]
    assert sql("SELECT id FROM users") == [(77,)]
    final = await get(client, 77, achievement)
    assert final["metadata"] in [{"i": i} for i in range(50)]
    assert final["updatedAt"] == max(row["updatedAt"] for row in rows)


INVALID_UPSERTS: list[tuple[Any, str]] = [
    ({"achievementId": 1}, "userId"),
    ({"userId": 1}, "achievementId"),
    ({"userId": "01", "achievementId": 1}, "userId"),
    ({"userId": 1, "achievementId": "01"}, "achievementId"),
    ({"userId": 0, "achievementId": 1}, "userId"),
    ({"userId": -5, "achievementId": 1}, "userId"),
    ({"userId": 2**63, "achievementId": 1}, "userId"),
    ({"userId": 1, "achievementId": 0}, "achievementId"),
    ({"userId": 1.5, "achievementId": 1}, "userId"),
    ({"userId": None, "achievementId": 1}, "userId"),
    ({"userId": 1, "achievementId": 1, "unlockedAt": "2026-01-01T00:00:00.000Z"}, "unlockedAt"),
    ({"userId": 1, "achievementId": 1, "metadata": "{}"}, "metadata"),
]


async def test_upsert_validates_its_body(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    assert achievement == 1
    for body, field in INVALID_UPSERTS:
        with subtests.test(body=body):
            response = await client.post(PROGRESS, json=body)
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == [field]
    assert sql("SELECT count(*) FROM users") == [(0,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


# --- get ------------------------------------------------------------------------------------


async def test_get_returns_the_row(client: Any, achievement: int) -> None:
    row = await upsert(client, 3, achievement, {"x": [1, 2]})
    response = await client.get(PROGRESS, params={"userId": 3, "achievementId": achievement})
    assert response.status_code == 200
    assert response.json() == row


async def test_get_answers_null_when_there_is_no_row(client: Any, achievement: int) -> None:
    other = (await create_definition(client, "Other"))["id"]
    await upsert(client, 1, achievement)
    await upsert(client, 2, other)
    for user, target in [(3, achievement), (1, 999), (1, other), (2, achievement), (MAX, MAX)]:
        response = await client.get(PROGRESS, params={"userId": user, "achievementId": target})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json")
        assert response.content.strip() == b"null"


BAD_QUERIES: list[tuple[dict[str, str], str]] = [
    ({"achievementId": "1"}, "userId"),
    ({"userId": "1"}, "achievementId"),
    ({"userId": "x", "achievementId": "1"}, "userId"),
    ({"userId": "1.0", "achievementId": "1"}, "userId"),
    ({"userId": "1", "achievementId": "0"}, "achievementId"),
    ({"userId": "-1", "achievementId": "1"}, "userId"),
    ({"userId": str(2**63), "achievementId": "1"}, "userId"),
    ({"userId": "1", "achievementId": "abc"}, "achievementId"),
]


@pytest.mark.parametrize("method", ["get", "delete"])
async def test_progress_query_is_validated(
    client: Any, achievement: int, subtests: Subtests, method: str
) -> None:
    row = await upsert(client, 1, achievement)
    for params, field in BAD_QUERIES:
        with subtests.test(params=params):
            response = await getattr(client, method)(PROGRESS, params=params)
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == [field]
    assert await get(client, 1, achievement) == row


# --- list -----------------------------------------------------------------------------------


async def test_list_orders_unlocked_first_then_locked(client: Any) -> None:
    ids = [(await create_definition(client, f"A{i}"))["id"] for i in range(6)]
    # Timestamps have millisecond resolution: keep the steps apart so that none tie.
    steps: list[tuple[str, int, dict[str, Any] | None]] = [
        ("upsert", ids[0], None),
        ("upsert", ids[1], None),
        ("unlock", ids[1], None),  # the older unlock...
        ("upsert", ids[2], None),
        ("unlock", ids[3], None),  # ...the newer one
        ("upsert", ids[4], None),
        ("upsert", ids[1], {"touched": True}),  # newest update, older unlock
        ("upsert", ids[0], {"touched": True}),  # now the newest locked row
    ]
    for kind, target, metadata in steps:
        if kind == "unlock":
            await unlock(client, 1, target)
        else:
            await upsert(client, 1, target, metadata)
        await asyncio.sleep(0.003)
    await upsert(client, 2, ids[5])  # another user's rows are not listed
    await unlock(client, 2, ids[2])
    listed = await listing(client, 1)
    assert [row["achievementId"] for row in listed] == [ids[3], ids[1], ids[0], ids[4], ids[2]]
    assert all(row["userId"] == 1 for row in listed)
    for row in listed:
        assert row == await get(client, 1, row["achievementId"])
    every = await listing(client, 1, unlockedOnly="false")
    assert every == listed
    only = await listing(client, 1, unlockedOnly="true")
    assert [row["achievementId"] for row in only] == [ids[3], ids[1]]
    assert only == listed[:2]


async def test_list_ordering_with_ties_falls_back_to_id_descending(client: Any, sql: Any) -> None:
    ids = [(await create_definition(client, f"A{i}"))["id"] for i in range(7)]
    rows = [(await upsert(client, 1, achievement))["id"] for achievement in ids]
    # (unlocked_at, updated_at) per row, written straight into the file to force exact ties.
    stamps = [
        (None, "2026-01-01T00:00:03.000Z"),
        ("2026-01-01T00:00:01.000Z", "2026-01-01T00:00:09.000Z"),
        (None, "2026-01-01T00:00:05.000Z"),
        ("2026-01-01T00:00:02.000Z", "2026-01-01T00:00:02.000Z"),
        ("2026-01-01T00:00:02.000Z", "2026-01-01T00:00:02.500Z"),
        (None, "2026-01-01T00:00:05.000Z"),
        (None, "2026-01-01T00:00:08.000Z"),
    ]
    for row, (unlocked_at, updated_at) in zip(rows, stamps, strict=True):
        sql(
            "UPDATE user_achievements SET unlocked_at = ?, updated_at = ? WHERE id = ?",
            unlocked_at,
            updated_at,
            row,
        )
    listed = await listing(client, 1)
    order = [4, 3, 1, 6, 5, 2, 0]
    assert [row["id"] for row in listed] == [rows[index] for index in order]
    only = await listing(client, 1, unlockedOnly="true")
    assert [row["id"] for row in only] == [rows[4], rows[3], rows[1]]


async def test_list_of_unknown_user_is_empty(client: Any, achievement: int) -> None:
    await upsert(client, 1, achievement)
    assert await listing(client, 12345) == []
    assert await listing(client, 12345, unlockedOnly="true") == []


async def test_list_of_user_with_only_locked_rows(client: Any, achievement: int) -> None:
    row = await upsert(client, 1, achievement)
    assert await listing(client, 1) == [row]
    assert await listing(client, 1, unlockedOnly="true") == []


async def test_list_refuses_other_booleans(client: Any, subtests: Subtests) -> None:
    for value in ["yes", "1", "0", "TRUE", "True", ""]:
        with subtests.test(unlockedOnly=value):
            response = await client.get(
                f"{PROGRESS}/list", params={"userId": 1, "unlockedOnly": value}
            )
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == ["unlockedOnly"]


async def test_list_validates_user_id(client: Any, subtests: Subtests) -> None:
    for params in [{}, {"userId": "0"}, {"userId": "x"}, {"userId": str(2**63)}]:
        with subtests.test(params=params):
            response = await client.get(f"{PROGRESS}/list", params=params)
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == ["userId"]


# --- unlock ---------------------------------------------------------------------------------


async def test_unlock_of_a_locked_row_keeps_metadata_and_moves_updated_at(
    client: Any, achievement: int, sql: Any
) -> None:
    row = await upsert(client, 1, achievement, {"current": 100, "nested": {"a": [1]}})
    response = await client.put(
        f"{PROGRESS}/unlock", json={"userId": 1, "achievementId": achievement}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert list(answer)[-1] == "newlyUnlocked"
    assert set(answer) == ROW_FIELDS | {"newlyUnlocked"}
    assert answer["newlyUnlocked"] is True
    assert answer["id"] == row["id"]
    assert answer["metadata"] == {"current": 100, "nested": {"a": [1]}}
    assert TIMESTAMP.match(answer["unlockedAt"])
    assert answer["updatedAt"] > row["updatedAt"]
    assert answer["unlockedAt"] >= row["updatedAt"]
    assert answer["createdAt"] == row["createdAt"]
    assert await get(client, 1, achievement) == row_of(answer)
    assert stored(sql, 1, achievement) == [
        (
            row["id"],
            answer["unlockedAt"],
            '{"current":100,"nested":{"a":[1]}}',
            row["createdAt"],
            answer["updatedAt"],
        )
    ]


async def test_unlock_creates_a_missing_row(client: Any, achievement: int, sql: Any) -> None:
    answer = await unlock(client, 9, achievement)
    assert answer["newlyUnlocked"] is True
    assert answer["userId"] == 9 and answer["achievementId"] == achievement
    assert answer["metadata"] == {}
    assert TIMESTAMP.match(answer["unlockedAt"])
    assert answer["unlockedAt"] == answer["createdAt"] == answer["updatedAt"]
    assert await get(client, 9, achievement) == row_of(answer)
    assert sql("SELECT id FROM users") == [(9,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]


async def test_repeated_unlock_changes_nothing(client: Any, achievement: int, sql: Any) -> None:
    await upsert(client, 1, achievement, {"m": 1})
    first = await unlock(client, 1, achievement)
    before = stored(sql, 1, achievement)
    await asyncio.sleep(0.002)
    second = await unlock(client, 1, achievement)
    third = await unlock(client, 1, achievement)
    assert first["newlyUnlocked"] is True
    assert second["newlyUnlocked"] is False and third["newlyUnlocked"] is False
    assert row_of(second) == row_of(first) == row_of(third)
    assert second["unlockedAt"] == first["unlockedAt"]
    assert second["updatedAt"] == first["updatedAt"]
    assert stored(sql, 1, achievement) == before


async def test_concurrent_unlocks_answer_newly_unlocked_once(
    client: Any, achievement: int, sql: Any
) -> None:
    answers = await asyncio.gather(*(unlock(client, 5, achievement) for _ in range(50)))
    assert [answer["newlyUnlocked"] for answer in answers].count(True) == 1
    assert len({answer["unlockedAt"] for answer in answers}) == 1
    assert len({answer["id"] for answer in answers}) == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]
    assert sql("SELECT id FROM users") == [(5,)]


async def test_concurrent_unlocks_of_a_locked_row(client: Any, achievement: int) -> None:
    await upsert(client, 6, achievement, {"kept": True})
    answers = await asyncio.gather(*(unlock(client, 6, achievement) for _ in range(50)))
    assert [answer["newlyUnlocked"] for answer in answers].count(True) == 1
    assert {json.dumps(answer["metadata"]) for answer in answers} == {'{"kept": true}'}
    assert len({answer["unlockedAt"] for answer in answers}) == 1


INVALID_UNLOCKS: list[tuple[Any, str]] = [
    ({"achievementId": 1}, "userId"),
    ({"userId": 1}, "achievementId"),
    ({"userId": "01", "achievementId": 1}, "userId"),
    ({"userId": 1, "achievementId": 1, "metadata": {}}, "metadata"),
    ({"userId": 1, "achievementId": 2**63}, "achievementId"),
    ({"userId": 1, "achievementId": 1, "unlockedAt": "2026-01-01T00:00:00.000Z"}, "unlockedAt"),
]


async def test_unlock_validates_its_body(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    assert achievement == 1
    for body, field in INVALID_UNLOCKS:
        with subtests.test(body=body):
            response = await client.put(f"{PROGRESS}/unlock", json=body)
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == [field]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]
    assert sql("SELECT count(*) FROM users") == [(0,)]


# --- delete ---------------------------------------------------------------------------------


async def test_delete_returns_the_row_and_leaves_others(
    client: Any, achievement: int, sql: Any
) -> None:
    other = (await create_definition(client, "Other"))["id"]
    doomed = await upsert(client, 1, achievement, {"x": 1})
    kept = await upsert(client, 1, other, {"y": 2})
    kept_too = await upsert(client, 2, achievement)
    response = await client.delete(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert response.status_code == 200
    assert response.json() == doomed
    assert await get(client, 1, achievement) is None
    assert await get(client, 1, other) == kept
    assert await get(client, 2, achievement) == kept_too
    assert stored(sql, 1, achievement) == []
    assert sql("SELECT count(*) FROM user_achievements") == [(2,)]
    assert sql("SELECT id FROM users ORDER BY id") == [(1,), (2,)]


async def test_delete_of_an_unlocked_row(client: Any, achievement: int, sql: Any) -> None:
    await upsert(client, 1, achievement, {"x": 1})
    row = row_of(await unlock(client, 1, achievement))
    response = await client.delete(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert response.status_code == 200
    assert response.json() == row
    assert response.json()["unlockedAt"] is not None
    assert await get(client, 1, achievement) is None
    assert await listing(client, 1) == []
    # The users row stays until DELETE /users/{userId}.
    assert sql("SELECT id FROM users") == [(1,)]
    # A later unlock starts over: a new row, newly unlocked again.
    again = await unlock(client, 1, achievement)
    assert again["newlyUnlocked"] is True and again["metadata"] == {}


async def test_delete_of_a_missing_row_is_404(client: Any, achievement: int, sql: Any) -> None:
    other = (await create_definition(client, "Other"))["id"]
    row = await upsert(client, 1, achievement)
    for user, target in [(1, other), (2, achievement), (1, 999), (MAX, MAX)]:
        response = await client.delete(PROGRESS, params={"userId": user, "achievementId": target})
        assert_problem(response, 404, "PROGRESS_NOT_FOUND")
    assert await get(client, 1, achievement) == row
    assert sql("SELECT id FROM users") == [(1,)]


async def test_second_delete_is_404(client: Any, achievement: int) -> None:
    await upsert(client, 1, achievement)
    params = {"userId": 1, "achievementId": achievement}
    assert (await client.delete(PROGRESS, params=params)).status_code == 200
    assert_problem(await client.delete(PROGRESS, params=params), 404, "PROGRESS_NOT_FOUND")


# --- unknown achievements -------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [("post", PROGRESS), ("put", f"{PROGRESS}/unlock")])
async def test_writes_to_unknown_achievement_are_404_and_create_nothing(
    client: Any, achievement: int, sql: Any, method: str, path: str
) -> None:
    for target in (achievement + 1, 999, MAX):
        response = await getattr(client, method)(path, json={"userId": 1, "achievementId": target})
        assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    assert sql("SELECT count(*) FROM users") == [(0,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]
    # An existing user gets no row either.
    await upsert(client, 2, achievement)
    response = await getattr(client, method)(path, json={"userId": 2, "achievementId": 999})
    assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    assert sql("SELECT user_id, achievement_id FROM user_achievements") == [(2, achievement)]
    assert sql("SELECT id FROM users") == [(2,)]


async def test_write_after_definition_deleted_is_404(
    client: Any, achievement: int, sql: Any
) -> None:
    await client.delete(f"/users/achievements/definitions/{achievement}")
    response = await client.post(PROGRESS, json={"userId": 1, "achievementId": achievement})
    assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    assert sql("SELECT count(*) FROM users") == [(0,)]


# --- ids beyond 2**53 -----------------------------------------------------------------------


def raw_field(content: bytes, name: str) -> str:
    """The literal digits of `"name": N` in a response body, as the server wrote them."""
    match = re.search(rb'"' + name.encode() + rb'"\s*:\s*(-?[0-9][0-9.eE+-]*)', content)
    assert match, content
    return match.group(1).decode()


@pytest.mark.parametrize("user", [MAX, SNOWFLAKE, 2**53 + 1])
async def test_big_user_ids_come_back_exactly(
    client: Any, achievement: int, sql: Any, user: int
) -> None:
    response = await client.post(
        PROGRESS, json={"userId": user, "achievementId": achievement, "metadata": {"u": user}}
    )
    assert response.status_code == 200
    assert raw_field(response.content, "userId") == str(user)
    assert json.loads(response.content)["userId"] == user
    got = await client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
    assert raw_field(got.content, "userId") == str(user)
    assert json.loads(got.content)["metadata"] == {"u": user}
    listed = await client.get(f"{PROGRESS}/list", params={"userId": user})
    assert raw_field(listed.content, "userId") == str(user)
    unlocked = await client.put(
        f"{PROGRESS}/unlock", json={"userId": user, "achievementId": achievement}
    )
    assert raw_field(unlocked.content, "userId") == str(user)
    deleted = await client.delete(PROGRESS, params={"userId": user, "achievementId": achievement})
    assert raw_field(deleted.content, "userId") == str(user)
    assert sql("SELECT id FROM users") == [(user,)]


async def test_biggest_achievement_id_comes_back_exactly(client: Any, sql: Any) -> None:
    # Only the file can hold an achievement with the largest id: ids are assigned by the service.
    stamp = "2026-01-01T00:00:00.000Z"
    sql(
        "INSERT INTO achievements (id, name, description, created_at, updated_at)"
        " VALUES (?, 'Huge', NULL, ?, ?)",
        MAX,
        stamp,
        stamp,
    )
    got = await client.get(f"/users/achievements/definitions/{MAX}")
    assert got.status_code == 200
    assert raw_field(got.content, "id") == str(MAX)
    row = await client.post(PROGRESS, json={"userId": SNOWFLAKE, "achievementId": MAX})
    assert row.status_code == 200
    assert raw_field(row.content, "achievementId") == str(MAX)
    assert raw_field(row.content, "userId") == str(SNOWFLAKE)
    fetched = await client.get(PROGRESS, params={"userId": SNOWFLAKE, "achievementId": MAX})
    assert raw_field(fetched.content, "achievementId") == str(MAX)
    assert json.loads(fetched.content) == row.json()
    assert sql("SELECT user_id, achievement_id FROM user_achievements") == [(SNOWFLAKE, MAX)]
