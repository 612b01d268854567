"""Metadata comes back as it went in: types, nesting, key order, big integers, unicode, limits."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest import Subtests

from tests.helpers import PROGRESS, assert_problem, create_definition, error_fields, upsert

pytestmark = pytest.mark.both_backends

LIMIT = 64 * 1024  # bytes of compact JSON text, UTF-8
MAX_DEPTH = 32
JSON = {"content-type": "application/json"}


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Meta"))["id"])


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


async def post_raw(client: Any, achievement: int, raw: bytes, user: int = 1) -> Any:
    """Upsert with the metadata given as raw JSON text, exactly these bytes."""
    body = b'{"userId":%d,"achievementId":%d,"metadata":%s}' % (user, achievement, raw)
    return await client.post(PROGRESS, content=body, headers=JSON)


async def fetch_raw(client: Any, achievement: int, user: int = 1) -> bytes:
    response = await client.get(PROGRESS, params={"userId": user, "achievementId": achievement})
    assert response.status_code == 200, response.text
    content: bytes = response.content
    return content


def metadata_of(content: bytes, exact: bool = False) -> Any:
    """The metadata in a response body; `exact` parses non-integers as Decimal (no rounding)."""
    return json.loads(content, parse_float=Decimal if exact else float)["metadata"]


def is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


def same(sent: Any, got: Any) -> bool:
    """Equal JSON values: same types (True is not 1), same key order, numbers by value."""
    if is_number(sent) or is_number(got):
        return is_number(sent) and is_number(got) and sent == got
    if isinstance(sent, dict):
        return (
            isinstance(got, dict)
            and list(sent) == list(got)
            and all(same(sent[key], got[key]) for key in sent)
        )
    if isinstance(sent, list):
        return (
            isinstance(got, list)
            and len(sent) == len(got)
            and all(same(a, b) for a, b in zip(sent, got, strict=True))
        )
    return type(sent) is type(got) and sent == got


def stored(sql: Any, user: int = 1) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = sql(
        "SELECT id, unlocked_at, metadata, created_at, updated_at FROM user_achievements"
        " WHERE user_id = ?",
        user,
    )
    return rows


# --- round trips ----------------------------------------------------------------------------

ROUND_TRIPS: list[tuple[str, dict[str, Any]]] = [
    ("ints", {"one": 1, "zero": 0, "neg": -7, "big": 2**53 + 1, "min": -(2**63)}),
    (
        "floats",
        {
            "f": 1.5,
            "negf": -0.25,
            "tenth": 0.1,
            "exp": 1e-7,
            "big_exp": 1.5e300,
            "max_double": 1.7976931348623157e308,
            "tiny": 5e-324,
            "minus_zero": -0.0,
        },
    ),
    ("strings", {"s": "text", "empty": "", "escapes": '"\\/\b\f\n\r\t', "ctrl": "\u0000\u001f"}),
    ("arrays", {"list": [1, "two", None, True, [3, [4]], {"five": 5}], "empty": [], "n": [[]]}),
    ("nested", {"a": {"b": {"c": {"d": {}}}}, "sibling": {"x": 1, "y": {"z": [1, {"w": 2}]}}}),
    ("booleans", {"t": True, "f": False, "list": [True, False]}),
    ("nulls", {"n": None, "nested": {"n": None}, "list": [None, None]}),
    (
        "mixed",
        {
            "current": 42,
            "requirements": {"workCount": 10, "streak": {"best": 5, "dates": ["2025-11-23"]}},
            "ratio": 0.75,
            "flags": [True, None, "x", 1, -2.5, {"k": []}],
            "label": "Worker I",
        },
    ),
    (
        "unicode",
        {
            "emoji": "🏆🔥👩‍👩‍👧",
            "cjk": "成就解锁",
            "rtl": "مرحبا",
            "combining": "e\u0301",
            "bom_zw": "\ufeff\u200b",
            "🏆": "emoji key",
            "成就": {"键": "值"},
        },
    ),
    ("empty", {}),
]


async def test_values_round_trip(client: Any, achievement: int, subtests: Subtests) -> None:
    for label, value in ROUND_TRIPS:
        with subtests.test(label):
            response = await client.post(
                PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": value}
            )
            assert response.status_code == 200, response.text
            assert same(value, metadata_of(response.content))
            assert same(value, metadata_of(await fetch_raw(client, achievement)))


async def test_the_same_value_sent_compact_and_unicode_round_trips(
    client: Any, achievement: int
) -> None:
    value = ROUND_TRIPS[8][1]
    assert (await post_raw(client, achievement, compact(value))).status_code == 200
    assert same(value, metadata_of(await fetch_raw(client, achievement)))


async def test_numbers_keep_their_value_exactly(client: Any, achievement: int) -> None:
    raw = (
        b'{"e1":1e2,"e2":1E2,"e3":-1.5e-3,"e4":2.5E+10,"tenth":0.1,"trail":1.10,'
        b'"pi":3.14159265358979323846264338327950288,"neg":-0.0000001,"int_exp":-12e-2}'
    )
    sent = json.loads(raw, parse_float=Decimal)
    response = await post_raw(client, achievement, raw)
    assert response.status_code == 200, response.text
    assert same(sent, metadata_of(response.content, exact=True))
    assert same(sent, metadata_of(await fetch_raw(client, achievement), exact=True))


async def test_integers_beyond_64_bits_are_exact(client: Any, achievement: int) -> None:
    raw = (
        b'{"u64":18446744073709551615,"u64p1":18446744073709551616,'
        b'"big":123456789012345678901234567890123456789,"neg":-99999999999999999999999,'
        b'"s53":9007199254740993,"list":[340282366920938463463374607431768211457]}'
    )
    sent = json.loads(raw)
    response = await post_raw(client, achievement, raw)
    assert response.status_code == 200, response.text
    for content in (response.content, await fetch_raw(client, achievement)):
        got = metadata_of(content, exact=True)
        assert got == sent
        assert all(type(got[key]) is int for key in sent if key != "list")
        assert got["list"][0] == 2**128 + 1 and type(got["list"][0]) is int


async def test_escapes_decode_to_the_same_characters(client: Any, achievement: int) -> None:
    raw = rb'{"e":"\u00e9\ud83c\udfc6\n\"\\\/\u0041","\u00e9t\u00e9":1,"cjk":"\u6210\u5c31"}'
    response = await post_raw(client, achievement, raw)
    assert response.status_code == 200, response.text
    expected = {"e": 'é🏆\n"\\/A', "été": 1, "cjk": "成就"}
    assert json.loads(raw) == expected
    for content in (response.content, await fetch_raw(client, achievement)):
        assert same(expected, metadata_of(content))


async def test_key_order_is_kept(client: Any, achievement: int) -> None:
    keys = ["zeta", "alpha", "mid", "Beta", "0", "_", "10", "2", "1", "é", "a"]
    value: dict[str, Any] = {key: index for index, key in enumerate(keys)}
    value["nested"] = {"z": 1, "a": 2, "m": {"9": None, "1": None}}
    row = await upsert(client, 1, achievement, value)
    assert list(row["metadata"]) == [*keys, "nested"]
    got = metadata_of(await fetch_raw(client, achievement))
    assert list(got) == [*keys, "nested"]
    assert list(got["nested"]) == ["z", "a", "m"]
    assert list(got["nested"]["m"]) == ["9", "1"]
    listed = await client.get(f"{PROGRESS}/list", params={"userId": 1})
    assert list(listed.json()[0]["metadata"]) == [*keys, "nested"]


async def test_key_order_of_raw_text_is_kept(client: Any, achievement: int) -> None:
    raw = b'{"b":1,"a":{"y":2,"x":3},"c":[{"q":1,"p":2}]}'
    assert (await post_raw(client, achievement, raw)).status_code == 200
    got = metadata_of(await fetch_raw(client, achievement))
    assert list(got) == ["b", "a", "c"]
    assert list(got["a"]) == ["y", "x"]
    assert list(got["c"][0]) == ["q", "p"]


# --- size limit -----------------------------------------------------------------------------


def sized(total: int, char: str = "a") -> dict[str, str]:
    """An object whose compact UTF-8 JSON text is exactly `total` bytes."""
    room = total - len(b'{"x":""}')
    width = len(char.encode())
    value = {"x": char * (room // width) + "b" * (room % width)}
    assert len(compact(value)) == total
    return value


@pytest.mark.parametrize("char", ["a", "é", "🏆"])
async def test_metadata_up_to_the_limit_is_kept(
    client: Any, achievement: int, sql: Any, char: str
) -> None:
    value = sized(LIMIT, char)
    response = await post_raw(client, achievement, compact(value))
    assert response.status_code == 200, response.text[:200]
    assert metadata_of(response.content) == value
    assert metadata_of(await fetch_raw(client, achievement)) == value
    assert json.loads(stored(sql)[0][2]) == value


@pytest.mark.parametrize("char", ["a", "é", "🏆"])
async def test_metadata_just_over_the_limit_is_refused(
    client: Any, achievement: int, sql: Any, char: str
) -> None:
    await upsert(client, 1, achievement, {"kept": True})
    before = stored(sql)
    response = await post_raw(client, achievement, compact(sized(LIMIT + 1, char)))
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]
    assert stored(sql) == before


async def test_limit_counts_compact_text_not_the_whitespace_sent(
    client: Any, achievement: int
) -> None:
    value: dict[str, Any] = {"list": [f"{i:05d}" for i in range(7000)], "x": "a"}
    value["x"] += "a" * (LIMIT - len(compact(value)))
    assert len(compact(value)) == LIMIT
    pretty = json.dumps(value, indent=4, ensure_ascii=False).encode()
    assert len(pretty) > LIMIT
    response = await post_raw(client, achievement, pretty)
    assert response.status_code == 200, response.text[:200]
    assert metadata_of(await fetch_raw(client, achievement)) == value


async def test_limit_counts_characters_not_their_escapes(client: Any, achievement: int) -> None:
    # \u00e9 is six bytes as sent but two (é) in the compact UTF-8 text the limit is defined on.
    value = sized(LIMIT, "é")
    escaped = json.dumps(value, separators=(",", ":"), ensure_ascii=True).encode()
    assert len(escaped) > LIMIT
    response = await post_raw(client, achievement, escaped)
    assert response.status_code == 200, response.text[:200]
    assert metadata_of(await fetch_raw(client, achievement)) == value


# --- depth limit ----------------------------------------------------------------------------


def objects(levels: int) -> dict[str, Any]:
    """Nested objects, `levels` deep counting the outer object as level 1."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"d": value}
    return value


