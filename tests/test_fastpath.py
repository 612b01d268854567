"""The fast path for plain progress reads (sidecar/fastpath.py): it answers exactly what the
Litestar handlers answer, and leaves every other request to them."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.types import Message, Receive, Scope, Send

from sidecar.fastpath import FastReads
from tests.helpers import PROGRESS, create_definition, unlock, upsert

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


class Recorder:
    """Stands in for the Litestar app: records what reaches it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.calls.append(scope["query_string"].decode())


class FakeReaders:
    def __init__(self) -> None:
        self.queries: list[tuple[Any, ...]] = []

    def fetch_one(self, sql: str, parameters: Any) -> None:
        self.queries.append(tuple(parameters))

    def fetch_all(self, sql: str, parameters: Any) -> list[Any]:
        self.queries.append(tuple(parameters))
        return []


def scope_of(path: str, query: str, method: str = "GET") -> Any:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": query.encode(),
        "headers": [],
    }


async def call(fast: FastReads, scope: Any) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

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
    ],
)
async def test_plain_reads_are_answered_without_litestar(
    path: str, query: str, parameters: tuple[int, ...]
) -> None:
    recorder, readers = Recorder(), FakeReaders()
    fast = FastReads(recorder, lambda: readers)  # type: ignore[arg-type]
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
    ],
)
async def test_everything_else_goes_to_litestar(path: str, query: str, method: str) -> None:
    recorder, readers = Recorder(), FakeReaders()
    fast = FastReads(recorder, lambda: readers)  # type: ignore[arg-type]
    assert await call(fast, scope_of(path, query, method)) == []
    assert recorder.calls == [query]
    assert readers.queries == []


async def test_a_failing_read_is_left_to_litestar() -> None:
    class BrokenReaders(FakeReaders):
        def fetch_one(self, sql: str, parameters: Any) -> None:
            raise RuntimeError("database is locked")

    recorder = Recorder()
    fast = FastReads(recorder, lambda: BrokenReaders())  # type: ignore[arg-type]
    assert await call(fast, scope_of(PROGRESS, "userId=1&achievementId=2")) == []
    assert recorder.calls == ["userId=1&achievementId=2"]
