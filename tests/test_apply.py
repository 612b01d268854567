"""Atomic progress operations: `POST /users/achievements/progress/apply`."""

from __future__ import annotations

import json
from decimal import Decimal
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

pytestmark = pytest.mark.both_backends

APPLY = f"{PROGRESS}/apply"
USER = 80351110224678912
ROW_FIELDS = {"id", "userId", "achievementId", "unlockedAt", "metadata", "createdAt", "updatedAt"}


def canonical(value: Any) -> str:
    """JSON text that tells 1 from true and ignores key order."""
    return json.dumps(value, sort_keys=True)


def op(name: str, path: str, *value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"op": name, "path": path}
    if value:
        body["value"] = value[0]
    return body


async def apply(
    client: Any,
    achievement: int,
    ops: list[dict[str, Any]],
    unlock_when: list[dict[str, Any]] | None = None,
    user: int = USER,
) -> dict[str, Any]:
    body: dict[str, Any] = {"userId": user, "achievementId": achievement, "ops": ops}
    if unlock_when is not None:
        body["unlockWhen"] = unlock_when
    response = await client.post(APPLY, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def get_row(client: Any, achievement: int, user: int = USER) -> Any:
    response = await client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
    assert response.status_code == 200, response.text
    return response.json()


def snapshot(sql: Any) -> tuple[list[tuple[Any, ...]], ...]:
    """Everything an apply may touch, straight from the file."""
    return (
        sql("SELECT * FROM users ORDER BY id"),
        sql("SELECT * FROM user_achievements ORDER BY id"),
        sql("SELECT * FROM events ORDER BY id"),
    )


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Worker I"))["id"])


# --- the answer and the row ----------------------------------------------------------------


async def test_apply_creates_the_row_and_answers_it(
    client: Any, sql: Any, achievement: int
) -> None:
    result = await apply(client, achievement, [op("inc", "current", 1)])
    assert set(result) == ROW_FIELDS | {"newlyUnlocked"}
    assert result["userId"] == USER and result["achievementId"] == achievement
    assert result["metadata"] == {"current": 1}
    assert result["unlockedAt"] is None and result["newlyUnlocked"] is False
    assert TIMESTAMP.match(result["createdAt"]) and TIMESTAMP.match(result["updatedAt"])
    stored = await get_row(client, achievement)
    assert stored == {k: v for k, v in result.items() if k != "newlyUnlocked"}
    assert sql("SELECT id FROM users") == [(USER,)]
    rows = sql("SELECT user_id, achievement_id, unlocked_at, metadata FROM user_achievements")
    assert [(r[0], r[1], r[2], json.loads(r[3])) for r in rows] == [
        (USER, achievement, None, {"current": 1})
    ]


async def test_missing_row_is_created_with_empty_metadata(
    client: Any, sql: Any, achievement: int
) -> None:
    result = await apply(client, achievement, [])
    assert result["metadata"] == {} and result["newlyUnlocked"] is False
    assert result["unlockedAt"] is None
    assert sql("SELECT metadata FROM user_achievements") == [("{}",)]
    assert sql("SELECT id FROM users") == [(USER,)]


# --- each op -------------------------------------------------------------------------------

OP_CASES: list[tuple[str, Any, list[dict[str, Any]], Any]] = [
    # inc
    ("inc top-level", {"current": 5}, [op("inc", "current", 3)], {"current": 8}),
    ("inc negative", {"current": 5}, [op("inc", "current", -7)], {"current": -2}),
    ("inc nested", {"r": {"w": 2, "s": 1}}, [op("inc", "r.w", 5)], {"r": {"w": 7, "s": 1}}),
    ("inc missing from 0", {"other": 1}, [op("inc", "current", 4)], {"other": 1, "current": 4}),
    ("inc missing negative", {}, [op("inc", "current", -2)], {"current": -2}),
    ("inc creates objects", {}, [op("inc", "a.b.c", 1)], {"a": {"b": {"c": 1}}}),
    ("inc missing child", {"a": {"x": 1}}, [op("inc", "a.y", 2)], {"a": {"x": 1, "y": 2}}),
    ("inc on missing row", None, [op("inc", "current", 1)], {"current": 1}),
    # max
    ("max keeps larger stored", {"best": 5}, [op("max", "best", 3)], {"best": 5}),
    ("max takes larger given", {"best": 5}, [op("max", "best", 9)], {"best": 9}),
    ("max missing takes given", {}, [op("max", "best", -5)], {"best": -5}),
    ("max nested", {"s": {"best": 2}}, [op("max", "s.best", 4)], {"s": {"best": 4}}),
    ("max creates objects", {}, [op("max", "s.t.best", 7)], {"s": {"t": {"best": 7}}}),
    # min
    ("min takes smaller given", {"low": 5}, [op("min", "low", 3)], {"low": 3}),
    ("min keeps smaller stored", {"low": 5}, [op("min", "low", 9)], {"low": 5}),
    ("min missing takes given", {}, [op("min", "low", 7)], {"low": 7}),
    ("min nested", {"s": {"low": 2}}, [op("min", "s.low", -1)], {"s": {"low": -1}}),
    ("min creates objects", {"s": {}}, [op("min", "s.t.low", 3)], {"s": {"t": {"low": 3}}}),
    # set
    ("set string", {}, [op("set", "day", "2025-11-23")], {"day": "2025-11-23"}),
    ("set replaces", {"day": 1}, [op("set", "day", {"y": 2025})], {"day": {"y": 2025}}),
    ("set null", {"day": 1}, [op("set", "day", None)], {"day": None}),
    ("set array", {}, [op("set", "tags", [1, "a", True])], {"tags": [1, "a", True]}),
    ("set bool", {}, [op("set", "done", False)], {"done": False}),
    ("set nested", {"c": {"w": False}}, [op("set", "c.w", True)], {"c": {"w": True}}),
    ("set creates objects", {}, [op("set", "c.w.x", 1)], {"c": {"w": {"x": 1}}}),
    ("set object into object", {"c": {"a": 1}}, [op("set", "c.b", {})], {"c": {"a": 1, "b": {}}}),
    # remove
    ("remove top-level", {"a": 1, "b": 2}, [op("remove", "a")], {"b": 2}),
    ("remove nested", {"c": {"a": 1, "b": 2}}, [op("remove", "c.a")], {"c": {"b": 2}}),
    ("remove last child", {"c": {"a": 1}}, [op("remove", "c.a")], {"c": {}}),
    ("remove object", {"c": {"a": 1}, "d": 0}, [op("remove", "c")], {"d": 0}),
    ("remove missing key", {"a": 1}, [op("remove", "b")], {"a": 1}),
    ("remove missing parent", {"x": 1}, [op("remove", "a.b.c")], {"x": 1}),
    ("remove missing child", {"a": {}}, [op("remove", "a.b.c")], {"a": {}}),
    ("remove on missing row", None, [op("remove", "a.b")], {}),
    # several ops, in order
    (
        "in order",
        {"b": 1},
        [
            op("set", "a", 1),
            op("inc", "a", 2),
            op("max", "a", 10),
            op("min", "a", 4),
            op("remove", "b"),
        ],
        {"a": 4},
    ),
    ("remove then inc", {"n": 9}, [op("remove", "n"), op("inc", "n", 1)], {"n": 1}),
    ("set then inc", {}, [op("set", "n", 2), op("inc", "n", 3)], {"n": 5}),
    ("inc then set", {"n": 1}, [op("inc", "n", 3), op("set", "n", "x")], {"n": "x"}),
    (
        "set parent then child",
        {"a": 1},
        [op("set", "a", {}), op("set", "a.b", 2)],
        {"a": {"b": 2}},
    ),
    ("same path twice", {}, [op("inc", "n", 1), op("inc", "n", 1)], {"n": 2}),
]


async def test_each_op(client: Any, sql: Any, achievement: int) -> None:
    """Every case on its own user's row; all mismatches are reported together, by case name."""
    wrong = []
    for user, (name, initial, ops, expected) in enumerate(OP_CASES, start=1):
        if initial is not None:
            await upsert(client, user, achievement, initial)
        result = await apply(client, achievement, ops, user=user)
        row = await get_row(client, achievement, user)
        stored = sql("SELECT metadata FROM user_achievements WHERE user_id = ?", user)
        seen = [result["metadata"], row["metadata"], *(json.loads(r[0]) for r in stored)]
        if [canonical(m) for m in seen] != [canonical(expected)] * 3:
            wrong.append((name, seen[0], expected))
    assert wrong == []


async def test_ops_apply_atomically(client: Any, sql: Any, achievement: int) -> None:
    before = await upsert(client, USER, achievement, {"n": 1, "s": "text"})
    state = snapshot(sql)
    response = await client.post(
        APPLY,
        json={
            "userId": USER,
            "achievementId": achievement,
            "ops": [op("inc", "n", 1), op("set", "new", True), op("inc", "s", 1)],
            "unlockWhen": [{"path": "n", "gte": 0}],
        },
    )
    assert_problem(response, 422, "NOT_A_NUMBER")
    assert snapshot(sql) == state
    assert await get_row(client, achievement) == before


# --- unlockWhen ----------------------------------------------------------------------------


async def test_empty_ops_only_evaluates_unlock_when(
    client: Any, sql: Any, achievement: int
) -> None:
    await upsert(client, USER, achievement, {"current": 99})
    result = await apply(client, achievement, [], [{"path": "current", "gte": 100}])
    assert result["newlyUnlocked"] is False and result["unlockedAt"] is None
    await upsert(client, USER, achievement, {"current": 100})
    result = await apply(client, achievement, [], [{"path": "current", "gte": 100}])
    assert result["newlyUnlocked"] is True
    assert result["metadata"] == {"current": 100}
    assert TIMESTAMP.match(result["unlockedAt"])
    assert sql("SELECT unlocked_at FROM user_achievements") == [(result["unlockedAt"],)]


async def test_no_unlock_when_never_unlocks(client: Any, achievement: int) -> None:
    result = await apply(client, achievement, [op("inc", "current", 1000)])
    assert result["newlyUnlocked"] is False and result["unlockedAt"] is None


BIG = 2**64
CONDITION_CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
    ("gte equal", {"n": 10}, {"path": "n", "gte": 10}, True),
    ("gte above", {"n": 10.5}, {"path": "n", "gte": 10}, True),
    ("gte below", {"n": 9}, {"path": "n", "gte": 10}, False),
    ("gt equal", {"n": 10}, {"path": "n", "gt": 10}, False),
    ("gt above", {"n": 11}, {"path": "n", "gt": 10}, True),
    ("gt fraction", {"n": 10}, {"path": "n", "gt": 9.5}, True),
    ("lte equal", {"n": 10}, {"path": "n", "lte": 10}, True),
    ("lte above", {"n": 11}, {"path": "n", "lte": 10}, False),
    ("lt equal", {"n": 10}, {"path": "n", "lt": 10}, False),
    ("lt below", {"n": 9}, {"path": "n", "lt": 10}, True),
    ("lt negative", {"n": -1}, {"path": "n", "lt": 0}, True),
    ("gt big ints exact", {"n": BIG}, {"path": "n", "gt": BIG - 1}, True),
    ("lt big ints exact", {"n": BIG}, {"path": "n", "lt": BIG + 1}, True),
    ("gte big ints exact", {"n": BIG}, {"path": "n", "gte": BIG + 1}, False),
    ("gte on string", {"n": "10"}, {"path": "n", "gte": 5}, False),
    ("gte on true", {"n": True}, {"path": "n", "gte": 0}, False),
    ("lte on null", {"n": None}, {"path": "n", "lte": 5}, False),
    ("gte on array", {"n": [10]}, {"path": "n", "gte": 1}, False),
    ("gte on object", {"n": {"v": 10}}, {"path": "n", "gte": 0}, False),
    ("eq int float", {"n": 10}, {"path": "n", "eq": 10.0}, True),
    ("eq float int", {"n": 10.0}, {"path": "n", "eq": 10}, True),
    ("eq int other", {"n": 10}, {"path": "n", "eq": 11}, False),
    ("eq big ints exact", {"n": BIG}, {"path": "n", "eq": BIG + 1}, False),
    ("eq 1 true", {"n": 1}, {"path": "n", "eq": True}, False),
    ("eq true 1", {"n": True}, {"path": "n", "eq": 1}, False),
    ("eq 0 false", {"n": 0}, {"path": "n", "eq": False}, False),
    ("eq true", {"n": True}, {"path": "n", "eq": True}, True),
    ("eq false true", {"n": False}, {"path": "n", "eq": True}, False),
    ("eq string", {"n": "a"}, {"path": "n", "eq": "a"}, True),
    ("eq string number", {"n": "1"}, {"path": "n", "eq": 1}, False),
    ("eq null", {"n": None}, {"path": "n", "eq": None}, True),
    ("eq null false", {"n": None}, {"path": "n", "eq": False}, False),
    (
        "eq object key order",
        {"n": {"x": 1, "y": [1, 2]}},
        {"path": "n", "eq": {"y": [1, 2], "x": 1}},
        True,
    ),
    ("eq object subset", {"n": {"x": 1}}, {"path": "n", "eq": {"x": 1, "y": 2}}, False),
    ("eq object superset", {"n": {"x": 1, "y": 2}}, {"path": "n", "eq": {"x": 1}}, False),
    ("eq object value", {"n": {"x": 1}}, {"path": "n", "eq": {"x": True}}, False),
    ("eq empty object", {"n": {}}, {"path": "n", "eq": {}}, True),
    ("eq array", {"n": [1, 2, 3]}, {"path": "n", "eq": [1, 2, 3]}, True),
    ("eq array order", {"n": [1, 2]}, {"path": "n", "eq": [2, 1]}, False),
    ("eq array length", {"n": [1, 2]}, {"path": "n", "eq": [1, 2, 2]}, False),
    ("eq array bool", {"n": [1]}, {"path": "n", "eq": [True]}, False),
    (
        "eq nested by value",
        {"n": [1.0, {"a": 2, "b": 3}]},
        {"path": "n", "eq": [1, {"b": 3, "a": 2.0}]},
        True,
    ),
    ("eq array object", {"n": []}, {"path": "n", "eq": {}}, False),
    ("nested path", {"c": {"w": True}}, {"path": "c.w", "eq": True}, True),
    ("missing path gte", {}, {"path": "n", "gte": 0}, False),
    ("missing path lte", {}, {"path": "n", "lte": 0}, False),
    ("missing path eq null", {}, {"path": "n", "eq": None}, False),
    ("missing nested path", {"c": {}}, {"path": "c.w", "eq": None}, False),
    ("path through number", {"c": 1}, {"path": "c.w", "gte": 0}, False),
    ("path through array", {"c": [1]}, {"path": "c.0", "eq": 1}, False),
    ("path through string", {"c": "w"}, {"path": "c.w", "eq": "w"}, False),
    ("path through null", {"c": None}, {"path": "c.w", "eq": None}, False),
]


