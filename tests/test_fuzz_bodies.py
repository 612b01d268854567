"""Hostile JSON bodies at every write route: never a 5xx, every error is problem+json, and a
rejected request (4xx) leaves the database file exactly as it was (full `iterdump` compared).

The bodies are built as bytes, so they can hold what no JSON encoder writes: nesting 10,000 levels
deep, 1e400 and 400-digit integers, NaN/Infinity tokens, invalid UTF-8, duplicate keys, bodies a
byte under and a byte over the 1 MiB limit, and any type where another belongs. A fixed corpus
pins the outcomes the contract decides (400, 413, 422); hypothesis mixes everything else.
Numbers and paths that cost far more than they weigh are among them (1e-1000000000, 5,000 digits,
paths of 100,000 segments), and every request must keep the work bound of tests/workmeter.py:
no request of n bytes holds the writer for more than 1,000 + n function calls or allocates more
than 1 MiB + 8n bytes at once.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import DEFINITIONS, PROGRESS
from tests.workmeter import WorkMeter, check_bound, work_meter

LIMIT = 1024 * 1024
PROBLEM_JSON = "application/problem+json"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    # The smallest body the route accepts, as a dict (its fields are what the fuzzer varies).
    valid: dict[str, Any]
    # Fields the route knows besides those of `valid`.
    optional: tuple[str, ...]
    # Where a JSON value of the client's goes in the body (see `with_value`).
    value_slot: str


ROUTES = [
    Route("POST", DEFINITIONS, {"name": "Fuzz"}, ("description", "key", "metadata"), "metadata"),
    Route("PUT", f"{DEFINITIONS}/1", {}, ("name", "description", "key", "metadata"), "metadata"),
    Route(
        "PUT", f"{DEFINITIONS}/by-key/k1", {"name": "One"}, ("description", "metadata"), "metadata"
    ),
    Route(
        "POST",
        PROGRESS,
        {"userId": 1, "achievementId": 1},
        ("achievementKey", "metadata"),
        "metadata",
    ),
    Route(
        "PUT",
        f"{PROGRESS}/unlock",
        {"userId": 1, "achievementId": 2},
        ("achievementKey",),
        "userId",
    ),
    Route(
        "POST",
        f"{PROGRESS}/apply",
        {"userId": 1, "achievementId": 1, "ops": []},
        ("achievementKey", "unlockWhen"),
        "ops",
    ),
    Route(
        "POST",
        f"{PROGRESS}/batch",
        {"operations": [{"type": "upsert", "userId": 1, "achievementId": 1}]},
        (),
        "operations",
    ),
]
ROUTE_IDS = [f"{route.method} {route.path}" for route in ROUTES]


# --- JSON as bytes, including what is not JSON ----------------------------------------------


@dataclass(frozen=True)
class Raw:
    """Bytes put into the document as they are."""

    text: bytes


@dataclass(frozen=True)
class Obj:
    """An object as (key, value) pairs: keys may repeat."""

    pairs: tuple[tuple[str, Any], ...]


def encode(node: Any) -> bytes:
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Obj):
        members = (encode(key) + b":" + encode(value) for key, value in node.pairs)
        return b"{" + b",".join(members) + b"}"
    if isinstance(node, dict):
        return encode(Obj(tuple(node.items())))
    if isinstance(node, list | tuple):
        return b"[" + b",".join(encode(item) for item in node) + b"]"
    return json.dumps(node, ensure_ascii=False).encode("utf-8", "surrogatepass")


def nested(depth: int, kind: str) -> Raw:
    """A value `depth` levels deep: arrays `[[[...]]]` or objects `{"a":{"a":...}}`."""
    if kind == "[":
        return Raw(b"[" * depth + b"]" * depth)
    return Raw(b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1))


def with_value(route: Route, value: Any) -> Any:
    """The route's valid body carrying `value` where a JSON value of the client's goes."""
    body: dict[str, Any] = dict(route.valid)
    if route.value_slot == "metadata":
        body["metadata"] = value
    elif route.value_slot == "ops":
        body["ops"] = [Obj((("op", "set"), ("path", "x"), ("value", value)))]
    elif route.value_slot == "operations":
        item = {"type": "upsert", "userId": 1, "achievementId": 1, "metadata": value}
        body["operations"] = [item]
    else:
        body[route.value_slot] = value
    return body


def sized_body(route: Route, size: int, filler: str) -> bytes:
    """A body of exactly `size` bytes: the route's valid body plus one long string field (last)."""
    field = "name" if "name" in route.valid or "name" in route.optional else "padding"
    start = encode({**route.valid, field: ""})[:-2]  # ends in `"name":"`
    tail = b'"}'
    room = size - len(start) - len(tail)
    unit = filler.encode()
    body = start + unit * (room // len(unit)) + b"x" * (room % len(unit)) + tail
    assert len(body) == size
    return body


HUGE_NUMBERS = [
    b"1e400",
    b"-1e400",
    b"1E309",
    b"1" + b"0" * 400,
    b"-" + b"9" * 400,
    b"9223372036854775808",
    b"-9223372036854775809",
    b"1e-400",
    b"123456789012345678901234567890.123456789e300",
    b"-0",
    b"0.0",
    # Exponents and digit counts that cost far more than they weigh (issue 14).
    b"1e-1000000000",
    b"-1e999999999",
    b"1e99999999999999999999",
    b"0e-99999999999999999999",
    b"1e-401",
    b"9" * 5000,
    b"0." + b"1" * 5000,
    b"1" * 34,
    b"1" * 35,
]
# Paths deeper than metadata may be (a 1,000-segment one was a RecursionError).
DEEP_PATHS = [".".join(["a"] * depth) for depth in (32, 33, 1000, 100_000)]
NOT_JSON_TOKENS = [
    b"NaN",
    b"-NaN",
    b"Infinity",
    b"-Infinity",
    b"nan",
    b"inf",
    b"undefined",
    b"True",
    b"None",
    b"'x'",
    b"0x10",
    b"01",
    b"+1",
    b".5",
    b"1.",
    b'"\\x41"',
    b'"tab\there"',
]
INVALID_UTF8 = [
    b'"\xff"',
    b'"\xc3\x28"',
    b'"\xed\xa0\x80"',  # a UTF-16 surrogate encoded as UTF-8
    b'"\xc0\xaf"',  # overlong
    b'"\xf4\x90\x80\x80"',  # beyond U+10FFFF
    b'"\x80"',
    b'"ok \xfe ok"',
]
# Valid JSON escapes for code points UTF-8 cannot carry alone, NUL, and a proper pair.
ESCAPES = [b'"\\ud800"', b'"\\udfff"', b'"\\u0000"', b'"\\ud83d\\ude00"', b'"\\uDBFF\\uDFFF"']


# --- strategies -----------------------------------------------------------------------------

deep = st.builds(
    nested,
    st.one_of(st.sampled_from([31, 32, 33, 34, 1000, 10_000]), st.integers(1, 10_000)),
    st.sampled_from(["[", "{"]),
)
hostile_leaf = st.one_of(
    st.sampled_from(HUGE_NUMBERS).map(Raw),
    st.sampled_from(NOT_JSON_TOKENS).map(Raw),
    st.sampled_from(INVALID_UTF8).map(Raw),
    st.sampled_from(ESCAPES).map(Raw),
    deep,
)
plain_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, 2, 3, 4, -1, 2**63 - 1, 2**63]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["k1", "k2", "nope", "", "a.b", "a..b", "x" * 256]),
)
leaf = st.one_of(plain_leaf, plain_leaf, hostile_leaf)
keys = st.one_of(
    st.sampled_from(["a", "b", "x", "op", "path", "value", "type"]), st.text(max_size=6)
)


def objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Obj]:
    """Objects whose keys may repeat (a duplicate added on purpose half the time)."""
    pairs = st.lists(st.tuples(keys, children), max_size=4)
    return st.builds(
        lambda items, repeat: Obj(tuple(items) + (tuple(items[:1]) if repeat else ())),
        pairs,
        st.booleans(),
    )


values = st.recursive(
    leaf, lambda inner: st.one_of(st.lists(inner, max_size=4), objects(inner)), max_leaves=12
)
ops = st.lists(
    st.builds(
        lambda name, path, value, drop: Obj(
            tuple(
                pair for pair in (("op", name), ("path", path), ("value", value)) if pair[0] != drop
            )
        ),
        st.one_of(st.sampled_from(["inc", "max", "min", "set", "remove"]), plain_leaf),
        st.one_of(st.sampled_from(["a", "a.b", "", "a..b", "x", *DEEP_PATHS]), plain_leaf),
        values,
        st.sampled_from(["", "", "value", "path", "op"]),
    ),
    max_size=3,
)
conditions = st.lists(
    st.builds(
        lambda path, comparator, value: {"path": path, comparator: value},
        st.sampled_from(["a", "a.b", "x", *DEEP_PATHS]),
        st.sampled_from(["gte", "gt", "lte", "lt", "eq", "ne"]),
        values,
    ),
    max_size=2,
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(st.text(max_size=20), st.sampled_from(["", "x" * 256]), values),
    "description": st.one_of(st.none(), st.text(max_size=20), values),
    "key": st.one_of(st.sampled_from(["k1", "k2", "k9", "BAD", ""]), values),
    "metadata": st.one_of(objects(values), values),
    "userId": st.one_of(st.sampled_from([1, 2, 0, -1, 2**63 - 1, 2**63, "1"]), values),
    "achievementId": st.one_of(st.sampled_from([1, 2, 3, 4, 0, 2**63]), values),
    "achievementKey": st.one_of(st.sampled_from(["k1", "k3", "nope"]), values),
    "ops": st.one_of(ops, values),
    "unlockWhen": st.one_of(conditions, values),
}