def arrays(levels: int) -> dict[str, Any]:
    """The outer object, then arrays inside arrays: `levels` deep in all."""
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return {"l": value}


def alternating(levels: int) -> dict[str, Any]:
    value: Any = "leaf"
    for level in range(levels - 1):
        value = [value] if level % 2 else {"o": value}
    return {"top": value}


@pytest.mark.parametrize("build", [objects, arrays, alternating])
async def test_depth_32_is_kept_and_33_refused(
    client: Any, achievement: int, sql: Any, build: Any
) -> None:
    deepest = build(MAX_DEPTH)
    row = await upsert(client, 1, achievement, deepest)
    assert row["metadata"] == deepest
    assert metadata_of(await fetch_raw(client, achievement)) == deepest
    before = stored(sql)
    response = await client.post(
        PROGRESS,
        json={"userId": 1, "achievementId": achievement, "metadata": build(MAX_DEPTH + 1)},
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]
    assert stored(sql) == before


async def test_very_deep_metadata_is_refused_not_a_crash(
    client: Any, achievement: int, sql: Any
) -> None:
    await upsert(client, 1, achievement, {"kept": 1})
    before = stored(sql)
    for depth in (100, 5000):
        raw = b'{"a":' * depth + b"1" + b"}" * depth
        response = await post_raw(client, achievement, raw)
        assert_problem(response, 422, "VALIDATION_FAILED")
        raw = b'{"a":' + b"[" * depth + b"]" * depth + b"}"
        response = await post_raw(client, achievement, raw)
        assert_problem(response, 422, "VALIDATION_FAILED")
    assert stored(sql) == before


