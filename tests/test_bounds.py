"""Requests that would cost far more than they weigh are refused cheaply (issue 14, Revision 2).

Numbers in ops and conditions compute in decimal128 (34 digits, a double's range): a value,
stored value or result beyond that range is 422 NUMBER_OUT_OF_RANGE and nothing is applied.
Paths have at most 32 segments. Numeric headers and parameters take 1 to 19 ASCII digits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tests.helpers import PROGRESS, assert_problem, create_definition, error_fields, upsert
from tests.realserver import RealServer, start_server
from tests.test_hostile import exchange, problem_of
from tests.workmeter import WorkMeter, check_bound, work_meter

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


async def test_every_op_value_out_of_range_is_number_out_of_range(
    client: Any, achievement: int
) -> None:
    """`set` too (API.md, Revision 2: an op's value); in metadata it is VALIDATION_FAILED."""
    response = await post_raw(
        client, APPLY, raw_body(achievement, '{"op":"set","path":"a","value":{"n":[1e-401]}}')
    )
    assert_problem(response, 422, OUT_OF_RANGE)
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


# --- numbers in headers and parameters -------------------------------------------------------

# Not 1 to 19 ASCII digits. str.isdigit() takes the first two (and int() then fails: a 500).
BAD_DIGITS = ["²", "\u0661", "1" * 20, "9" * 5000, "+1", " 1", "1_0", "0x1", "", "-1"]
# As header bytes: UTF-8 (how Litestar decodes a header) and latin-1 (how the Host gate does);
# not " 1", which HTTP reads as "1".
BAD_HEADER_DIGITS = sorted(
    {
        text.encode(encoding)
        for text in BAD_DIGITS
        for encoding in ("utf-8", "latin-1")
        if (text.isascii() or encoding == "utf-8" or text == "²") and text != " 1"
    }
)
EVENTS = "/users/achievements/events"
LEADERBOARD = "/users/achievements/leaderboard"
DEFINITIONS = "/users/achievements/definitions"


def _query_cases() -> list[tuple[str, str, str]]:
    """(method, URL with `{}` for the bad text, the parameter named in the error)."""
    return [
        ("GET", f"{EVENTS}?after={{}}", "after"),
        ("GET", f"{EVENTS}?limit={{}}", "limit"),
        ("GET", f"{EVENTS}/stream?after={{}}", "after"),
        ("GET", f"{LEADERBOARD}?limit={{}}", "limit"),
        ("GET", f"{LEADERBOARD}?offset={{}}", "offset"),
        ("GET", f"{LEADERBOARD}/{{}}", "userId"),
        ("GET", f"{PROGRESS}?userId={{}}&achievementId=1", "userId"),
        ("GET", f"{PROGRESS}?userId=1&achievementId={{}}", "achievementId"),
        ("DELETE", f"{PROGRESS}?userId=1&achievementId={{}}", "achievementId"),
        ("GET", f"{PROGRESS}/list?userId={{}}", "userId"),
        ("GET", f"{DEFINITIONS}/{{}}", "id"),
        ("PUT", f"{DEFINITIONS}/{{}}", "id"),
        ("DELETE", f"{DEFINITIONS}/{{}}", "id"),
        ("DELETE", "/users/{}", "userId"),
    ]


@pytest.mark.parametrize(("method", "url", "field"), _query_cases())
async def test_parameters_take_ascii_digits_only(
    client: Any, achievement: int, method: str, url: str, field: str
) -> None:
    for text in BAD_DIGITS:
        if text == "" and "{}" in url.rsplit("?", 1)[0]:
            continue  # an empty path segment is another route
        quoted = "".join(
            c if c.isascii() and c.isalnum() else f"%{b:02X}" for c in text for b in c.encode()
        )
        body = {"json": {}} if method == "PUT" else {}
        response = await client.request(method, url.format(quoted), **body)
        problem = assert_problem(response, 422, "VALIDATION_FAILED")
        assert len(response.content) < 1000, (text[:30], problem)


def header_id(text: bytes) -> str:
    return repr(text[:8]) if text else "empty"


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """The real server: only raw sockets send header bytes as they are (the test client re-encodes
    them)."""
    server = start_server(tmp_path_factory.mktemp("bounds") / "achievements.db")
    try:
        yield server
    finally:
        server.stop()


def raw_request(path: str, host: bytes, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%sConnection: close\r\n\r\n" % (
        path.encode(),
        host,
        extra,
    )


@pytest.mark.parametrize("text", BAD_HEADER_DIGITS, ids=header_id)
def test_last_event_id_takes_ascii_digits_only(real: RealServer, text: bytes) -> None:
    """`Last-Event-ID: ²` and a 5,000-digit one were 500s (str.isdigit, then int())."""
    request = raw_request(f"{EVENTS}/stream", b"127.0.0.1", b"Last-Event-ID: %s\r\n" % text)
    problem_of(exchange(real, request), 422, "VALIDATION_FAILED")


@pytest.mark.parametrize("text", BAD_HEADER_DIGITS, ids=header_id)
def test_idempotency_key_of_digits_is_still_checked(real: RealServer, text: bytes) -> None:
    if text.isascii() and 1 <= len(text) <= 255:
        return  # printable ASCII up to 255: a valid key
    body = b'{"name":"x"}'
    request = (
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nIdempotency-Key: %s\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
    ) % (DEFINITIONS.encode(), text, len(body), body)
    problem_of(exchange(real, request), 422, "VALIDATION_FAILED")


@pytest.mark.parametrize("host", [b"localhost", b"127.0.0.1", b"[::1]"])
@pytest.mark.parametrize("text", BAD_HEADER_DIGITS, ids=header_id)
def test_a_host_port_takes_ascii_digits_only(real: RealServer, host: bytes, text: bytes) -> None:
    """`Host: localhost:²` passed the gate and was then answered as MALFORMED_JSON."""
    problem_of(exchange(real, raw_request("/health", host + b":" + text)), 400, "INVALID_HOST")


def test_content_length_takes_ascii_digits_only() -> None:
    """The fast path reads Content-Length itself: anything but 1 to 19 digits is not its request."""
    from sidecar.fastpath import _plain_body_length

    def length(value: bytes) -> int | None:
        headers = [(b"content-type", b"application/json"), (b"content-length", value)]
        return _plain_body_length(headers, 1024)

    assert length(b"12") == 12
    for text in BAD_HEADER_DIGITS:
        assert length(text) is None, text[:30]


# --- keys: the pattern matches the whole key -------------------------------------------------

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$(?!\n)"
ID_TEXT_PATTERN = "^[1-9][0-9]{0,18}$"


@pytest.mark.parametrize("key", ["abc\n", "a\n", "abc\r\n", "\nabc", "abc\n\n"], ids=repr)
async def test_a_key_with_a_newline_is_refused_everywhere(
    client: Any, sql: Any, achievement: int, key: str
) -> None:
    """`$` matches before a final newline: "abc\\n" was taken on create, update and as
    achievementKey, and then no by-key route could reach it."""
    await create_definition(client, "Keyed", key="abc")
    before = sql("SELECT * FROM achievements ORDER BY id"), rows(sql)
    ref = {"userId": USER, "achievementKey": key}
    quoted = key.replace("\n", "%0A").replace("\r", "%0D")
    requests: list[tuple[str, str, Any]] = [
        ("POST", DEFINITIONS, {"name": "New", "key": key}),
        ("PUT", f"{DEFINITIONS}/{achievement}", {"key": key}),
        ("PUT", f"{DEFINITIONS}/by-key/abc", {"name": "Same", "key": key}),
        ("PUT", f"{DEFINITIONS}/by-key/{quoted}", {"name": "New"}),
        ("GET", f"{DEFINITIONS}/by-key/{quoted}", None),
        ("DELETE", f"{DEFINITIONS}/by-key/{quoted}", None),
        ("POST", PROGRESS, ref),
        ("PUT", f"{PROGRESS}/unlock", ref),
        ("POST", APPLY, {**ref, "ops": []}),
        ("POST", f"{PROGRESS}/batch", {"operations": [{"type": "unlock", **ref}]}),
        ("GET", f"{PROGRESS}?userId={USER}&achievementKey={quoted}", None),
        ("DELETE", f"{PROGRESS}?userId={USER}&achievementKey={quoted}", None),
    ]
    for method, url, body in requests:
        extra = {} if body is None else {"json": body}
        response = await client.request(method, url, **extra)
        assert response.status_code == 422, (method, url, response.text)
        assert_problem(response, 422, "VALIDATION_FAILED")
    assert (sql("SELECT * FROM achievements ORDER BY id"), rows(sql)) == before


async def test_the_document_shows_the_key_pattern(client: Any) -> None:
    """One pattern for keys in the document, valid JSON Schema (ECMA-262: no Python `\\Z`), and
    the same as the service's."""
    document = (await client.get("/schema/openapi.json")).json()
    patterns = set()
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if "pattern" in node:
                patterns.add(node["pattern"])
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    # The others: Idempotency-Key, and a body id given as its decimal string.
    assert patterns - {"^[ -~]+$", ID_TEXT_PATTERN} == {KEY_PATTERN}


# --- what a request costs ----------------------------------------------------------------------


@pytest.fixture
def meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkMeter]:
    with work_meter(monkeypatch) as measuring:
        yield measuring


