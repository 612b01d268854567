"""The fast path for plain progress reads and writes (sidecar/fastpath.py): it answers exactly
what the Litestar handlers answer, and leaves every other request to them, body and all."""

from __future__ import annotations

import json
from typing import Any

import pytest
from litestar.types import Message, Receive, Scope, Send

from sidecar import fastpath as fastpath_module
from sidecar.fastpath import FastPath
from sidecar.settings import Settings
from tests.helpers import PROGRESS, create_definition, unlock, upsert

LEADERBOARD = "/users/achievements/leaderboard"

# Asked in a form the fast path answers, and in one that it passes on to Litestar: the same
# request in meaning, so both must get the same status, headers and bytes.
SAME_REQUESTS = [
    ("", "userId=7&achievementId={a}", "userId=07&achievementId={a}"),
    ("", "achievementId={a}&userId=7", "userId=7&achievementId={a}&unused=1"),
    ("", "userId=8&achievementId={a}", "userId=8&achievementKey=fast-key"),
    ("", "userId=9&achievementId={a}", "userId=09&achievementId={a}"),  # no row: null
    ("/list", "userId=7", "userId=007"),
    ("/list", "userId=7&unlockedOnly=true", "unlockedOnly=true&userId=7&x="),
    ("/list", "userId=7&unlockedOnly=false", "userId=7&unlockedOnly=false&unlockedOnly=false"),
    ("/list", "userId=123456", "userId=0123456"),  # nobody: []
]


async def seed(client: Any) -> int:
    achievement = (await create_definition(client, "Fast", key="fast-key"))["id"]
    other = (await create_definition(client, "Other"))["id"]
    await upsert(client, 7, achievement, {"current": 3, "big": 2**70, "text": "é"})
    await unlock(client, 7, other)
    await upsert(client, 8, achievement, {"nested": {"b": [1.5, None, True], "a": {}}})
    return int(achievement)


@pytest.mark.parametrize(("path", "fast", "slow"), SAME_REQUESTS)
async def test_fast_and_litestar_answers_are_the_same_bytes(
    client: Any, path: str, fast: str, slow: str
) -> None:
    achievement = await seed(client)
    answers = []
    for query in (fast, slow):
        response = await client.get(f"{PROGRESS}{path}?{query.format(a=achievement)}")
        headers = {k: v for k, v in response.headers.items() if k != "date"}
        answers.append((response.status_code, headers, response.content))
    assert answers[0] == answers[1]
    assert answers[0][0] == 200


@pytest.mark.parametrize(
    ("path", "fast", "slow"),
    [
        (LEADERBOARD, "", "limit=010"),
        (LEADERBOARD, "limit=2&offset=1", "offset=01&limit=2"),
        (LEADERBOARD, "offset=50", "offset=050"),  # past the end: []
        (f"{LEADERBOARD}/7", None, f"{LEADERBOARD}/07"),
    ],
)
async def test_fast_and_litestar_leaderboards_are_the_same_bytes(
    client: Any, path: str, fast: str | None, slow: str
) -> None:
    await seed(client)
    answers = []
    for target in (
        path if fast is None else f"{path}?{fast}",
        slow if fast is None else f"{path}?{slow}",
    ):
        response = await client.get(target)
        headers = {k: v for k, v in response.headers.items() if k != "date"}
        answers.append((response.status_code, headers, response.content))
    assert answers[0] == answers[1]
    assert answers[0][0] == 200


async def test_a_rank_counts_under_its_route_template(client: Any) -> None:
    await seed(client)
    assert (await client.get(f"{LEADERBOARD}/7")).status_code == 200
    assert (await client.get(f"{LEADERBOARD}/8")).status_code == 404  # no unlock: Litestar's
    metrics = (await client.get("/metrics")).text
    label = 'method="GET",route="/users/achievements/leaderboard/{userId}"'
    assert f'sidecar_http_requests_total{{{label},status="200"}} 1.0' in metrics
    assert f'sidecar_http_requests_total{{{label},status="404"}} 1.0' in metrics
    assert "leaderboard/7" not in metrics


