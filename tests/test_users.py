"""DELETE /users/{userId}: the user and its progress go; nobody else's."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest import Subtests

from tests.helpers import (
    DEFINITIONS,
    PROGRESS,
    assert_problem,
    create_definition,
    error_fields,
    unlock,
    upsert,
)

pytestmark = pytest.mark.both_backends

SNOWFLAKE = 80351110224678912
MAX = 2**63 - 1


async def test_delete_user_answers_with_the_count_and_cascades(client: Any, sql: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    b = (await create_definition(client, "B"))["id"]
    c = (await create_definition(client, "C"))["id"]
    await upsert(client, 1, a, {"n": 1})
    await unlock(client, 1, b)
    await upsert(client, 1, c)
    await unlock(client, 1, c)
    response = await client.delete("/users/1")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"userId": 1, "deletedProgress": 3}
    assert sql("SELECT count(*) FROM users") == [(0,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]
    for achievement in (a, b, c):
        got = await client.get(PROGRESS, params={"userId": 1, "achievementId": achievement})
        assert got.status_code == 200 and got.json() is None
    listed = await client.get(f"{PROGRESS}/list", params={"userId": 1})
    assert listed.json() == []


async def test_other_users_and_definitions_are_untouched(client: Any, sql: Any) -> None:
    a = await create_definition(client, "A")
    b = await create_definition(client, "B")
    await upsert(client, 1, a["id"], {"n": 1})
    await unlock(client, 1, b["id"])
    kept = [
        await upsert(client, 2, a["id"], {"n": 2}),
        await upsert(client, 3, b["id"], {"n": 3}),
    ]
    unlocked = await unlock(client, 3, a["id"])
    kept.append({key: value for key, value in unlocked.items() if key != "newlyUnlocked"})
    before = sql("SELECT * FROM user_achievements WHERE user_id <> 1 ORDER BY id")
    users_before = sql("SELECT * FROM users WHERE id <> 1 ORDER BY id")
    response = await client.delete("/users/1")
    assert response.json() == {"userId": 1, "deletedProgress": 2}
    assert sql("SELECT * FROM user_achievements ORDER BY id") == before
    assert sql("SELECT * FROM users ORDER BY id") == users_before
    assert [row[0] for row in users_before] == [2, 3]
    for row in kept:
        got = await client.get(
            PROGRESS, params={"userId": row["userId"], "achievementId": row["achievementId"]}
        )
        assert got.json() == row
    assert (await client.get(DEFINITIONS)).json() == [a, b]


async def test_user_with_no_progress_left_is_deleted_with_zero(client: Any, sql: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    await upsert(client, 3, a)
    deleted = await client.delete(PROGRESS, params={"userId": 3, "achievementId": a})
    assert deleted.status_code == 200
    assert sql("SELECT id FROM users") == [(3,)]  # the users row stays until now
    response = await client.delete("/users/3")
    assert response.status_code == 200
    assert response.json() == {"userId": 3, "deletedProgress": 0}
    assert sql("SELECT count(*) FROM users") == [(0,)]


async def test_user_whose_achievement_was_deleted_is_deleted_with_zero(
    client: Any, sql: Any
) -> None:
    a = (await create_definition(client, "A"))["id"]
    await unlock(client, 4, a)
    await client.delete(f"{DEFINITIONS}/{a}")
    response = await client.delete("/users/4")
    assert response.status_code == 200
    assert response.json() == {"userId": 4, "deletedProgress": 0}
    assert sql("SELECT count(*) FROM users") == [(0,)]


async def test_second_delete_is_404(client: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    await upsert(client, 5, a)
    assert (await client.delete("/users/5")).status_code == 200
    assert_problem(await client.delete("/users/5"), 404, "USER_NOT_FOUND")


async def test_a_deleted_user_can_start_again(client: Any, sql: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    await unlock(client, 6, a)
    await client.delete("/users/6")
    again = await unlock(client, 6, a)
    assert again["newlyUnlocked"] is True and again["metadata"] == {}
    assert sql("SELECT id FROM users") == [(6,)]
    assert (await client.delete("/users/6")).json() == {"userId": 6, "deletedProgress": 1}


async def test_never_written_user_is_404(client: Any, sql: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    await upsert(client, 1, a)
    for user in (77, 2, MAX):
        problem = assert_problem(await client.delete(f"/users/{user}"), 404, "USER_NOT_FOUND")
        assert "errors" not in problem
    assert sql("SELECT id FROM users") == [(1,)]


async def test_user_only_read_is_never_written(client: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    await client.get(PROGRESS, params={"userId": 8, "achievementId": a})
    await client.get(f"{PROGRESS}/list", params={"userId": 8})
    await client.post(PROGRESS, json={"userId": 8, "achievementId": a + 1})  # 404: no user made
    assert_problem(await client.delete("/users/8"), 404, "USER_NOT_FOUND")


async def test_big_user_ids_are_exact(client: Any, sql: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    for user in (MAX, SNOWFLAKE):
        await upsert(client, user, a)
        response = await client.delete(f"/users/{user}")
        assert response.status_code == 200
        assert f'"userId":{user}'.encode() in response.content.replace(b" ", b"")
        assert json.loads(response.content) == {"userId": user, "deletedProgress": 1}
    assert sql("SELECT count(*) FROM users") == [(0,)]


async def test_bad_user_id_is_422(client: Any, sql: Any, subtests: Subtests) -> None:
    a = (await create_definition(client, "A"))["id"]
    await upsert(client, 1, a)
    for bad in ["0", "-4", "abc", str(2**63), "1.0", "1e3", "99999999999999999999999"]:
        with subtests.test(userId=bad):
            response = await client.delete(f"/users/{bad}")
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == ["userId"]
    assert sql("SELECT id FROM users") == [(1,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]