def _heavy_bodies(achievement: int) -> dict[str, tuple[str, bytes]]:
    """The costliest shapes within the limits: (path, body) by name."""
    deep = ".".join(["k"] * 32)
    row = {"userId": USER, "achievementId": achievement}
    apply_ = {**row, "ops": [{"op": "inc", "path": deep, "value": 1.5}] * 100}
    apply_["unlockWhen"] = [{"path": deep, "gte": 1}] * 100
    items = [
        {
            "type": "apply",
            **row,
            "userId": USER + n,
            "ops": [{"op": "inc", "path": "a.b", "value": n}],
        }
        for n in range(1000)
    ]
    wide = "9" * 34 + "." + "9" * 300  # in range, but far more digits than 34
    return {
        # Issue 14's 86 bytes: a billion-digit sum before the bound.
        "86 bytes": (APPLY, raw_body(achievement, '{"op":"inc","path":"a","value":1e-1000000000}')),
        "inc on a 300-digit fraction": (
            APPLY,
            raw_body(achievement, f'{{"op":"inc","path":"a","value":{wide}}}'),
        ),
        "100 ops 32 deep": (APPLY, json.dumps(apply_).encode()),
        "1,000 batch items": (f"{PROGRESS}/batch", json.dumps({"operations": items}).encode()),
        "inc on 64 KiB metadata": (
            APPLY,
            raw_body(achievement, '{"op":"inc","path":"a","value":1}'),
        ),
    }


async def test_requests_cost_in_proportion_to_their_size(
    client: Any, achievement: int, meter: WorkMeter
) -> None:
    """No request of n bytes holds the writer for more than 1,000 + n function calls or
    allocates more than 1 MiB + 8n bytes at once (tests/workmeter.py), the costliest shapes
    included: the inc of 1e-1000000000 took 23 s of CPU and 3.7 GB before the bound."""
    await upsert(client, USER, achievement, {"a": 1, "s": "x" * 65_000})
    for name, (path, body) in _heavy_bodies(achievement).items():
        with meter.measure() as work:
            response = await post_raw(client, path, body)
        assert response.status_code in (200, 422), (name, response.text[:300])
        check_bound(work, len(body), name)
