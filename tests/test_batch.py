"""POST /users/achievements/progress/batch: in order, in one transaction, all or nothing."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests import pg
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

BATCH = f"{PROGRESS}/batch"
ROW_FIELDS = {"id", "userId", "achievementId", "unlockedAt", "metadata", "createdAt", "updatedAt"}
INC = [{"op": "inc", "path": "n", "value": 1}]
WHEN = [{"path": "n", "gte": 2}]
ONE = {"type": "unlock", "userId": 1, "achievementId": 1}


def dump(path: Path | str) -> list[str]:
    """The whole database as SQL text: equal dumps, equal databases."""
    if isinstance(path, str):
        return pg.dump(path)
    with sqlite3.connect(path) as connection:
        return list(connection.iterdump())


def without_flag(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "newlyUnlocked"}


async def batch(client: Any, *operations: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.post(BATCH, json={"operations": list(operations)})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"results"}
    results: list[dict[str, Any]] = response.json()["results"]
    assert len(results) == len(operations)
    return results


async def get_row(client: Any, user: int, achievement: int) -> Any:
    response = await client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
async def achievements(client: Any) -> tuple[int, int]:
    first = await create_definition(client, "Worker I")
    second = await create_definition(client, "Streak", key="streak-7")
    return int(first["id"]), int(second["id"])


async def test_mixed_items_answer_in_order_like_the_single_endpoints(
    client: Any, sql: Any, achievements: tuple[int, int]
) -> None:
    a, b = achievements
    old = await upsert(client, 1, b, {"old": True})
    results = await batch(
        client,
        {"type": "upsert", "userId": 1, "achievementId": a, "metadata": {"n": 1, "k": [1]}},
        {
            "type": "apply",
            "userId": 1,
            "achievementId": a,
            "ops": [{"op": "inc", "path": "n", "value": 2}],
            "unlockWhen": [{"path": "n", "gte": 3}],
        },
        {"type": "unlock", "userId": 1, "achievementId": a},
        {"type": "delete", "userId": 1, "achievementId": b},
        {"type": "unlock", "userId": 2, "achievementKey": "streak-7"},
        {"type": "upsert", "userId": 3, "achievementKey": "streak-7"},
    )
    upserted, applied, unlocked, deleted, created, keyed = results
    assert set(upserted) == ROW_FIELDS and set(deleted) == ROW_FIELDS and set(keyed) == ROW_FIELDS
    assert set(applied) == set(unlocked) == set(created) == ROW_FIELDS | {"newlyUnlocked"}
    assert upserted["metadata"] == {"n": 1, "k": [1]} and upserted["unlockedAt"] is None
    assert applied["metadata"] == {"n": 3, "k": [1]} and applied["newlyUnlocked"] is True
    assert TIMESTAMP.match(applied["unlockedAt"])
    assert unlocked["newlyUnlocked"] is False and unlocked["unlockedAt"] == applied["unlockedAt"]
    assert unlocked["id"] == applied["id"] == upserted["id"]
    assert deleted == old
    assert created["userId"] == 2 and created["achievementId"] == b
    assert created["newlyUnlocked"] is True and created["metadata"] == {}
    assert keyed["userId"] == 3 and keyed["achievementId"] == b and keyed["metadata"] == {}
    # The database holds what the answers say.
    assert await get_row(client, 1, a) == without_flag(unlocked)
    assert await get_row(client, 1, b) is None
    assert await get_row(client, 2, b) == without_flag(created)
    assert await get_row(client, 3, b) == keyed
    assert sql("SELECT id FROM users ORDER BY id") == [(1,), (2,), (3,)]
    events = (await client.get("/users/achievements/events")).json()
    assert [(e["userId"], e["achievementId"]) for e in events] == [(1, a), (2, b)]


async def test_results_match_the_single_endpoints(
    client: Any, make_client: Any, tmp_path: Path, achievements: tuple[int, int]
) -> None:
    """The same requests one by one on a second file give the same answers, timestamps aside."""
    a, _ = achievements
    items: list[dict[str, Any]] = [
        {"type": "apply", "userId": 7, "achievementId": a, "ops": INC},
        {"type": "upsert", "userId": 7, "achievementId": a, "metadata": {"n": 9}},
        {
            "type": "apply",
            "userId": 7,
            "achievementId": a,
            "ops": INC,
            "unlockWhen": [{"path": "n", "eq": 10}],
        },
        {"type": "unlock", "userId": 7, "achievementId": a},
        {"type": "delete", "userId": 7, "achievementId": a},
    ]
    in_batch = await batch(client, *items)
    routes = {
        "upsert": ("POST", PROGRESS),
        "unlock": ("PUT", f"{PROGRESS}/unlock"),
        "apply": ("POST", f"{PROGRESS}/apply"),
    }
    async with make_client(db_path=tmp_path / "single.db") as single:
        same = (await create_definition(single, "Worker I"))["id"]
        one_by_one = []
        for item in items:
            body = {k: v for k, v in item.items() if k != "type"} | {"achievementId": same}
            if item["type"] == "delete":
                response = await single.delete(PROGRESS, params=body)
            else:
                method, path = routes[item["type"]]
                response = await single.request(method, path, json=body)
            assert response.status_code == 200, response.text
            one_by_one.append(response.json())

    def shape(result: dict[str, Any]) -> dict[str, Any]:
        """Timestamps as present or not; ids left out (another file)."""
        stamps = ("unlockedAt", "createdAt", "updatedAt")
        ids = ("id", "achievementId")
        return {k: (v is not None) if k in stamps else v for k, v in result.items() if k not in ids}

    assert [shape(r) for r in in_batch] == [shape(r) for r in one_by_one]


async def test_items_see_earlier_items(
    client: Any, sql: Any, achievements: tuple[int, int]
) -> None:
    a, b = achievements
    when = [{"path": "n", "gte": 2}]
    results = await batch(
        client,
        {"type": "apply", "userId": 1, "achievementId": a, "ops": INC, "unlockWhen": when},
        {"type": "apply", "userId": 1, "achievementId": a, "ops": INC, "unlockWhen": when},
        {"type": "apply", "userId": 1, "achievementId": a, "ops": INC, "unlockWhen": when},
        {"type": "unlock", "userId": 1, "achievementId": b},
        {"type": "unlock", "userId": 1, "achievementId": b},
        {"type": "delete", "userId": 1, "achievementId": b},
        {"type": "unlock", "userId": 1, "achievementId": b},
        {"type": "upsert", "userId": 5, "achievementId": a, "metadata": {"n": "text"}},
        {"type": "delete", "userId": 5, "achievementId": a},
        {"type": "apply", "userId": 5, "achievementId": a, "ops": INC},
    )
    assert [r["metadata"].get("n") for r in results[:3]] == [1, 2, 3]
    assert [r["newlyUnlocked"] for r in results[:3]] == [False, True, False]
    assert [r["newlyUnlocked"] for r in (results[3], results[4], results[6])] == [True, False, True]
    assert results[4]["unlockedAt"] == results[3]["unlockedAt"] == results[5]["unlockedAt"]
    assert results[9]["metadata"] == {"n": 1}  # the string was deleted with its row
    assert sql("SELECT count(*) FROM events") == [(3,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(3,)]


FAILURES: list[tuple[str, dict[str, Any], int, str, list[str]]] = [
    (
        "unknown achievement",
        {"type": "unlock", "userId": 1, "achievementId": 999},
        404,
        "ACHIEVEMENT_NOT_FOUND",
        [],
    ),
    (
        "unknown achievement key",
        {"type": "apply", "userId": 1, "achievementKey": "nope", "ops": INC},
        404,
        "ACHIEVEMENT_NOT_FOUND",
        [],
    ),
    (
        "missing progress",
        {"type": "delete", "userId": 9, "achievementId": 1},
        404,
        "PROGRESS_NOT_FOUND",
        [],
    ),
    (
        "inc without a value",
        {"type": "apply", "userId": 1, "achievementId": 1, "ops": [{"op": "inc", "path": "s"}]},
        422,
        "VALIDATION_FAILED",
        ["ops.0.value"],
    ),
    (
        "stored not a number",
        {
            "type": "apply",
            "userId": 1,
            "achievementId": 1,
            "ops": [{"op": "inc", "path": "n", "value": 1}, {"op": "max", "path": "s", "value": 1}],
        },
        422,
        "NOT_A_NUMBER",
        [],
    ),
    (
        "invalid path",
        {
            "type": "apply",
            "userId": 1,
            "achievementId": 1,
            "ops": [{"op": "set", "path": "s.x", "value": 1}],
        },
        422,
        "INVALID_PATH",
        [],
    ),
    (
        "string userId",
        {"type": "upsert", "userId": "01", "achievementId": 1},
        422,
        "VALIDATION_FAILED",
        ["userId"],
    ),
    (
        "value 5 as a string",
        {
            "type": "apply",
            "userId": 1,
            "achievementId": 1,
            "ops": [
                {"op": "set", "path": "a", "value": 1},
                {"op": "inc", "path": "n", "value": "5"},
            ],
        },
        422,
        "VALIDATION_FAILED",
        ["ops.1.value"],
    ),
    (
        "bad condition",
        {
            "type": "apply",
            "userId": 1,
            "achievementId": 1,
            "ops": [],
            "unlockWhen": [{"path": "n", "gte": "1"}],
        },
        422,
        "VALIDATION_FAILED",
        ["unlockWhen.0.gte"],
    ),
    (
        "metadata not an object",
        {"type": "upsert", "userId": 1, "achievementId": 1, "metadata": [1]},
        422,
        "VALIDATION_FAILED",
        ["metadata"],
    ),
    (
        "unknown field",
        {"type": "unlock", "userId": 1, "achievementId": 1, "metadata": {}},
        422,
        "VALIDATION_FAILED",
        ["metadata"],
    ),
    (
        "unknown type",
        {"type": "explode", "userId": 1, "achievementId": 1},
        422,
        "VALIDATION_FAILED",
        ["type"],
    ),
]


@pytest.mark.parametrize("position", [0, 2, 4], ids=["first", "middle", "last"])
@pytest.mark.parametrize(
    ("bad", "status", "code", "fields"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
async def test_a_failing_item_undoes_the_whole_batch(
    client: Any,
    db_path: Path,
    achievements: tuple[int, int],
    position: int,
    bad: dict[str, Any],
    status: int,
    code: str,
    fields: list[str],
) -> None:
    a, b = achievements
    await upsert(client, 1, a, {"s": "text", "n": 1})
    await unlock(client, 2, b)
    before = dump(db_path)
    good: list[dict[str, Any]] = [
        {"type": "apply", "userId": 1, "achievementId": a, "ops": INC, "unlockWhen": WHEN},
        {"type": "unlock", "userId": 3, "achievementId": b},
        {"type": "delete", "userId": 2, "achievementId": b},
        {"type": "upsert", "userId": 4, "achievementId": a, "metadata": {"x": 1}},
    ]  # fmt: skip
    operations = [*good[:position], bad, *good[position:]]
    response = await client.post(BATCH, json={"operations": operations})
    problem = assert_problem(response, status, code)
    assert problem["index"] == position
    assert error_fields(response) == fields
    assert dump(db_path) == before


async def test_first_failure_in_order_wins(client: Any, achievements: tuple[int, int]) -> None:
    operations = [
        {"type": "upsert", "userId": 1, "achievementId": 1},
        {"type": "unlock", "userId": 1, "achievementId": 999},
        {"type": "upsert", "userId": "bad", "achievementId": 1},
    ]
    response = await client.post(BATCH, json={"operations": operations})
    assert assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")["index"] == 1
    assert await get_row(client, 1, 1) is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"operations": []}, "operations"),
        (
            {"operations": [{"type": "unlock", "userId": 1, "achievementId": 1}] * 1001},
            "operations",
        ),
        ({}, "operations"),
        ({"operations": None}, "operations"),
        ({"operations": {"type": "unlock"}}, "operations"),
        ({"operations": [ONE], "x": 1}, "x"),
    ],
    ids=["0 items", "1001 items", "missing", "null", "object", "unknown field"],
)
async def test_malformed_batches_are_refused(
    client: Any, db_path: Path, achievements: tuple[int, int], body: dict[str, Any], field: str
) -> None:
    before = dump(db_path)
    response = await client.post(BATCH, json=body)
    problem = assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]
    assert "index" not in problem
    assert dump(db_path) == before


@pytest.mark.parametrize(
    "item",
    [
        {"userId": 1, "achievementId": 1},
        {"type": None, "userId": 1, "achievementId": 1},
        {"type": "Unlock", "userId": 1, "achievementId": 1},
        {"type": "get", "userId": 1, "achievementId": 1},
        [],
        "unlock",
    ],
    ids=["no type", "null type", "capitalised", "get", "array", "string"],
)
async def test_unknown_item_types_are_refused(
    client: Any, db_path: Path, achievements: tuple[int, int], item: Any
) -> None:
    before = dump(db_path)
    operations = [{"type": "unlock", "userId": 1, "achievementId": 1}, item]
    response = await client.post(BATCH, json={"operations": operations})
    assert assert_problem(response, 422, "VALIDATION_FAILED")["index"] == 1
    assert dump(db_path) == before


async def test_a_thousand_items(client: Any, sql: Any, achievements: tuple[int, int]) -> None:
    a, b = achievements
    operations = [
        {
            "type": "apply",
            "userId": 1,
            "achievementId": a,
            "ops": INC,
            "unlockWhen": [{"path": "n", "gte": 1000}],
        }
        for _ in range(999)
    ]
    operations.append({"type": "unlock", "userId": 2, "achievementId": b})
    results = await batch(client, *operations)
    assert [r["metadata"]["n"] for r in results[:999]] == list(range(1, 1000))
    assert not any(r["newlyUnlocked"] for r in results[:999])
    assert results[999]["newlyUnlocked"] is True
    assert sql("SELECT count(*) FROM user_achievements") == [(2,)]
    assert (await get_row(client, 1, a))["metadata"] == {"n": 999}
    # And 1000 distinct rows in one batch.
    rows = [{"type": "upsert", "userId": u, "achievementId": a} for u in range(10, 1010)]
    assert len(await batch(client, *rows)) == 1000
    assert sql("SELECT count(*) FROM users") == [(1002,)]
