"""POST /users/achievements/progress/apply: atomic ops on metadata and the unlock moment."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import PROGRESS, TIMESTAMP, assert_problem, create_definition, error_fields

APPLY = f"{PROGRESS}/apply"


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Worker I"))["id"])


async def apply(
    client: Any, achievement: int, ops: list[dict[str, Any]], user: int = 1, **extra: Any
) -> Any:
    return await client.post(
        APPLY, json={"userId": user, "achievementId": achievement, "ops": ops, **extra}
    )


async def applied(client: Any, achievement: int, ops: list[dict[str, Any]], **extra: Any) -> Any:
    response = await apply(client, achievement, ops, **extra)
    assert response.status_code == 200, response.text
    return response.json()


def op(name: str, path: str, value: Any = None) -> dict[str, Any]:
    return {"op": name, "path": path} | ({} if name == "remove" else {"value": value})


async def test_each_op_on_top_level_and_nested_paths(client: Any, achievement: int) -> None:
    row = await applied(
        client,
        achievement,
        [
            op("inc", "count", 2),
            op("inc", "count", 3),
            op("max", "best", 5),
            op("max", "best", 3),
            op("min", "fastest", 9),
            op("min", "fastest", 4),
            op("set", "a.b.c", "deep"),
            op("set", "a.list", [1, {"x": None}]),
            op("inc", "a.b.n", 1),
            op("set", "gone", True),
            op("remove", "gone"),
        ],
    )
    assert row["metadata"] == {
        "count": 5,
        "best": 5,
        "fastest": 4,
        "a": {"b": {"c": "deep", "n": 1}, "list": [1, {"x": None}]},
    }
    assert row["newlyUnlocked"] is False and row["unlockedAt"] is None


async def test_missing_row_is_created_with_empty_metadata(
    client: Any, achievement: int, sql: Any
) -> None:
    row = await applied(client, achievement, [])
    assert row["metadata"] == {} and row["unlockedAt"] is None
    assert sql("SELECT id FROM users") == [(1,)]


async def test_remove_of_missing_key_or_parent_creates_nothing(
    client: Any, achievement: int
) -> None:
    row = await applied(client, achievement, [op("remove", "x"), op("remove", "p.q.r")])
    assert row["metadata"] == {}


async def test_numbers_are_exact(client: Any, achievement: int) -> None:
    response = await apply(
        client,
        achievement,
        [op("inc", "f", 0.1), op("inc", "f", 0.2), op("inc", "big", 2**70), op("inc", "big", 1)],
    )
    assert b'"f":0.3' in response.content
    assert b'"big":1180591620717411303425' in response.content


async def test_updated_at_moves_on_every_apply(client: Any, achievement: int) -> None:
    stamps = [(await applied(client, achievement, []))["updatedAt"] for _ in range(5)]
    assert stamps == sorted(set(stamps))


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ({"gte": 10}, True),
        ({"gte": 11}, False),
        ({"gt": 9}, True),
        ({"gt": 10}, False),
        ({"lte": 10}, True),
        ({"lte": 9.5}, False),
        ({"lt": 10.5}, True),
        ({"lt": 10}, False),
        ({"eq": 10}, True),
        ({"eq": 10.0}, True),
        ({"eq": "10"}, False),
    ],
)
async def test_comparators(
    client: Any, achievement: int, condition: dict[str, Any], holds: bool
) -> None:
    row = await applied(
        client, achievement, [op("set", "n", 10)], unlockWhen=[{"path": "n", **condition}]
    )
    assert row["newlyUnlocked"] is holds
    assert (row["unlockedAt"] is not None) is holds


@pytest.mark.parametrize(
    ("stored", "wanted", "holds"),
    [
        (True, 1, False),
        (1, True, False),
        (True, True, True),
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, True),
        ({"a": 1}, {"a": True}, False),
        ([1, 2], [2, 1], False),
        (None, None, True),
        ("x", "x", True),
    ],
)
async def test_eq_compares_json_values(
    client: Any, achievement: int, stored: Any, wanted: Any, holds: bool
) -> None:
    row = await applied(
        client, achievement, [op("set", "v", stored)], unlockWhen=[{"path": "v", "eq": wanted}]
    )
    assert row["newlyUnlocked"] is holds


async def test_missing_path_holds_for_nothing(client: Any, achievement: int) -> None:
    for condition in ({"eq": None}, {"lt": 1}, {"gte": 0}):
        row = await applied(client, achievement, [], unlockWhen=[{"path": "nope.x", **condition}])
        assert row["newlyUnlocked"] is False


async def test_ordering_on_non_number_does_not_hold(client: Any, achievement: int) -> None:
    row = await applied(
        client, achievement, [op("set", "s", "100")], unlockWhen=[{"path": "s", "gte": 1}]
    )
    assert row["newlyUnlocked"] is False


async def test_all_conditions_must_hold(client: Any, achievement: int) -> None:
    conditions = [{"path": "a", "gte": 1}, {"path": "b", "gte": 1}]
    first = await applied(client, achievement, [op("inc", "a", 1)], unlockWhen=conditions)
    assert first["newlyUnlocked"] is False
    second = await applied(client, achievement, [op("inc", "b", 1)], unlockWhen=conditions)
    assert second["newlyUnlocked"] is True and TIMESTAMP.match(second["unlockedAt"])


async def test_unlock_happens_once_and_unlocked_rows_still_take_ops(
    client: Any, achievement: int
) -> None:
    conditions = [{"path": "current", "gte": 3}]
    answers = [
        await applied(client, achievement, [op("inc", "current", 1)], unlockWhen=conditions)
        for _ in range(6)
    ]
    assert [a["newlyUnlocked"] for a in answers] == [False, False, True, False, False, False]
    assert answers[-1]["metadata"] == {"current": 6}
    assert {a["unlockedAt"] for a in answers[2:]} == {answers[2]["unlockedAt"]}


async def test_ops_empty_evaluates_conditions_only(client: Any, achievement: int) -> None:
    await applied(client, achievement, [op("set", "done", True)])
    row = await applied(client, achievement, [], unlockWhen=[{"path": "done", "eq": True}])
    assert row["newlyUnlocked"] is True and row["metadata"] == {"done": True}


async def test_seed_shapes(client: Any, achievement: int) -> None:
    streak = await applied(
        client,
        achievement,
        [
            op("set", "current", 4),
            op("max", "best", 4),
            op("set", "lastActivityDate", "2025-11-23"),
        ],
    )
    assert streak["metadata"] == {"current": 4, "best": 4, "lastActivityDate": "2025-11-23"}
    invest = (await create_definition(client, "Investor"))["id"]
    for profit in (12.5, -2.25, 30):
        row = await applied(
            client,
            invest,
            [op("inc", "profit", profit), op("inc", "count", 1), op("max", "bestTrade", profit)],
            unlockWhen=[{"path": "profit", "gte": 40}],
        )
    assert row["metadata"] == {"profit": 40.25, "count": 3, "bestTrade": 30}
    assert row["newlyUnlocked"] is True
    multi = (await create_definition(client, "Multi"))["id"]
    need = [{"path": "completed.workCount", "eq": True}, {"path": "completed.streak", "eq": True}]
    first = await applied(client, multi, [op("set", "completed.workCount", True)], unlockWhen=need)
    second = await applied(client, multi, [op("set", "completed.streak", True)], unlockWhen=need)
    assert (first["newlyUnlocked"], second["newlyUnlocked"]) == (False, True)


@pytest.mark.parametrize(
    ("stored", "ops"),
    [
        ("text", [op("inc", "v", 1)]),
        (True, [op("max", "v", 1)]),
        (None, [op("min", "v", 1)]),
        ([1], [op("inc", "v", 1)]),
        ({"x": 1}, [op("inc", "v", 1)]),
    ],
)
async def test_numeric_op_on_non_number_is_not_a_number(
    client: Any, achievement: int, sql: Any, stored: Any, ops: list[dict[str, Any]]
) -> None:
    await applied(client, achievement, [op("set", "v", stored), op("set", "keep", 1)])
    before = sql("SELECT metadata, updated_at FROM user_achievements")
    response = await apply(client, achievement, [op("inc", "keep", 1), *ops])
    assert_problem(response, 422, "NOT_A_NUMBER")
    assert sql("SELECT metadata, updated_at FROM user_achievements") == before


@pytest.mark.parametrize(
    "bad", [op("set", "", 1), op("set", "a..b", 1), op("set", ".a", 1), op("inc", "a.", 1),
            op("set", "num.x", 1), op("set", "list.x", 1), op("set", "str.x", 1),
            op("remove", "num.x"), op("inc", "nul.x", 1)],
)  # fmt: skip
async def test_invalid_paths(client: Any, achievement: int, sql: Any, bad: dict[str, Any]) -> None:
    await applied(
        client,
        achievement,
        [op("set", "num", 1), op("set", "list", []), op("set", "str", "s"), op("set", "nul", None)],
    )
    before = sql("SELECT metadata, updated_at FROM user_achievements")
    assert_problem(await apply(client, achievement, [op("inc", "c", 1), bad]), 422, "INVALID_PATH")
    assert sql("SELECT metadata, updated_at FROM user_achievements") == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"ops": [{"op": "mul", "path": "a", "value": 2}]}, "ops.0.op"),
        ({"ops": [{"op": "inc", "path": "a", "value": "5"}]}, "ops.0.value"),
        ({"ops": [{"op": "set", "path": "a", "value": 1}, {"op": "max", "path": "a"}]},
         "ops.1.value"),
        ({"ops": [{"op": "inc", "path": "a", "value": True}]}, "ops.0.value"),
        ({"ops": [{"op": "inc", "path": "a", "value": 1}] * 101}, "ops"),
        ({}, "ops"),
        ({"ops": [], "unlockWhen": [{"path": "a"}]}, "unlockWhen.0"),
        ({"ops": [], "unlockWhen": [{"path": "a", "gte": 1, "lt": 5}]}, "unlockWhen.0"),
        ({"ops": [], "unlockWhen": [{"path": "a", "gte": "1"}]}, "unlockWhen.0.gte"),
        ({"ops": [], "unlockWhen": [{"path": "a", "lt": None}]}, "unlockWhen.0.lt"),
    ],
)  # fmt: skip
async def test_validation_failures(
    client: Any, achievement: int, sql: Any, body: dict[str, Any], field: str
) -> None:
    response = await client.post(APPLY, json={"userId": 1, "achievementId": achievement, **body})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


async def test_overflowing_number_is_refused(client: Any, achievement: int, sql: Any) -> None:
    body = (
        b'{"userId": 1, "achievementId": %d, "ops": [{"op": "set", "path": "a", "value": 1e400}]}'
    )
    response = await client.post(
        APPLY, content=body % achievement, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["ops.0.value"]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


async def test_result_over_the_size_limit_is_refused(
    client: Any, achievement: int, sql: Any
) -> None:
    await applied(client, achievement, [op("set", "a", "x" * 40_000)])
    response = await apply(client, achievement, [op("set", "b", "y" * 30_000)])
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]
    assert len(sql("SELECT metadata FROM user_achievements")[0][0]) < 41_000


async def test_unknown_achievement_is_404(client: Any, sql: Any) -> None:
    assert_problem(await apply(client, 404, [op("inc", "a", 1)]), 404, "ACHIEVEMENT_NOT_FOUND")
    assert sql("SELECT count(*) FROM users") == [(0,)]
