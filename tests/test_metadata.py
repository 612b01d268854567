"""Metadata comes back as it went in: types, nesting, key order, big integers, unicode, limits."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import PROGRESS, assert_problem, create_definition, error_fields, upsert

LIMIT = 64 * 1024


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Meta"))["id"])


async def round_trip(client: Any, achievement: int, raw: bytes) -> bytes:
    """Upsert raw JSON metadata, then GET it: the raw bytes of the stored metadata."""
    body = b'{"userId": 1, "achievementId": %d, "metadata": %s}' % (achievement, raw)
    response = await client.post(
        PROGRESS, content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    got = await client.get(PROGRESS, params={"userId": 1, "achievementId": achievement})
    value = json.loads(got.content, parse_float=Decimal)["metadata"]
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode()


@pytest.mark.parametrize(
    "value",
    [
        {"int": 1, "neg": -7, "zero": 0, "float": 1.5, "exp": 1e-7, "negf": -0.25},
        {"s": "text", "empty": "", "escapes": '"\\/\b\f\n\r\t', "nul": "\u0000"},
        {"list": [1, "two", None, True, [3, [4]], {"five": 5}], "empty": []},
        {"a": {"b": {"c": {"d": {}}}}},
        {"t": True, "f": False},
        {"n": None},
        {"mix": [{"k": [None, 1.25, "x", {"y": False}]}]},
        {"emoji": "🏆🔥", "cjk": "成就", "rtl": "مرحبا", "combining": "é"},
        {},
    ],
)
async def test_values_round_trip(client: Any, achievement: int, value: dict[str, Any]) -> None:
    row = await upsert(client, 1, achievement, value)
    assert row["metadata"] == value
    got = await client.get(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert got.json()["metadata"] == value


async def test_big_integers_are_exact(client: Any, achievement: int) -> None:
    raw = b'{"big":123456789012345678901234567890,"neg":-99999999999999999999,"s":9007199254740993}'
    assert await round_trip(client, achievement, raw) == raw


async def test_numbers_keep_their_written_form(client: Any, achievement: int) -> None:
    body = b'{"userId": 1, "achievementId": %d, "metadata": {"a": 1.10, "b": 1e2, "c": -0.0}}'
    response = await client.post(
        PROGRESS, content=body % achievement, headers={"content-type": "application/json"}
    )
    assert b'"metadata":{"a":1.10,"b":1e2,"c":-0.0}' in response.content


async def test_key_order_is_kept(client: Any, achievement: int) -> None:
    keys = ["zeta", "alpha", "mid", "Beta", "0", "_"]
    await upsert(client, 1, achievement, {key: index for index, key in enumerate(keys)})
    got = await client.get(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert list(got.json()["metadata"]) == keys
    nested = {"outer": {"z": 1, "a": 2}}
    await upsert(client, 1, achievement, nested)
    got = await client.get(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert list(got.json()["metadata"]["outer"]) == ["z", "a"]


def sized(total: int) -> dict[str, str]:
    """An object whose compact JSON text is exactly `total` bytes."""
    overhead = len(b'{"x":""}')
    return {"x": "a" * (total - overhead)}


async def test_metadata_up_to_the_limit_is_kept(client: Any, achievement: int) -> None:
    value = sized(LIMIT)
    assert len(json.dumps(value, separators=(",", ":"))) == LIMIT
    assert (await upsert(client, 1, achievement, value))["metadata"] == value


async def test_metadata_over_the_limit_is_refused(client: Any, achievement: int, sql: Any) -> None:
    await upsert(client, 1, achievement, {"kept": True})
    response = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": sized(LIMIT + 1)}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]
    assert sql("SELECT metadata FROM user_achievements") == [('{"kept":true}',)]


def nested(levels: int) -> Any:
    value: Any = {}
    for _ in range(levels - 1):
        value = {"d": value}
    return value


async def test_depth_32_is_kept_and_33_refused(client: Any, achievement: int) -> None:
    assert (await upsert(client, 1, achievement, nested(32)))["metadata"] == nested(32)
    response = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": nested(33)}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    # Arrays count as levels too: the object, then 31 lists, is 32 deep.
    lists: Any = 1
    for _ in range(31):
        lists = [lists]
    assert (await upsert(client, 1, achievement, {"l": lists}))["metadata"] == {"l": lists}
    response = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": {"l": [lists]}}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")


@pytest.mark.parametrize(
    "raw",
    [b"[1, 2]", b'"text"', b"5", b"true", b'{"x": 1e400}', b'{"a": 1, "a": 2}', b'{"x": -1e999}'],
)
async def test_invalid_metadata_is_refused_and_changes_nothing(
    client: Any, achievement: int, sql: Any, raw: bytes
) -> None:
    await upsert(client, 1, achievement, {"kept": 1})
    body = b'{"userId": 1, "achievementId": %d, "metadata": %s}' % (achievement, raw)
    response = await client.post(
        PROGRESS, content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]
    assert sql("SELECT metadata FROM user_achievements") == [('{"kept":1}',)]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
async def test_any_json_object_round_trips(client: Any, value: dict[str, Any]) -> None:
    achievement = (await client.get("/users/achievements/definitions")).json()
    if not achievement:
        achievement = [await create_definition(client, "Property")]
    row = await upsert(client, 1, achievement[0]["id"], value)
    assert row["metadata"] == value
    got = await client.get(PROGRESS, params={"userId": 1, "achievementId": achievement[0]["id"]})
    assert got.json()["metadata"] == value
    assert list(got.json()["metadata"]) == list(value)