async def test_each_condition(client: Any, sql: Any, achievement: int) -> None:
    """Every case on its own user's row; all mismatches are reported together, by case name."""
    wrong = []
    for user, (name, metadata, condition, holds) in enumerate(CONDITION_CASES, start=1):
        await upsert(client, user, achievement, metadata)
        result = await apply(client, achievement, [], [condition], user=user)
        stored = sql("SELECT unlocked_at FROM user_achievements WHERE user_id = ?", user)
        seen = (result["newlyUnlocked"], result["unlockedAt"] is not None, stored[0][0] is not None)
        if seen != (holds, holds, holds):
            wrong.append((name, seen))
    assert wrong == []


async def test_all_conditions_must_hold(client: Any, achievement: int) -> None:
    conditions = [{"path": "a", "gte": 1}, {"path": "b", "eq": "yes"}, {"path": "c.d", "lt": 0}]
    result = await apply(
        client, achievement, [op("set", "a", 1), op("set", "b", "yes")], conditions
    )
    assert result["newlyUnlocked"] is False and result["unlockedAt"] is None
    result = await apply(client, achievement, [op("set", "c.d", 0)], conditions)
    assert result["newlyUnlocked"] is False and result["unlockedAt"] is None
    result = await apply(client, achievement, [op("inc", "c.d", -1)], conditions)
    assert result["newlyUnlocked"] is True and TIMESTAMP.match(result["unlockedAt"])