class Recorder:
    """Stands in for the Litestar app: records what reaches it (the query, and the body)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append(scope["query_string"].decode())
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.bodies.append(body)


class FakeReaders:
    def __init__(self) -> None:
        self.queries: list[tuple[Any, ...]] = []

    def fetch_one(self, sql: str, parameters: Any) -> Any:
        self.queries.append(
            tuple(parameters.values() if isinstance(parameters, dict) else parameters)
        )
        return ("n", "reached", 0) if "leaderboard" in sql or "me AS" in sql else None

    def fetch_all(self, sql: str, parameters: Any) -> list[Any]:
        self.queries.append(tuple(parameters))
        return []

    def data_version(self) -> int:
        return 1

    async def read(self, read: Any, *args: Any) -> Any:
        return read(self, *args)


class FakeWriter:
    def __init__(self, fails: bool = False) -> None:
        self.runs = 0
        self.fails = fails

    async def run(self, job: Any) -> tuple[int, bytes, bool]:
        self.runs += 1
        if self.fails:
            raise RuntimeError("disk I/O error")
        return 200, b"{}", False


class FakeService:
    def __init__(self, readers: Any = None, writer: Any = None) -> None:
        self.readers = readers or FakeReaders()
        self.writer = writer or FakeWriter()
        self.settings = Settings(db_path="unused.db")


def fast_path(recorder: Recorder, service: FakeService) -> FastPath:
    return FastPath(recorder, service, max_body_bytes=1024)  # type: ignore[arg-type]


def scope_of(
    path: str, query: str, method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None
) -> Any:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": headers or [],
    }


async def call(fast: FastPath, scope: Any, chunks: tuple[bytes, ...] = (b"",)) -> list[Message]:
    sent: list[Message] = []
    pending = list(chunks)

    async def receive() -> Message:
        body = pending.pop(0)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: Message) -> None:
        sent.append(message)

    await fast(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("path", "query", "parameters"),
    [
        (PROGRESS, "userId=1&achievementId=2", (1, 2)),
        (PROGRESS, "achievementId=2&userId=9223372036854775807", (9223372036854775807, 2)),
        (f"{PROGRESS}/list", "userId=3", (3,)),
        (f"{PROGRESS}/list", "userId=3&unlockedOnly=true", (3,)),
        (LEADERBOARD, "", (10, 0)),
        (LEADERBOARD, "limit=100&offset=0", (100, 0)),
        (LEADERBOARD, "offset=4611686018427387904", (10, 2**62)),
        (f"{LEADERBOARD}/7", "", (7,)),
    ],
)
async def test_plain_reads_are_answered_without_litestar(
    path: str, query: str, parameters: tuple[int, ...]
) -> None:
    recorder, readers = Recorder(), FakeReaders()
    fast = fast_path(recorder, FakeService(readers))
    sent = await call(fast, scope_of(path, query))
    assert recorder.calls == []
    assert readers.queries == [parameters]
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200


@pytest.mark.parametrize(
    ("path", "query", "method"),
    [
        (PROGRESS, "userId=1&achievementId=2", "DELETE"),
        (PROGRESS, "userId=1", "GET"),
        (PROGRESS, "userId=1&achievementId=2&userId=1", "GET"),
        (PROGRESS, "userId=1&achievementId=2&x=1", "GET"),
        (PROGRESS, "userId=0&achievementId=2", "GET"),
        (PROGRESS, "userId=01&achievementId=2", "GET"),
        (PROGRESS, "userId=9223372036854775808&achievementId=2", "GET"),
        (PROGRESS, "userId=%31&achievementId=2", "GET"),
        (PROGRESS, "userId=1&achievementKey=k", "GET"),
        (PROGRESS, "userId=1&achievementId", "GET"),
        (PROGRESS, "", "GET"),
        (f"{PROGRESS}/list", "userId=1&unlockedOnly=TRUE", "GET"),
        (f"{PROGRESS}/list", "userId=-1", "GET"),
        (f"{PROGRESS}/", "userId=1&achievementId=2", "GET"),
        ("/users/achievements/definitions", "", "GET"),
        (LEADERBOARD, "limit=0", "GET"),
        (LEADERBOARD, "limit=101", "GET"),
        (LEADERBOARD, "limit=05", "GET"),
        (LEADERBOARD, "offset=4611686018427387905", "GET"),
        (LEADERBOARD, "limit=1&limit=2", "GET"),
        (LEADERBOARD, "top=3", "GET"),
        (f"{LEADERBOARD}/07", "", "GET"),
        (f"{LEADERBOARD}/0", "", "GET"),
        (f"{LEADERBOARD}/", "", "GET"),
        (f"{LEADERBOARD}/7", "x=1", "GET"),
        (f"{LEADERBOARD}/7/", "", "GET"),
    ],
)
async def test_everything_else_goes_to_litestar(path: str, query: str, method: str) -> None:
    recorder, readers = Recorder(), FakeReaders()
    fast = fast_path(recorder, FakeService(readers))
    assert await call(fast, scope_of(path, query, method)) == []
    assert recorder.calls == [query]
    assert readers.queries == []


async def test_a_failing_read_is_left_to_litestar() -> None:
    class BrokenReaders(FakeReaders):
        def fetch_one(self, sql: str, parameters: Any) -> None:
            raise RuntimeError("database is locked")

    recorder = Recorder()
    fast = fast_path(recorder, FakeService(BrokenReaders()))
    assert await call(fast, scope_of(PROGRESS, "userId=1&achievementId=2")) == []
    assert recorder.calls == ["userId=1&achievementId=2"]


# --- writes ------------------------------------------------------------------------------

UNLOCK_PATH = f"{PROGRESS}/unlock"
APPLY_PATH = f"{PROGRESS}/apply"
PLAIN = [(b"content-type", b"application/json"), (b"content-length", b"")]
UPSERT_BODY = b'{"userId": 1, "achievementId": 2}'


def plain_headers(body: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [PLAIN[0], (b"content-length", str(len(body)).encode()), *extra]


@pytest.mark.parametrize("key", [None, b"k1", b"K " + b"~" * 253], ids=["no key", "key", "longest"])
@pytest.mark.parametrize(
    ("method", "path"), [("POST", PROGRESS), ("PUT", UNLOCK_PATH), ("POST", APPLY_PATH)]
)
async def test_plain_writes_are_answered_without_litestar(
    method: str, path: str, key: bytes | None
) -> None:
    body = b'{"userId": 1, "achievementId": 2, "ops": []}' if path == APPLY_PATH else UPSERT_BODY
    recorder, service = Recorder(), FakeService()
    # The body in two pieces, as a server may deliver it; a key named in any case.
    extra = [] if key is None else [(b"Idempotency-Key", key)]
    scope = scope_of(path, "", method, plain_headers(body, *extra))
    sent = await call(fast_path(recorder, service), scope, (body[:5], body[5:]))
    assert recorder.calls == []
    assert service.writer.runs == 1
    assert sent[0]["status"] == 200 and sent[1]["body"] == b"{}"


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        # Keys Litestar refuses with its 422 (empty, too long, not printable ASCII), and two keys.
        (plain_headers(UPSERT_BODY, (b"idempotency-key", b"")), UPSERT_BODY),
        (plain_headers(UPSERT_BODY, (b"idempotency-key", b"k" * 256)), UPSERT_BODY),
        (plain_headers(UPSERT_BODY, (b"idempotency-key", b"k\xe9")), UPSERT_BODY),
        (plain_headers(UPSERT_BODY, (b"idempotency-key", b"k\x01")), UPSERT_BODY),
        (
            plain_headers(UPSERT_BODY, (b"idempotency-key", b"k1"), (b"Idempotency-Key", b"k1")),
            UPSERT_BODY,
        ),
        (plain_headers(UPSERT_BODY, (b"transfer-encoding", b"chunked")), UPSERT_BODY),
        ([(b"content-type", b"application/json; charset=utf-8")], UPSERT_BODY),
        ([(b"content-type", b"text/plain"), (b"content-length", b"34")], UPSERT_BODY),
        ([PLAIN[0]], UPSERT_BODY),  # no Content-Length
        ([PLAIN[0], (b"content-length", b"2000")], UPSERT_BODY),  # over the limit
        ([PLAIN[0], (b"content-length", b"99")], UPSERT_BODY),  # not the body's length
        (plain_headers(UPSERT_BODY, PLAIN[0]), UPSERT_BODY),  # two Content-Types
        (plain_headers(b'{"userId": 1}'), b'{"userId": 1}'),  # invalid: Litestar's 422
        (plain_headers(b'{"userId": 1, "achievementId": 0}'), b'{"userId": 1, "achievementId": 0}'),
        (plain_headers(b"{nope"), b"{nope"),
        (plain_headers(b'"\\xff"'), b'"\xff"'),
    ],
)
async def test_other_writes_go_to_litestar_with_their_body(
    headers: list[tuple[bytes, bytes]], body: bytes
) -> None:
    recorder, service = Recorder(), FakeService()
    sent = await call(
        fast_path(recorder, service), scope_of(PROGRESS, "", "POST", headers), (body,)
    )
    assert sent == []
    assert recorder.bodies == [body]


async def test_a_failing_write_is_answered_from_its_outcome_and_never_run_again() -> None:
    recorder, service = Recorder(), FakeService(writer=FakeWriter(fails=True))
    scope = scope_of(PROGRESS, "", "POST", plain_headers(UPSERT_BODY))
    sent = await call(fast_path(recorder, service), scope, (UPSERT_BODY[:3], UPSERT_BODY[3:]))
    assert service.writer.runs == 1
    assert recorder.calls == []
    assert sent[0]["status"] == 500
    assert (b"content-type", b"application/problem+json") in sent[0]["headers"]
    assert json.loads(sent[1]["body"])["code"] == "INTERNAL_ERROR"


# Each write in the order sent, to one service through the fast path and to another through
# Litestar (a `charset` parameter sends it there); errors included, as each path answers them.
WRITES = [
    ("POST", PROGRESS, {"userId": 7, "achievementId": 1, "metadata": {"n": 1, "big": 2**70}}),
    ("POST", PROGRESS, {"userId": 7, "achievementId": 1, "metadata": {"n": 2.50}}),
    (
        "POST",
        APPLY_PATH,
        {"userId": 7, "achievementId": 1, "ops": [{"op": "inc", "path": "n", "value": 1}]},
    ),
    (
        "POST",
        APPLY_PATH,
        {
            "userId": 8,
            "achievementKey": "k",
            "ops": [{"op": "set", "path": "a.b", "value": [1, "é"]}],
            "unlockWhen": [{"path": "a.b", "eq": [1, "é"]}],
        },
    ),
    ("PUT", UNLOCK_PATH, {"userId": 7, "achievementId": 1}),
    ("PUT", UNLOCK_PATH, {"userId": 7, "achievementId": 1}),
    ("PUT", UNLOCK_PATH, {"userId": 9, "achievementKey": "k"}),
    ("POST", PROGRESS, {"userId": 7, "achievementId": 99}),
    (
        "POST",
        APPLY_PATH,
        {"userId": 8, "achievementId": 1, "ops": [{"op": "inc", "path": "a", "value": 1}]},
    ),
    (
        "POST",
        APPLY_PATH,
        {"userId": 8, "achievementKey": "k", "ops": [{"op": "inc", "path": "a", "value": 1}]},
    ),
    ("PUT", UNLOCK_PATH, {"userId": 7, "achievementId": "01"}),
    ("POST", PROGRESS, {"userId": 7, "achievementId": 1, "achievementKey": "k"}),
]


async def writes_both_ways(
    make_client: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
    writes: list[tuple[str, str, Any]] | list[tuple[str, str, Any, dict[str, str]]],
    extra: dict[str, str] | None = None,
) -> tuple[list[Any], list[Any]]:
    """The status, headers and body of each write, sent to one service through the fast path
    and to another through Litestar (a `charset` parameter sends it there); a write's own
    headers (a fourth member) beside `extra`."""
    # The same clock for both services, so that their answers can be the same bytes.
    ticks: list[str] = []
    monkeypatch.setattr("sidecar.store.utc_now", lambda: ticks.pop(0))
    answers: dict[str, list[Any]] = {}
    for content_type in ("application/json", "application/json; charset=utf-8"):
        ticks[:] = [f"2026-12-02T10:00:{second:02d}.000Z" for second in range(60)]
        async with make_client(db_path=tmp_path / f"{len(answers)}.db") as client:
            await create_definition(client, "Fast", key="k")
            got = answers.setdefault(content_type, [])
            for method, path, body, *own in writes:
                response = await client.request(
                    method,
                    path,
                    content=json.dumps(body),
                    headers={"content-type": content_type, **(extra or {}), **dict(*own)},
                )
                headers = {k: v for k, v in response.headers.items() if k != "date"}
                got.append((response.status_code, headers, response.content))
    fast, slow = answers.values()
    return fast, slow


async def test_fast_and_litestar_writes_answer_the_same_bytes(
    make_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = await writes_both_ways(make_client, tmp_path, monkeypatch, WRITES)
    assert fast == slow
    assert [status for status, _, _ in fast] == [200] * 7 + [404] + [422] * 4


# --- ids as strings (Revision 2): string ids in bodies, `Prefer: ids=string` in answers --------

SNOWFLAKE, LARGEST = "80351110224678912", "9223372036854775807"
PREFER_FORMS = [None, "ids=string", "respond-async, IDS = string"]


@pytest.mark.parametrize("prefer", PREFER_FORMS)
async def test_fast_and_litestar_reads_are_the_same_bytes_in_each_id_form(
    client: Any, prefer: str | None
) -> None:
    achievement = await seed(client)
    headers = {} if prefer is None else {"Prefer": prefer}
    pairs = [
        (f"{PROGRESS}{path}?{fast}", f"{PROGRESS}{path}?{slow}")
        for path, fast, slow in SAME_REQUESTS
    ]
    pairs += [
        (f"{LEADERBOARD}?limit=2", f"{LEADERBOARD}?limit=02"),
        (f"{LEADERBOARD}/7", f"{LEADERBOARD}/07"),
    ]
    for fast, slow in pairs:
        answers = []
        for target in (fast, slow):
            response = await client.get(target.format(a=achievement), headers=headers)
            got = {k: v for k, v in response.headers.items() if k != "date"}
            answers.append((response.status_code, got, response.content))
            assert got["vary"] == "Prefer"
            assert got.get("preference-applied") == (prefer and "ids=string")
        assert answers[0] == answers[1], (fast, slow)


async def test_the_list_cache_keeps_each_id_form_apart(client: Any) -> None:
    achievement = await seed(client)
    url = f"{PROGRESS}/list?userId=7"
    forms = [
        (await client.get(url, headers=headers)).content
        for headers in ({}, {"Prefer": "ids=string"}, {}, {"Prefer": "ids=string"})
    ]
    assert forms[0] == forms[2] and forms[1] == forms[3] and forms[0] != forms[1]
    assert b'"achievementId":%d' % achievement in forms[0]
    assert b'"achievementId":"%d"' % achievement in forms[1]


STRING_ID_WRITES = [
    ("POST", PROGRESS, {"userId": SNOWFLAKE, "achievementId": "1", "metadata": {"userId": 5}}),
    (
        "POST",
        APPLY_PATH,
        {
            "userId": LARGEST,
            "achievementKey": "k",
            "ops": [{"op": "inc", "path": "n", "value": 1}],
            "unlockWhen": [{"path": "n", "gte": 1}],
        },
    ),
    ("PUT", UNLOCK_PATH, {"userId": SNOWFLAKE, "achievementId": "1"}),
    ("PUT", UNLOCK_PATH, {"userId": int(SNOWFLAKE), "achievementId": 1}),
    ("POST", PROGRESS, {"userId": "080", "achievementId": 1}),
    ("PUT", UNLOCK_PATH, {"userId": "9223372036854775808", "achievementId": 1}),
    ("POST", APPLY_PATH, {"userId": 1, "achievementId": " 1", "ops": []}),
]


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the calls of the fast path's async `name` (one item a call): which writes it
    answered itself."""
    calls: list[int] = []
    original = getattr(fastpath_module, name)

    async def counted(*args: Any) -> Any:
        calls.append(1)
        return await original(*args)

    monkeypatch.setattr(fastpath_module, name, counted)
    return calls


