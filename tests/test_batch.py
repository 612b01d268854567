"""POST /users/achievements/progress/batch: in order, in one transaction, all or nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PROGRESS, assert_problem, create_definition, error_fields, upsert

BATCH = f"{PROGRESS}/batch"


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return list(connection.iterdump())


@pytest.fixture
async def achievements(client: Any) -> list[int]:
    return [int((await create_definition(client, f"A{i}"))["id"]) for i in range(2)]


async def test_mixed_items_answer_like_the_single_endpoints(
    client: Any, achievements: list[int]
) -> None:
    a, b = achievements
    await upsert(client, 1, b, {"old": True})
    response = await client.post(
        BATCH,
        json={
            "operations": [
                {"type": "upsert", "userId": 1, "achievementId": a, "metadata": {"n": 1}},
                {"type": "apply", "userId": 1, "achievementId": a,
                 "ops": [{"op": "inc", "path": "n", "value": 2}],
                 "unlockWhen": [{"path": "n", "gte": 3}]},
                {"type": "unlock", "userId": 1, "achievementId": a},
                {"type": "delete", "userId": 1, "achievementId": b},
                {"type": "unlock", "userId": 2, "achievementId": b},
            ]
        },
    )  # fmt: skip
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["metadata"] for r in results] == [{"n": 1}, {"n": 3}, {"n": 3}, {"old": True}, {}]
    assert "newlyUnlocked" not in results[0] and "newlyUnlocked" not in results[3]
    assert [results[1]["newlyUnlocked"], results[2]["newlyUnlocked"]] == [True, False]
    assert results[4]["newlyUnlocked"] is True
    single = await client.get(PROGRESS, params={"userId": 1, "achievementId": a})
    assert single.json() == {k: v for k, v in results[2].items() if k != "newlyUnlocked"}
    gone = await client.get(PROGRESS, params={"userId": 1, "achievementId": b})
    assert gone.json() is None


@pytest.mark.parametrize(
    ("bad", "status", "code", "fields"),
    [
        ({"type": "unlock", "userId": 1, "achievementId": 999}, 404, "ACHIEVEMENT_NOT_FOUND", []),
        ({"type": "apply", "userId": 1, "achievementId": 1,
          "ops": [{"op": "inc", "path": "s", "value": 1}]}, 422, "NOT_A_NUMBER", []),
        ({"type": "apply", "userId": 1, "achievementId": 1,
          "ops": [{"op": "inc", "path": "s.x", "value": 1}]}, 422, "INVALID_PATH", []),
        ({"type": "upsert", "userId": "1", "achievementId": 1}, 422, "VALIDATION_FAILED",
         ["userId"]),
        ({"type": "apply", "userId": 1, "achievementId": 1,
          "ops": [{"op": "inc", "path": "n", "value": "1"}]}, 422, "VALIDATION_FAILED",
         ["ops.0.value"]),
        ({"type": "explode", "userId": 1}, 422, "VALIDATION_FAILED", ["type"]),
        ({"type": "delete", "userId": 1, "achievementId": 2}, 404, "PROGRESS_NOT_FOUND", []),
    ],
)  # fmt: skip
async def test_a_failing_item_undoes_the_whole_batch(
    client: Any,
    achievements: list[int],
    db_path: Path,
    bad: dict[str, Any],
    status: int,
    code: str,
    fields: list[str],
) -> None:
    await upsert(client, 1, 1, {"s": "text", "n": 1})
    before = dump(db_path)
    operations = [
        {"type": "apply", "userId": 1, "achievementId": 1,
         "ops": [{"op": "inc", "path": "n", "value": 1}]},
        {"type": "unlock", "userId": 3, "achievementId": 1},
        bad,
        {"type": "upsert", "userId": 4, "achievementId": 2},
    ]  # fmt: skip
    response = await client.post(BATCH, json={"operations": operations})
    problem = assert_problem(response, status, code)
    assert problem["index"] == 2
    assert error_fields(response) == fields
    assert dump(db_path) == before


async def test_first_failure_in_order_wins(client: Any, achievements: list[int]) -> None:
    operations = [
        {"type": "unlock", "userId": 1, "achievementId": 999},
        {"type": "upsert", "userId": "bad", "achievementId": 1},
    ]
    problem = assert_problem(
        await client.post(BATCH, json={"operations": operations}), 404, "ACHIEVEMENT_NOT_FOUND"
    )
    assert problem["index"] == 0


@pytest.mark.parametrize(
    "operations", [[], [{"type": "unlock", "userId": 1, "achievementId": 1}] * 1001]
)
async def test_batch_size_limits(
    client: Any, achievements: list[int], sql: Any, operations: list[Any]
) -> None:
    response = await client.post(BATCH, json={"operations": operations})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["operations"]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


async def test_a_thousand_items_in_one_batch(
    client: Any, achievements: list[int], sql: Any
) -> None:
    operations = [
        {"type": "apply", "userId": user, "achievementId": 1,
         "ops": [{"op": "inc", "path": "n", "value": 1}]}
        for user in range(1, 1001)
    ]  # fmt: skip
    response = await client.post(BATCH, json={"operations": operations})
    assert response.status_code == 200
    assert len(response.json()["results"]) == 1000
    assert sql("SELECT count(*), sum(metadata ->> 'n') FROM user_achievements") == [(1000, 1000)]


async def test_events_of_a_batch(client: Any, achievements: list[int]) -> None:
    operations = [{"type": "unlock", "userId": u, "achievementId": 1} for u in (1, 2, 1)]
    assert (await client.post(BATCH, json={"operations": operations})).status_code == 200
    events = (await client.get("/users/achievements/events")).json()
    assert [(e["id"], e["userId"]) for e in events] == [(1, 1), (2, 2)]