async def test_conditions_see_the_metadata_after_the_ops(client: Any, achievement: int) -> None:
    await upsert(client, USER, achievement, {"n": 5})
    result = await apply(client, achievement, [op("remove", "n")], [{"path": "n", "gte": 0}])
    assert result["newlyUnlocked"] is False
    result = await apply(client, achievement, [op("set", "n", 0)], [{"path": "n", "gte": 0}])
    assert result["newlyUnlocked"] is True


async def test_unlock_moment_and_after(client: Any, sql: Any, achievement: int) -> None:
    when = [{"path": "current", "gte": 3}]
    first = await apply(client, achievement, [op("inc", "current", 1)], when)
    second = await apply(client, achievement, [op("inc", "current", 1)], when)
    assert first["newlyUnlocked"] is second["newlyUnlocked"] is False
    assert first["unlockedAt"] is second["unlockedAt"] is None
    third = await apply(client, achievement, [op("inc", "current", 1)], when)
    assert third["newlyUnlocked"] is True and third["metadata"] == {"current": 3}
    unlocked_at = third["unlockedAt"]
    assert TIMESTAMP.match(unlocked_at) and unlocked_at >= first["createdAt"]
    # An unlocked row still takes ops; its unlockedAt never changes, newlyUnlocked stays false.
    fourth = await apply(client, achievement, [op("inc", "current", 1)], when)
    assert fourth["newlyUnlocked"] is False and fourth["unlockedAt"] == unlocked_at
    assert fourth["metadata"] == {"current": 4} and fourth["updatedAt"] > third["updatedAt"]
    fifth = await apply(client, achievement, [op("set", "current", 0)], when)
    assert fifth["newlyUnlocked"] is False and fifth["unlockedAt"] == unlocked_at
    assert fifth["metadata"] == {"current": 0}
    sixth = await apply(client, achievement, [op("inc", "current", 5)], when)
    assert sixth["newlyUnlocked"] is False and sixth["unlockedAt"] == unlocked_at
    assert sql("SELECT unlocked_at FROM user_achievements") == [(unlocked_at,)]
    assert sql("SELECT count(*) FROM events") == [(1,)]


