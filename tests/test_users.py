"""DELETE /users/{userId}: the user and its progress go; nobody else's."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import assert_problem, create_definition, error_fields, unlock, upsert


async def test_delete_user_cascades_to_its_progress_only(client: Any, sql: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    b = (await create_definition(client, "B"))["id"]
    await upsert(client, 1, a, {"n": 1})
    await unlock(client, 1, b)
    await upsert(client, 2, a, {"n": 2})
    response = await client.delete("/users/1")
    assert response.status_code == 200
    assert response.json() == {"userId": 1, "deletedProgress": 2}
    assert sql("SELECT id FROM users") == [(2,)]
    assert sql("SELECT user_id, achievement_id FROM user_achievements") == [(2, a)]
    assert_problem(await client.delete("/users/1"), 404, "USER_NOT_FOUND")


async def test_user_without_progress_left_is_deleted_with_zero(client: Any) -> None:
    a = (await create_definition(client, "A"))["id"]
    await upsert(client, 3, a)
    await client.delete("/users/achievements/progress", params={"userId": 3, "achievementId": a})
    response = await client.delete("/users/3")
    assert response.status_code == 200
    assert response.json() == {"userId": 3, "deletedProgress": 0}


async def test_never_written_user_is_404(client: Any) -> None:
    assert_problem(await client.delete("/users/77"), 404, "USER_NOT_FOUND")


@pytest.mark.parametrize("bad", ["0", "abc", str(2**63), "-4"])
async def test_bad_user_id_is_422(client: Any, bad: str) -> None:
    response = await client.delete(f"/users/{bad}")
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["userId"]