# --- refused metadata changes nothing -------------------------------------------------------

REFUSED: list[bytes] = [
    b"[1, 2]",
    b"[]",
    b'"text"',
    b'"{}"',
    b"5",
    b"-1.5",
    b"true",
    b"null",
    b'{"x": 1e400}',
    b'{"x": -1e400}',
    b'{"x": 1E400}',
    b'{"x": [1, {"y": 1e400}]}',
    b'{"a": 1, "a": 2}',
    b'{"a": 1, "b": 2, "a": 1}',
    b'{"n": {"k": 1, "k": 1}}',
    b'{"l": [{"k": 1, "k": 2}]}',
]


async def test_refused_metadata_changes_nothing(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    row = await upsert(client, 1, achievement, {"kept": 1})
    before = stored(sql)
    users = sql("SELECT * FROM users")
    for raw in REFUSED:
        with subtests.test(raw=raw):
            response = await post_raw(client, achievement, raw)
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == ["metadata"]
            # A user never written before gets no row either.
            assert_problem(
                await post_raw(client, achievement, raw, user=2), 422, "VALIDATION_FAILED"
            )
    assert stored(sql) == before
    assert stored(sql, user=2) == []
    assert sql("SELECT * FROM users") == users
    assert metadata_of(await fetch_raw(client, achievement)) == row["metadata"]


async def test_non_json_numbers_are_malformed_and_change_nothing(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    await upsert(client, 1, achievement, {"kept": 1})
    before = stored(sql)
    for raw in (b'{"x": NaN}', b'{"x": Infinity}', b'{"x": -Infinity}', b'{"x": 01}'):
        with subtests.test(raw=raw):
            assert_problem(await post_raw(client, achievement, raw), 400, "MALFORMED_JSON")
    assert stored(sql) == before


# --- property: any JSON object round-trips --------------------------------------------------


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**200), max_value=2**200)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=6).filter(
    lambda value: depth_of(value) <= MAX_DEPTH
)


@settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(value=json_objects)
async def test_any_json_object_round_trips(
    client: Any, achievement: int, value: dict[str, Any]
) -> None:
    response = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": achievement, "metadata": value}
    )
    assert response.status_code == 200, response.text
    assert same(value, metadata_of(response.content))
    assert same(value, metadata_of(await fetch_raw(client, achievement)))