async def test_row_unlocked_by_unlock_is_not_newly_unlocked(client: Any, achievement: int) -> None:
    unlocked = await unlock(client, USER, achievement)
    result = await apply(client, achievement, [op("inc", "n", 1)], [{"path": "n", "gte": 1}])
    assert result["newlyUnlocked"] is False
    assert result["unlockedAt"] == unlocked["unlockedAt"]
    assert result["metadata"] == {"n": 1}


async def test_updated_at_moves_on_every_apply(client: Any, achievement: int) -> None:
    results = [await apply(client, achievement, [])]
    for ops in (
        [],
        [op("remove", "missing")],
        [op("inc", "n", 1)],
        [op("max", "n", 0)],
        [op("set", "n", 1)],
        [],
    ):
        results.append(await apply(client, achievement, ops))
    stamps = [r["updatedAt"] for r in results]
    assert all(TIMESTAMP.match(s) for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # strictly later
    assert {r["createdAt"] for r in results} == {results[0]["createdAt"]}
    assert (await get_row(client, achievement))["updatedAt"] == stamps[-1]


# --- exact numbers -------------------------------------------------------------------------


def raw_metadata(text: str) -> Any:
    """Metadata with every non-integer number as the literal text it was sent as."""
    return json.loads(text, parse_float=str)["metadata"]


async def test_decimal_inc_is_exact(client: Any, sql: Any, achievement: int) -> None:
    body = {"userId": USER, "achievementId": achievement}
    response = await client.post(APPLY, json={**body, "ops": [op("inc", "x", 0.1)]})
    assert raw_metadata(response.text) == {"x": "0.1"}
    response = await client.post(
        APPLY, json={**body, "ops": [op("inc", "x", 0.2)], "unlockWhen": [{"path": "x", "eq": 0.3}]}
    )
    assert response.status_code == 200, response.text
    assert raw_metadata(response.text) == {"x": "0.3"}
    assert response.json()["newlyUnlocked"] is True
    get = await client.get(PROGRESS, params={"userId": USER, "achievementId": achievement})
    assert raw_metadata(get.text) == {"x": "0.3"}
    stored = sql("SELECT metadata FROM user_achievements")[0][0]
    assert json.loads(stored, parse_float=str) == {"x": "0.3"}


async def test_decimal_ops_in_one_request(client: Any, achievement: int) -> None:
    # Written by hand: 0.10000000000000001 is the same double as 0.1, so json.dumps would lose it.
    ops = (
        '{"op":"inc","path":"x","value":0.1},{"op":"inc","path":"x","value":0.2},'
        '{"op":"max","path":"y","value":0.1},{"op":"max","path":"y","value":0.10000000000000001},'
        '{"op":"min","path":"z","value":0.30000000000000004},{"op":"min","path":"z","value":0.3}'
    )
    body = f'{{"userId":{USER},"achievementId":{achievement},"ops":[{ops}]}}'
    response = await client.post(
        APPLY, content=body.encode(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    metadata = json.loads(response.text, parse_float=Decimal)["metadata"]
    assert metadata == {
        "x": Decimal("0.3"),
        "y": Decimal("0.10000000000000001"),
        "z": Decimal("0.3"),
    }
    assert raw_metadata(response.text)["x"] == "0.3"


async def test_decimal_sums_are_not_rounded(client: Any, achievement: int) -> None:
    # 31 significant digits: more than a default decimal context (28) keeps.
    await apply(client, achievement, [op("inc", "w", 1e-30), op("inc", "w", 1)])
    get = await client.get(PROGRESS, params={"userId": USER, "achievementId": achievement})
    exact = json.loads(get.text, parse_float=Decimal)["metadata"]["w"]
    assert exact == Decimal("1.000000000000000000000000000001")


async def test_big_integers_are_exact(client: Any, sql: Any, achievement: int) -> None:
    await upsert(client, USER, achievement, {"n": 2**53 + 1, "m": -(2**63)})
    ops = [
        op("inc", "n", 1),
        op("inc", "m", -(2**63)),
        op("inc", "big", 2**70),
        op("inc", "big", 1),
        op("max", "top", 2**64),
        op("max", "top", 2**64 + 1),
        op("min", "low", -(2**64)),
        op("min", "low", -(2**64) - 1),
    ]
    result = await apply(client, achievement, ops, [{"path": "big", "eq": 2**70 + 1}])
    expected = {
        "n": 2**53 + 2,
        "m": -(2**64),
        "big": 2**70 + 1,
        "top": 2**64 + 1,
        "low": -(2**64) - 1,
    }
    assert result["metadata"] == expected
    assert all(type(v) is int for v in result["metadata"].values())
    assert result["newlyUnlocked"] is True
    assert json.loads(sql("SELECT metadata FROM user_achievements")[0][0]) == expected


# --- the four shapes of the README ---------------------------------------------------------


async def test_counter(client: Any, achievement: int) -> None:
    await upsert(client, USER, achievement, {"current": 95})
    answers = [
        await apply(
            client, achievement, [op("inc", "current", 1)], [{"path": "current", "gte": 100}]
        )
        for _ in range(7)
    ]
    assert [a["metadata"]["current"] for a in answers] == list(range(96, 103))
    assert [a["newlyUnlocked"] for a in answers] == [False] * 4 + [True] + [False] * 2
    assert [a["unlockedAt"] is None for a in answers] == [True] * 4 + [False] * 3
    assert len({a["unlockedAt"] for a in answers[4:]}) == 1


async def test_streak(client: Any, achievement: int) -> None:
    await upsert(client, USER, achievement, {"current": 5, "best": 6, "lastActivityDate": "d0"})
    when = [{"path": "best", "gte": 7}]

    async def day(streak: int, date: str) -> dict[str, Any]:
        ops = [
            op("set", "current", streak),
            op("max", "best", streak),
            op("set", "lastActivityDate", date),
        ]
        return await apply(client, achievement, ops, when)

    broken = await day(1, "2025-11-20")
    assert broken["metadata"] == {"current": 1, "best": 6, "lastActivityDate": "2025-11-20"}
    assert broken["newlyUnlocked"] is False
    record = await day(7, "2025-11-21")
    assert record["metadata"] == {"current": 7, "best": 7, "lastActivityDate": "2025-11-21"}
    assert record["newlyUnlocked"] is True
    again = await day(2, "2025-11-23")
    assert again["metadata"] == {"current": 2, "best": 7, "lastActivityDate": "2025-11-23"}
    assert again["newlyUnlocked"] is False and again["unlockedAt"] == record["unlockedAt"]


async def test_investment_totals(client: Any, achievement: int) -> None:
    when = [{"path": "profit", "gte": 1000}]
    answers = []
    for trade in (12.5, -3.25, 990.75, 0.5):
        ops = [op("inc", "profit", trade), op("inc", "count", 1), op("max", "bestTrade", trade)]
        response = await client.post(
            APPLY,
            json={"userId": USER, "achievementId": achievement, "ops": ops, "unlockWhen": when},
        )
        assert response.status_code == 200, response.text
        answers.append(json.loads(response.text, parse_float=Decimal))
    metadata = [a["metadata"] for a in answers]
    assert [m["profit"] for m in metadata] == [
        Decimal("12.5"),
        Decimal("9.25"),
        Decimal("1000"),
        Decimal("1000.5"),
    ]
    assert [m["count"] for m in metadata] == [1, 2, 3, 4]
    assert [type(m["count"]) for m in metadata] == [int] * 4
    assert [m["bestTrade"] for m in metadata] == [
        Decimal("12.5"),
        Decimal("12.5"),
        Decimal("990.75"),
        Decimal("990.75"),
    ]
    assert [a["newlyUnlocked"] for a in answers] == [False, False, True, False]


async def test_multi_requirement(client: Any, achievement: int) -> None:
    when = [
        {"path": "completed.workCount", "eq": True},
        {"path": "completed.streak", "eq": True},
        {"path": "completed.investment", "eq": True},
    ]
    work = await apply(client, achievement, [op("set", "completed.workCount", True)], when)
    assert work["metadata"] == {"completed": {"workCount": True}}
    assert work["newlyUnlocked"] is False
    streak = await apply(client, achievement, [op("set", "completed.streak", True)], when)
    assert streak["newlyUnlocked"] is False
    # 1 is not true: still locked.
    invest = await apply(client, achievement, [op("set", "completed.investment", 1)], when)
    assert invest["newlyUnlocked"] is False and invest["unlockedAt"] is None
    invest = await apply(client, achievement, [op("set", "completed.investment", True)], when)
    assert invest["newlyUnlocked"] is True
    assert canonical(invest["metadata"]) == canonical(
        {"completed": {"workCount": True, "streak": True, "investment": True}}
    )


# --- errors: nothing applied ---------------------------------------------------------------

ERROR_CASES: list[tuple[str, Any, dict[str, Any], int, str, list[str] | None]] = [
    # NOT_A_NUMBER: the stored value is not a number.
    ("inc on string", {"n": "5"}, {"ops": [op("inc", "n", 1)]}, 422, "NOT_A_NUMBER", None),
    ("inc on true", {"n": True}, {"ops": [op("inc", "n", 1)]}, 422, "NOT_A_NUMBER", None),
    ("max on false", {"n": False}, {"ops": [op("max", "n", 1)]}, 422, "NOT_A_NUMBER", None),
    ("min on null", {"n": None}, {"ops": [op("min", "n", 1)]}, 422, "NOT_A_NUMBER", None),
    ("inc on object", {"n": {"a": 1}}, {"ops": [op("inc", "n", 1)]}, 422, "NOT_A_NUMBER", None),
    ("max on array", {"n": [1]}, {"ops": [op("max", "n", 1)]}, 422, "NOT_A_NUMBER", None),
    ("nested string", {"a": {"n": "x"}}, {"ops": [op("inc", "a.n", 1)]}, 422, "NOT_A_NUMBER", None),
    (
        "set earlier in request",
        {"n": 1},
        {"ops": [op("set", "n", "x"), op("inc", "n", 1)]},
        422,
        "NOT_A_NUMBER",
        None,
    ),
    (
        "after good ops",
        {"n": 1, "s": "x"},
        {"ops": [op("inc", "n", 1), op("set", "t", 1), op("min", "s", 1)]},
        422,
        "NOT_A_NUMBER",
        None,
    ),
    # INVALID_PATH
    ("empty path inc", {}, {"ops": [op("inc", "", 1)]}, 422, "INVALID_PATH", None),
    ("empty path set", {}, {"ops": [op("set", "", 1)]}, 422, "INVALID_PATH", None),
    ("empty path remove", {}, {"ops": [op("remove", "")]}, 422, "INVALID_PATH", None),
    ("empty segment", {}, {"ops": [op("set", "a..b", 1)]}, 422, "INVALID_PATH", None),
    ("leading dot", {}, {"ops": [op("set", ".a", 1)]}, 422, "INVALID_PATH", None),
    ("trailing dot", {}, {"ops": [op("inc", "a.", 1)]}, 422, "INVALID_PATH", None),
    ("empty segment remove", {}, {"ops": [op("remove", "a..b")]}, 422, "INVALID_PATH", None),
    ("through number", {"a": 1}, {"ops": [op("set", "a.b", 1)]}, 422, "INVALID_PATH", None),
    ("through array", {"a": [1]}, {"ops": [op("inc", "a.0", 1)]}, 422, "INVALID_PATH", None),
    ("through string", {"a": "s"}, {"ops": [op("max", "a.b", 1)]}, 422, "INVALID_PATH", None),
    ("through null", {"a": None}, {"ops": [op("set", "a.b", 1)]}, 422, "INVALID_PATH", None),
    ("through bool", {"a": True}, {"ops": [op("min", "a.b", 1)]}, 422, "INVALID_PATH", None),
    (
        "deep through number",
        {"a": {"b": 2}},
        {"ops": [op("set", "a.b.c.d", 1)]},
        422,
        "INVALID_PATH",
        None,
    ),
    ("remove through number", {"a": 1}, {"ops": [op("remove", "a.b")]}, 422, "INVALID_PATH", None),
    ("remove through array", {"a": []}, {"ops": [op("remove", "a.0")]}, 422, "INVALID_PATH", None),
    (
        "remove through string",
        {"a": "s"},
        {"ops": [op("remove", "a.b")]},
        422,
        "INVALID_PATH",
        None,
    ),
    (
        "through value set earlier",
        {},
        {"ops": [op("inc", "n", 1), op("set", "a", 1), op("set", "a.b", 2)]},
        422,
        "INVALID_PATH",
        None,
    ),
    # VALIDATION_FAILED
    ("unknown op", {}, {"ops": [op("add", "n", 1)]}, 422, "VALIDATION_FAILED", ["ops.0.op"]),
    (
        "unknown op later",
        {},
        {"ops": [op("inc", "n", 1), op("INC", "n", 1)]},
        422,
        "VALIDATION_FAILED",
        ["ops.1.op"],
    ),
    ("inc string 5", {}, {"ops": [op("inc", "n", "5")]}, 422, "VALIDATION_FAILED", ["ops.0.value"]),
    ("inc true", {}, {"ops": [op("inc", "n", True)]}, 422, "VALIDATION_FAILED", ["ops.0.value"]),
    ("inc null", {}, {"ops": [op("inc", "n", None)]}, 422, "VALIDATION_FAILED", ["ops.0.value"]),
    ("inc object", {}, {"ops": [op("inc", "n", {})]}, 422, "VALIDATION_FAILED", ["ops.0.value"]),
    ("inc no value", {}, {"ops": [op("inc", "n")]}, 422, "VALIDATION_FAILED", ["ops.0.value"]),
    ("max string", {}, {"ops": [op("max", "n", "9")]}, 422, "VALIDATION_FAILED", ["ops.0.value"]),
    (
        "min array later",
        {"n": 1},
        {"ops": [op("set", "m", 1), op("min", "n", [1])]},
        422,
        "VALIDATION_FAILED",
        ["ops.1.value"],
    ),
    (
        "101 ops",
        {},
        {"ops": [op("inc", "n", 1)] * 101},
        422,
        "VALIDATION_FAILED",
        ["ops"],
    ),
    ("missing ops", {}, {}, 422, "VALIDATION_FAILED", ["ops"]),
    ("null ops", {}, {"ops": None}, 422, "VALIDATION_FAILED", ["ops"]),
    ("ops object", {}, {"ops": {"op": "inc"}}, 422, "VALIDATION_FAILED", ["ops"]),
    (
        "no comparator",
        {},
        {"ops": [op("inc", "n", 1)], "unlockWhen": [{"path": "n"}]},
        422,
        "VALIDATION_FAILED",
        ["unlockWhen.0"],
    ),
    (
        "two comparators",
        {},
        {"ops": [op("inc", "n", 1)], "unlockWhen": [{"path": "n", "gte": 1, "lte": 5}]},
        422,
        "VALIDATION_FAILED",
        ["unlockWhen.0"],
    ),
    (
        "gte string",
        {},
        {"ops": [op("inc", "n", 1)], "unlockWhen": [{"path": "n", "gte": "1"}]},
        422,
        "VALIDATION_FAILED",
        ["unlockWhen.0.gte"],
    ),
    (
        "lt bool second condition",
        {},
        {
            "ops": [op("inc", "n", 1)],
            "unlockWhen": [{"path": "n", "eq": 1}, {"path": "n", "lt": True}],
        },
        422,
        "VALIDATION_FAILED",
        ["unlockWhen.1.lt"],
    ),
    (
        "gt null",
        {},
        {"ops": [op("inc", "n", 1)], "unlockWhen": [{"path": "n", "gt": None}]},
        422,
        "VALIDATION_FAILED",
        ["unlockWhen.0.gt"],
    ),
    (
        "result over 64 KiB",
        {"n": 1},
        {"ops": [op("inc", "n", 1), op("set", "s", "x" * 70_000)]},
        422,
        "VALIDATION_FAILED",
        ["metadata"],
    ),
    (
        "result over 64 KiB in pieces",
        {"a": "x" * 40_000},
        {"ops": [op("set", "b", "y" * 40_000)]},
        422,
        "VALIDATION_FAILED",
        ["metadata"],
    ),
    (
        "result 65537 bytes",
        {},
        {"ops": [op("set", "x", "x" * 65_529)]},
        422,
        "VALIDATION_FAILED",
        ["metadata"],
    ),
    (
        "result 33 levels",
        {},
        {"ops": [op("set", ".".join(["k"] * 32), {})]},
        422,
        "VALIDATION_FAILED",
        ["metadata"],
    ),
    (
        "userId string",
        {},
        {"userId": f"0{USER}", "ops": []},
        422,
        "VALIDATION_FAILED",
        ["userId"],
    ),
    ("unknown field", {}, {"ops": [], "colour": 1}, 422, "VALIDATION_FAILED", ["colour"]),
    (
        "unknown achievement",
        {},
        {"achievementId": 999_999, "ops": []},
        404,
        "ACHIEVEMENT_NOT_FOUND",
        None,
    ),
    (
        "unknown achievement key",
        {},
        {"achievementId": None, "achievementKey": "nope", "ops": [op("inc", "n", 1)]},
        404,
        "ACHIEVEMENT_NOT_FOUND",
        None,
    ),
]


@pytest.mark.parametrize(
    ("initial", "body", "status", "code", "fields"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
async def test_error_applies_nothing(
    client: Any,
    sql: Any,
    achievement: int,
    initial: Any,
    body: dict[str, Any],
    status: int,
    code: str,
    fields: list[str] | None,
) -> None:
    async def refused(user: int) -> None:
        payload = {"userId": user, "achievementId": achievement, **body}
        payload = {k: v for k, v in payload.items() if v is not None or k == "ops"}
        response = await client.post(APPLY, json=payload)
        problem = assert_problem(response, status, code)
        if fields is not None:
            assert error_fields(response) == fields, problem

    # On an existing row: the row, the user and the feed stay exactly as they were.
    before = await upsert(client, USER, achievement, initial)
    state = snapshot(sql)
    await refused(USER)
    assert snapshot(sql) == state
    assert await get_row(client, achievement) == before
    if initial == {}:
        # On a missing row (the error does not need stored data): nothing is created.
        fresh = USER + 1
        await refused(fresh)
        assert snapshot(sql) == state
        assert await get_row(client, achievement, fresh) is None
        assert sql("SELECT count(*) FROM users WHERE id = ?", fresh) == [(0,)]


async def test_limits_that_pass(client: Any, achievement: int) -> None:
    result = await apply(client, achievement, [op("inc", "n", 1)] * 100)
    assert result["metadata"] == {"n": 100}
    result = await apply(client, achievement, [op("remove", "n"), op("set", "x", "x" * 65_528)])
    assert result["metadata"] == {"x": "x" * 65_528}
    deep = ".".join(["k"] * 31)
    result = await apply(client, achievement, [op("remove", "x"), op("set", deep, {})])
    level: Any = result["metadata"]
    for _ in range(31):
        level = level["k"]
    assert level == {}