def _fields(route: Route) -> st.SearchStrategy[Obj]:
    """The route's fields (and some unknown ones) with values from anywhere, in any order."""
    known = [*route.valid, *route.optional]
    field = st.sampled_from(known).flatmap(
        lambda name: st.tuples(st.just(name), FIELD_VALUES.get(name, values))
    )
    stranger = st.tuples(st.sampled_from(["type", "extra", "userid", "ID"]), values)
    return st.builds(
        lambda base, pairs, repeat: Obj(
            tuple(base.items()) + tuple(pairs) + (tuple(pairs[:1]) if repeat else ())
        ),
        st.just(route.valid) | st.just({}),
        st.lists(st.one_of(field, field, field, stranger), max_size=5),
        st.booleans(),
    )


def _batch_items() -> st.SearchStrategy[Any]:
    item = st.builds(
        lambda kind, fields: Obj((("type", kind), *fields.pairs)),
        st.one_of(st.sampled_from(["upsert", "unlock", "apply", "delete"]), plain_leaf),
        _fields(ROUTES[5]),
    )
    return st.one_of(
        st.lists(item, max_size=3).map(lambda items: {"operations": items}),
        values.map(lambda anything: {"operations": anything}),
    )


def bodies(route: Route) -> st.SearchStrategy[bytes]:
    shaped = _batch_items() if route.path.endswith("/batch") else _fields(route)
    sizes = st.sampled_from([LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 4096])
    return st.one_of(
        shaped.map(encode),
        shaped.map(encode),
        shaped.map(encode),
        values.map(lambda value: encode(with_value(route, value))),
        values.map(encode),
        st.builds(sized_body, st.just(route), sizes, st.sampled_from(["x", "é", "😀"])),
        st.binary(max_size=40),
        # A valid body cut short, or with bytes glued on.
        st.builds(
            lambda cut, junk: encode(route.valid)[:cut] + junk,
            st.integers(0, 40),
            st.sampled_from([b"", b"}", b",", b"\xff", b"\x00", b" x"]),
        ),
    )


# --- the checks -----------------------------------------------------------------------------


def dump(db_path: Path) -> list[str]:
    """Every table and row of the file, as SQL text."""
    connection = sqlite3.connect(db_path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")


def _has_surrogate(value: Any) -> bool:
    """Any string (key or value, duplicates included) holding an escaped lone surrogate."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if any("\ud800" <= char <= "\udfff" for char in item):
                return True
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _parse(text: str) -> Any:
    # Objects kept as their (key, value) pairs, so that every duplicate is looked at.
    # Numbers kept as text: int() refuses more than 4,300 digits, which JSON allows.
    return json.loads(text, parse_constant=_reject_constant, parse_int=str, object_pairs_hook=list)


def _parse_deep(text: str) -> Any:
    """_parse for nesting deeper than the default recursion limit allows: in a thread with a
    large stack and, for its duration, a higher limit."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(("value", _parse(text)))
        except (ValueError, RecursionError) as error:
            outcome.append(("error", error))

    limit, stack = sys.getrecursionlimit(), threading.stack_size()
    sys.setrecursionlimit(200_000)
    threading.stack_size(512 * 1024 * 1024)
    try:
        thread = threading.Thread(target=target)
        thread.start()
        thread.join()
    finally:
        threading.stack_size(stack)
        sys.setrecursionlimit(limit)
    kind, result = outcome[0]
    if kind == "error":
        raise result
    return result


def well_formed(body: bytes) -> bool | None:
    """Is the body JSON text in UTF-8 (RFC 8259)? None where this oracle cannot tell: an escaped
    lone surrogate (grammatical, but no Unicode text holds it)."""
    try:
        text = body.decode("utf-8")  # strict: no surrogates, no overlongs, nothing past U+10FFFF
        try:
            value = _parse(text)
        except RecursionError:
            value = _parse_deep(text)
    except RecursionError:
        return None
    except ValueError:  # UnicodeDecodeError and JSONDecodeError included
        return False
    return None if _has_surrogate(value) else True


def check_answer(response: httpx.Response) -> None:
    """No 5xx; an error is problem+json with status (= the HTTP status), code and title."""
    assert response.status_code < 500, response.text[:500]
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
        problem = response.json()
        assert problem["status"] == response.status_code
        assert isinstance(problem["code"], str) and problem["code"]
        assert problem["code"] == problem["code"].upper()
        assert isinstance(problem["title"], str) and problem["title"]
    else:
        response.json()  # a success is JSON


@pytest.fixture
def meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkMeter]:
    with work_meter(monkeypatch) as measuring:
        yield measuring