@pytest.mark.parametrize("prefer", PREFER_FORMS)
async def test_string_id_writes_answer_the_same_bytes_both_ways(
    make_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, prefer: str | None
) -> None:
    answered_here = count_calls(monkeypatch, "write_without_key")
    extra = {} if prefer is None else {"Prefer": prefer}
    fast, slow = await writes_both_ways(make_client, tmp_path, monkeypatch, STRING_ID_WRITES, extra)
    assert fast == slow
    assert len(answered_here) == 4  # the fast path answered every valid write itself
    assert [status for status, _, _ in fast] == [200] * 4 + [422] * 3
    for _, headers, content in fast[:4]:
        assert headers["vary"] == "Prefer"
        assert headers.get("preference-applied") == (prefer and "ids=string")
        row = json.loads(content)
        assert str(row["userId"]) in (SNOWFLAKE, LARGEST)
        assert isinstance(row["userId"], str) == (prefer is not None)
    # A metadata member named "userId" is no id: a number in every form.
    assert b'"metadata":{"userId":5}' in fast[0][2]


# --- keyed writes: what both client libraries send ------------------------------------------

KEYED_APPLY = {"userId": 7, "achievementId": 1, "ops": [{"op": "inc", "path": "n", "value": 1}]}
STRING_IDS = {"Prefer": "ids=string"}
# A fresh key each, the retries (in the other id form too), a key reused for another request
# (another body, another route), and a refused write under a key (nothing stored: it runs again).
KEYED_WRITES: list[tuple[str, str, Any, dict[str, str]]] = [
    ("POST", PROGRESS, {"userId": 7, "achievementId": 1, "metadata": {"n": 1}}, {"k": "u1"}),
    ("POST", APPLY_PATH, KEYED_APPLY, {"k": "a1"}),
    ("POST", APPLY_PATH, KEYED_APPLY, {"k": "a1"}),  # replayed: n stays 2
    ("POST", APPLY_PATH, KEYED_APPLY, {"k": "a1", **STRING_IDS}),  # replayed, ids as strings
    ("PUT", UNLOCK_PATH, {"userId": SNOWFLAKE, "achievementId": "1"}, {"k": "l1", **STRING_IDS}),
    ("PUT", UNLOCK_PATH, {"userId": SNOWFLAKE, "achievementId": "1"}, {"k": "l1"}),  # replayed
    ("PUT", UNLOCK_PATH, {"userId": SNOWFLAKE, "achievementId": 1}, {"k": "l1"}),  # another body
    ("POST", PROGRESS, {"userId": 7, "achievementId": 1, "metadata": {"n": 1}}, {"k": "a1"}),
    ("POST", PROGRESS, {"userId": 7, "achievementId": 99}, {"k": "u2"}),  # 404, not stored
    ("POST", APPLY_PATH, {**KEYED_APPLY, "userId": 8}, {"k": "u2"}),  # so u2 is fresh here
    ("POST", PROGRESS, {"userId": 7, "achievementId": 1, "metadata": {"n": 1}}, {"k": "u1"}),
]
KEYED_STATUSES = [200] * 6 + [422, 422, 404, 200, 200]
REPLAYS = [2, 3, 5, 10]


