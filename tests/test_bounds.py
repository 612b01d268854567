"""Requests that would cost far more than they weigh are refused cheaply (issue 14, Revision 2).

Numbers in ops and conditions compute in decimal128 (34 digits, a double's range): a value,
stored value or result beyond that range is 422 NUMBER_OUT_OF_RANGE and nothing is applied.
Paths have at most 32 segments. Numeric headers and parameters take 1 to 19 ASCII digits.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import PROGRESS, assert_problem, create_definition, error_fields, upsert

APPLY = f"{PROGRESS}/apply"
USER = 7
OUT_OF_RANGE = "NUMBER_OUT_OF_RANGE"


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Bounded"))["id"])


def raw_body(achievement: int, ops: str, unlock_when: str | None = None) -> bytes:
    """An apply body with ops (and conditions) written as JSON text: numbers no encoder writes."""
    body = f'{{"userId":{USER},"achievementId":{achievement},"ops":[{ops}]'
    if unlock_when is not None:
        body += f',"unlockWhen":[{unlock_when}]'
    return (body + "}").encode()


async def post_raw(client: Any, path: str, body: bytes) -> Any:
    return await client.post(path, content=body, headers={"Content-Type": "application/json"})


def rows(sql: Any) -> list[tuple[Any, ...]]:
    return sql("SELECT * FROM user_achievements ORDER BY id")


def exact(response: Any) -> Any:
    return json.loads(response.text, parse_float=Decimal)["metadata"]


# --- numbers in ops and conditions -----------------------------------------------------------

# (case, stored metadata, ops as JSON text, conditions as JSON text or None, field named)
REFUSED_NUMBERS: list[tuple[str, str, str, str | None, str]] = [
    # The 86-byte request of issue 14: 23 s of CPU and 3.7 GB before the bound.
    (
        "inc tiny exponent",
        '{"a":1}',
        '{"op":"inc","path":"a","value":1e-1000000000}',
        None,
        "ops.0.value",
    ),
    (
        "inc huge exponent",
        '{"a":1}',
        '{"op":"inc","path":"a","value":1e999999999}',
        None,
        "ops.0.value",
    ),
    ("inc 1e-401", '{"a":1}', '{"op":"inc","path":"a","value":1e-401}', None, "ops.0.value"),
    ("inc 1e309", "{}", '{"op":"inc","path":"a","value":1e309}', None, "ops.0.value"),
    ("max 2e308", "{}", '{"op":"max","path":"a","value":-2e308}', None, "ops.0.value"),
    ("min tiny", '{"a":1}', '{"op":"min","path":"a","value":-1e-99999}', None, "ops.0.value"),
    (
        "inc 310 digits",
        '{"a":1}',
        '{"op":"inc","path":"a","value":1' + "0" * 309 + "}",
        None,
        "ops.0.value",
    ),
    (
        "inc 5000 digits",
        '{"a":1}',
        '{"op":"inc","path":"a","value":' + "9" * 5000 + "}",
        None,
        "ops.0.value",
    ),
    (
        "exponent beyond any decimal",
        "{}",
        '{"op":"inc","path":"a","value":1e99999999999999999999}',
        None,
        "ops.0.value",
    ),
    ("result overflows", '{"a":1.7e308}', '{"op":"inc","path":"a","value":1e308}', None, "ops.0"),
    (
        "int result overflows",
        "{}",
        '{"op":"inc","path":"a","value":1'
        + "0" * 308
        + '},{"op":"inc","path":"a","value":1'
        + "0" * 308
        + "}",
        None,
        "ops.1",
    ),
    (
        "result below 1e-400",
        '{"a":1.5e-400}',
        '{"op":"inc","path":"a","value":-1.4e-400}',
        None,
        "ops.0",
    ),
    ("gte tiny", '{"a":1}', "", '{"path":"a","gte":1e-1000000000}', "unlockWhen.0.gte"),
    ("lt huge", '{"a":1}', "", '{"path":"a","lt":1e400}', "unlockWhen.0.lt"),
    ("eq 5000 digits", '{"a":1}', "", '{"path":"a","eq":[' + "9" * 5000 + "]}", "unlockWhen.0.eq"),
]


@pytest.mark.parametrize(
    ("stored", "ops", "conditions", "field"),
    [case[1:] for case in REFUSED_NUMBERS],
    ids=[case[0] for case in REFUSED_NUMBERS],
)
async def test_numbers_out_of_range_are_refused_and_apply_nothing(
    client: Any,
    sql: Any,
    achievement: int,
    stored: str,
    ops: str,
    conditions: str | None,
    field: str,
) -> None:
    await post_raw(
        client,
        PROGRESS,
        f'{{"userId":{USER},"achievementId":{achievement},"metadata":{stored}}}'.encode(),
    )
    before = rows(sql)
    response = await post_raw(client, APPLY, raw_body(achievement, ops, conditions))
    problem = assert_problem(response, 422, OUT_OF_RANGE)
    assert problem["errors"][0]["field"] == field, problem
    assert len(response.content) < 1000  # the detail does not repeat a 5,000-digit number
    assert rows(sql) == before


async def test_a_stored_value_out_of_range_is_refused_and_set_replaces_it(
    client: Any, sql: Any, achievement: int
) -> None:
    """A row holding what an older version accepted stays usable: set replaces the value."""
    await upsert(client, USER, achievement, {"a": 1, "b": 2})
    for text in ("1e-999999999999999999", "9" * 4300, "1e400"):
        sql("UPDATE user_achievements SET metadata = ?", f'{{"a":{text},"b":2}}')
        before = rows(sql)
        for name in ("inc", "max", "min"):
            response = await post_raw(
                client, APPLY, raw_body(achievement, f'{{"op":"{name}","path":"a","value":1}}')
            )
            problem = assert_problem(response, 422, OUT_OF_RANGE)
            assert problem["errors"][0]["field"] == "ops.0.path", problem
            assert rows(sql) == before
        # Other fields of the row still take ops, and set replaces the value.
        fixed = await post_raw(
            client,
            APPLY,
            raw_body(
                achievement, '{"op":"inc","path":"b","value":1},{"op":"set","path":"a","value":5}'
            ),
        )
        assert fixed.status_code == 200, fixed.text
        assert fixed.json()["metadata"] == {"a": 5, "b": 3}
        sql("UPDATE user_achievements SET metadata = ?", '{"a":1,"b":2}')


async def test_metadata_numbers_out_of_range_are_refused(client: Any, achievement: int) -> None:
    """The upsert that let every later inc end in a 500 (MemoryError) is refused, quickly."""
    for text in (
        "1e-999999999999999999",
        "1e-401",
        "-1e-401",
        "1" + "0" * 309,
        "9" * 5000,
        "1e99999999999999999999",
        "0e-99999999999999999999",
    ):
        response = await post_raw(
            client,
            PROGRESS,
            f'{{"userId":{USER},"achievementId":{achievement},"metadata":{{"current":{text}}}}}'.encode(),
        )
        assert_problem(response, 422, "VALIDATION_FAILED")
        assert error_fields(response) == ["metadata"]
        assert len(response.content) < 1000
    # The ends of the range are in it.
    edges = '{"a":1e-400,"b":-1e-400,"c":1.7976931348623157e308,"d":0e-5,"e":-0}'
    response = await post_raw(
        client,
        PROGRESS,
        f'{{"userId":{USER},"achievementId":{achievement},"metadata":{edges}}}'.encode(),
    )
    assert response.status_code == 200, response.text


async def test_set_of_a_number_out_of_range_is_a_validation_failure(
    client: Any, achievement: int
) -> None:
    """`set` stores metadata: its value follows the metadata rule (VALIDATION_FAILED)."""
    response = await post_raw(
        client, APPLY, raw_body(achievement, '{"op":"set","path":"a","value":{"n":1e-401}}')
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["ops.0.value"]


async def test_inc_computes_in_34_digits(client: Any, achievement: int) -> None:
    """decimal128: exact while the result fits in 34 digits, rounded half-even beyond."""
    ops = ",".join(
        [
            '{"op":"inc","path":"tenths","value":0.1}',
            '{"op":"inc","path":"tenths","value":0.2}',
            # 34 digits: exact.
            '{"op":"inc","path":"int34","value":' + "9" * 33 + "}",
            '{"op":"inc","path":"int34","value":1}',
            # 35 digits: rounded (an int stays an int).
            '{"op":"inc","path":"int35","value":' + "9" * 34 + "}",
            '{"op":"inc","path":"int35","value":1}',
            '{"op":"inc","path":"int35","value":1}',
            '{"op":"inc","path":"dec","value":1e-40}',
            '{"op":"inc","path":"dec","value":1}',
            # max and min compare exactly and keep the number as it is.
            '{"op":"max","path":"top","value":1.00000000000000000000000000000000000001}',
            '{"op":"max","path":"top","value":1}',
        ]
    )
    response = await post_raw(client, APPLY, raw_body(achievement, ops))
    assert response.status_code == 200, response.text
    metadata = exact(response)
    assert metadata["tenths"] == Decimal("0.3")
    assert metadata["int34"] == 10**33 and type(metadata["int34"]) is int
    assert metadata["int35"] == 10**34 and type(metadata["int35"]) is int
    assert metadata["dec"] == 1
    assert metadata["top"] == Decimal("1.00000000000000000000000000000000000001")


# --- paths -----------------------------------------------------------------------------------


@pytest.mark.parametrize("segments", [33, 1_000, 100_000])
@pytest.mark.parametrize("name", ["set", "inc", "remove", "condition"])
async def test_paths_over_32_segments_are_invalid(
    client: Any, sql: Any, achievement: int, name: str, segments: int
) -> None:
    """A 1,000-segment set path used to end in a RecursionError (500)."""
    await upsert(client, USER, achievement, {"a": 1})
    before = rows(sql)
    path = ".".join(["k"] * segments)
    if name == "condition":
        body: dict[str, Any] = {"ops": [], "unlockWhen": [{"path": path, "gte": 1}]}
        field = "unlockWhen.0.path"
    else:
        body = {"ops": [{"op": name, "path": path, "value": 1}]}
        field = "ops.0.path"
    response = await client.post(APPLY, json={"userId": USER, "achievementId": achievement, **body})
    problem = assert_problem(response, 422, "INVALID_PATH")
    assert field in problem["detail"], problem
    assert len(response.content) < 1000
    assert rows(sql) == before


async def test_a_path_of_32_segments_is_taken(client: Any, achievement: int) -> None:
    path = ".".join(["k"] * 32)
    body = {
        "userId": USER,
        "achievementId": achievement,
        "ops": [{"op": "inc", "path": path, "value": 1}],
        "unlockWhen": [{"path": path, "eq": 1}],
    }
    response = await client.post(APPLY, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["newlyUnlocked"] is True