async def send(client: Any, route: Route, body: bytes, meter: WorkMeter) -> httpx.Response:
    with meter.measure() as work:
        response: httpx.Response = await client.request(
            route.method, route.path, content=body, headers={"content-type": "application/json"}
        )
    check_bound(work, len(body), f"{route.method} {route.path} {body[:200]!r}")
    return response


@pytest.fixture
async def seeded(client: Any) -> AsyncIterator[Any]:
    """Definitions 1..3 (keys k1..k3), a progress row, an unlock: rows a bad request could hurt."""
    for number in (1, 2, 3):
        created = await client.post(DEFINITIONS, json={"name": f"A{number}", "key": f"k{number}"})
        assert created.status_code == 201, created.text
        assert created.json()["id"] == number
    upserted = await client.post(
        PROGRESS, json={"userId": 1, "achievementId": 1, "metadata": {"current": 5}}
    )
    assert upserted.status_code == 200, upserted.text
    unlocked = await client.put(f"{PROGRESS}/unlock", json={"userId": 2, "achievementId": 2})
    assert unlocked.status_code == 200, unlocked.text
    yield client


# --- what the contract decides --------------------------------------------------------------


def corpus(route: Route) -> list[tuple[str, bytes, int, str]]:
    """(case, body, expected status, expected code) for outcomes the contract decides."""

    def carrying(value: Any) -> bytes:
        return encode(with_value(route, value))

    malformed, invalid = (400, "MALFORMED_JSON"), (422, "VALIDATION_FAILED")
    too_large = (413, "PAYLOAD_TOO_LARGE")
    # A number out of range: in metadata a validation failure, in an op's value its own code.
    out_of_range = (422, "NUMBER_OUT_OF_RANGE") if route.value_slot == "ops" else invalid
    cases = [
        ("empty", b"", *malformed),
        ("whitespace", b" \n", *malformed),
        ("NaN body", b"NaN", *malformed),
        ("Infinity value", carrying(Raw(b"Infinity")), *malformed),
        ("-Infinity value", carrying(Raw(b"-Infinity")), *malformed),
        ("NaN value", carrying(Raw(b"NaN")), *malformed),
        ("invalid UTF-8", carrying(Raw(b'"\xff\xfe"')), *malformed),
        ("overlong UTF-8", carrying(Raw(b'"\xc0\xaf"')), *malformed),
        ("UTF-8-encoded surrogate", carrying(Raw(b'"\xed\xa0\x80"')), *malformed),
        ("... inside an object", carrying(Obj((("a", Raw(b'"\xed\xa0\x80"')),))), *malformed),
        ("invalid UTF-8 in a key", carrying(Raw(b'{"\xff":1}')), *malformed),
        ("UTF-8 beyond U+10FFFF", carrying(Raw(b'"\xf4\x90\x80\x80"')), *malformed),
        ("truncated", encode(route.valid)[:-1], *malformed),
        ("array body", b"[]", *invalid),
        ("number body", b"5", *invalid),
        ("10,000 nested arrays", nested(10_000, "[").text, *invalid),
        ("10,000 nested objects", nested(10_000, "{").text, *invalid),
        ("10,000 deep value", carrying(nested(10_000, "{")), *invalid),
        # Deep nesting must not hide what is not JSON after it (or in it).
        ("10,000 deep, then NaN", carrying(nested(10_000, "["))[:-1] + b',"x":NaN}', *malformed),
        ("10,000 deep, unbalanced", carrying(Raw(nested(10_000, "[").text[:-1])), *malformed),
        ("10,000 deep, then junk", nested(10_000, "[").text + b"x", *malformed),
        ("33 deep value", carrying(nested(33, "{")), *invalid),
        ("1e400 in value", carrying(Obj((("n", Raw(b"1e400")),))), *out_of_range),
        ("-1e400 in value", carrying(Obj((("n", Raw(b"-1e400")),))), *out_of_range),
        ("duplicate keys in value", carrying(Obj((("a", 1), ("a", 2)))), *invalid),
        ("400-digit userId", encode({"userId": Raw(b"1" + b"0" * 400)}), *invalid),
        ("5,000-digit userId", encode({"userId": Raw(b"9" * 5000)}), *invalid),
        ("1e-1000000000 in value", carrying(Obj((("n", Raw(b"1e-1000000000")),))), *out_of_range),
        ("1e-401 in value", carrying(Obj((("n", Raw(b"1e-401")),))), *out_of_range),
        (
            "exponent beyond any decimal",
            carrying(Obj((("n", Raw(b"1e" + b"9" * 20)),))),
            *out_of_range,
        ),
        ("5,000 digits in value", carrying(Obj((("n", Raw(b"9" * 5000)),))), *out_of_range),
        ("1 MiB body", sized_body(route, LIMIT, "x"), *invalid),
        ("1 MiB - 1 body", sized_body(route, LIMIT - 1, "é"), *invalid),
        ("1 MiB + 1 body", sized_body(route, LIMIT + 1, "x"), *too_large),
        ("2 MiB body", sized_body(route, 2 * LIMIT, "😀"), *too_large),
    ]
    if route.value_slot == "ops":  # apply: numbers computed with, paths
        bad_path = (422, "INVALID_PATH")
        for name in ("inc", "max", "min"):
            for number in (b"1e-1000000000", b"1e999999999", b"9" * 5000, b"1e" + b"9" * 20):
                op = Obj((("op", name), ("path", "current"), ("value", Raw(number))))
                cases.append(
                    (f"{name} {number[:12]!r}", encode({**route.valid, "ops": [op]}), *out_of_range)
                )
        condition = {"path": "current", "gte": Raw(b"1e-1000000000")}
        cases.append(
            (
                "condition 1e-1000000000",
                encode({**route.valid, "unlockWhen": [condition]}),
                *out_of_range,
            )
        )
        for path in DEEP_PATHS[1:]:
            op = {"op": "set", "path": path, "value": 1}
            cases.append(
                (
                    f"{path.count('.') + 1}-segment path",
                    encode({**route.valid, "ops": [op]}),
                    *bad_path,
                )
            )
    return cases


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_contract_outcomes_and_nothing_written(
    seeded: Any, db_path: Path, route: Route, meter: WorkMeter
) -> None:
    before = dump(db_path)
    failures = []
    for name, body, status, code in corpus(route):
        response = await send(seeded, route, body, meter)
        if response.status_code >= 500:
            failures.append(f"{name}: expected {status} {code}, got {response.text}")
            continue
        check_answer(response)
        got = (response.status_code, response.json().get("code"))
        if got != (status, code):
            detail = response.json().get("detail")
            failures.append(f"{name}: expected {status} {code}, got {got[0]} {got[1]} ({detail})")
        assert dump(db_path) == before, f"{name} changed the database"
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
async def test_valid_body_is_taken(seeded: Any, route: Route, meter: WorkMeter) -> None:
    """The fuzzer's base bodies are right, so its rejections are about what it changed."""
    response = await send(seeded, route, encode(route.valid), meter)
    check_answer(response)
    assert response.status_code in (200, 201), response.text


# --- random bodies --------------------------------------------------------------------------

EXAMPLES_PER_ROUTE = 100


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
@given(data=st.data())
async def test_random_bodies(
    seeded: Any, db_path: Path, route: Route, meter: WorkMeter, data: st.DataObject
) -> None:
    body = data.draw(bodies(route), label="body")
    before = dump(db_path)
    response = await send(seeded, route, body, meter)
    check_answer(response)
    code = response.json().get("code") if response.status_code >= 400 else None
    # The decided check order: size (413), then well-formed JSON (400), then the schema.
    if len(body) > LIMIT:
        assert (response.status_code, code) == (413, "PAYLOAD_TOO_LARGE")
    elif well_formed(body) is False:
        assert (response.status_code, code) == (400, "MALFORMED_JSON"), response.text[:300]
    elif well_formed(body) is True:
        assert response.status_code != 400, response.text[:300]
    if 400 <= response.status_code < 500:
        assert dump(db_path) == before, f"rejected with {response.text[:300]} yet changed"