def keyed(writes: list[tuple[str, str, Any, dict[str, str]]]) -> list[Any]:
    """The writes with their "k" as the Idempotency-Key header."""
    return [
        (
            method,
            path,
            body,
            {
                ("Idempotency-Key" if name == "k" else name): value
                for name, value in headers.items()
            },
        )
        for method, path, body, headers in writes
    ]


async def test_keyed_writes_answer_the_same_bytes_both_ways_and_here(
    make_client: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    answered_here = count_calls(monkeypatch, "write_with_key")
    # The test's clock (writes_both_ways) stands days back: keep its keys within their TTL.
    monkeypatch.setattr("sidecar.store.timestamp_before", lambda _: "2026-12-01T00:00:00.000Z")
    fast, slow = await writes_both_ways(make_client, tmp_path, monkeypatch, keyed(KEYED_WRITES))
    for number, (got, expected) in enumerate(zip(fast, slow, strict=True)):
        assert got == expected, number
        assert list(got[1].items()) == list(expected[1].items()), number  # in the same order
    assert len(answered_here) == len(KEYED_WRITES)  # the fast path answered every one itself
    assert [status for status, _, _ in fast] == KEYED_STATUSES
    for number, (status, headers, content) in enumerate(fast):
        assert (headers.get("idempotent-replayed") == "true") == (number in REPLAYS), number
        if status == 422:
            assert json.loads(content)["code"] == "IDEMPOTENCY_KEY_REUSED"
    # A replay is the first answer, in the id form the retry asks for.
    assert fast[3][1]["preference-applied"] == "ids=string" and fast[3][1]["vary"] == "Prefer"
    ids = {"id": "1", "userId": "7", "achievementId": "1"}
    assert json.loads(fast[3][2]) == {**json.loads(fast[1][2]), **ids}
    assert "preference-applied" not in fast[5][1]
    assert json.loads(fast[5][2])["userId"] == int(SNOWFLAKE)
    assert fast[2][2] == fast[1][2] and fast[10][2] == fast[0][2]


async def test_a_key_stored_on_one_path_is_replayed_on_the_other(client: Any) -> None:
    """One fingerprint: a write keyed on the fast path is replayed by Litestar, and back."""
    await create_definition(client, "Fast", key="k")
    answers = []
    for key, content_types in (("f", ("", "; charset=utf-8")), ("s", ("; charset=utf-8", ""))):
        for content_type in content_types:
            response = await client.post(
                APPLY_PATH,
                content=json.dumps(KEYED_APPLY),
                headers={"content-type": f"application/json{content_type}", "Idempotency-Key": key},
            )
            answers.append(response)
    assert [a.status_code for a in answers] == [200] * 4
    assert [a.headers.get("idempotent-replayed") for a in answers] == [None, "true"] * 2
    assert answers[1].content == answers[0].content and answers[3].content == answers[2].content
    assert json.loads(answers[2].content)["metadata"] == {"n": 2}  # each key applied once
