"""Live event streams (API.md "Unlock feed", Revision 2 "Bounds on connections"): one shared
reader for every stream, no work for idle streams, a bounded queue per stream, and a cap.

The streams here are driven at the ASGI level on the app's own loop (the test client cannot hold
an endless response open); the cap is checked against the real server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from sidecar.app import create_app
from sidecar.feed import STREAM_BACKLOG
from sidecar.settings import Settings
from tests.helpers import PROGRESS, assert_problem, create_definition, unlock, upsert
from tests.realserver import start_server

STREAM = "/users/achievements/events/stream"
BASE_URL = "http://127.0.0.1:8787"
WAIT_SECONDS = 20.0
_FRAME_ID = re.compile(rb"^id: (\d+)$", re.MULTILINE)


class AsgiStream:
    """One client of the event stream: the ids it has received, in order."""

    def __init__(self, app: Litestar, after: int | None = None, last_id: int | None = None) -> None:
        self.status: int | None = None
        self.ids: list[int] = []
        self.ended = asyncio.Event()
        self.reading = asyncio.Event()  # cleared: the client stops reading (send blocks)
        self.reading.set()
        self._gone = asyncio.Event()
        self._text = b""
        headers = [(b"host", b"127.0.0.1:8787")]
        if last_id is not None:
            headers.append((b"last-event-id", str(last_id).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": STREAM,
            "raw_path": STREAM.encode(),
            "root_path": "",
            "query_string": b"" if after is None else f"after={after}".encode(),
            "headers": headers,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8787),
            "state": {},
        }
        self.task = asyncio.create_task(self._run(app, scope))

    async def _run(self, app: Litestar, scope: dict[str, Any]) -> None:
        try:
            await app(scope, self._receive, self._send)  # type: ignore[arg-type]
        finally:
            self.ended.set()

    async def _receive(self) -> dict[str, Any]:
        if not hasattr(self, "_asked"):
            self._asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        await self.reading.wait()
        if message["type"] == "http.response.start":
            self.status = message["status"]
            return
        if not message.get("more_body", False):
            self._gone.set()  # as uvicorn: once the answer is complete, receive() says disconnect
        self._text += message.get("body", b"")
        *frames, self._text = self._text.split(b"\n\n")
        for frame in frames:
            self.ids += [int(found) for found in _FRAME_ID.findall(frame)]

    async def close(self) -> None:
        self._gone.set()
        await asyncio.wait_for(self.ended.wait(), WAIT_SECONDS)


async def until(condition: Callable[[], bool], what: str) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), WAIT_SECONDS)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@asynccontextmanager
async def app_and_client(
    db_path: Path, **settings: Any
) -> AsyncIterator[tuple[Litestar, AsyncTestClient[Any]]]:
    app = create_app(Settings(db_path=str(db_path), **settings))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        yield app, client


def count_event_reads(app: Litestar) -> list[str]:
    """From now on, every query on the events table the app runs is appended to the list."""
    readers = app.state.service.readers
    seen: list[str] = []
    for name in ("fetch_one", "fetch_all", "fetch_bulk"):
        original = getattr(readers, name)

        def counted(sql: str, *args: Any, _original: Any = original) -> Any:
            if "events" in sql:
                seen.append(sql)
            return _original(sql, *args)

        setattr(readers, name, counted)
    return seen


async def unlock_many(client: Any, achievement: int, users: range) -> None:
    response = await client.post(
        f"{PROGRESS}/batch",
        json={
            "operations": [
                {"type": "unlock", "userId": user, "achievementId": achievement} for user in users
            ]
        },
    )
    assert response.status_code == 200, response.text


async def test_idle_streams_cost_no_query_per_commit(db_path: Path) -> None:
    async with app_and_client(db_path, max_streams=300) as (app, client):
        achievement = (await create_definition(client, "A"))["id"]
        streams = [AsgiStream(app) for _ in range(200)]
        await unlock(client, 1, achievement)
        await until(lambda: all(s.ids == [1] for s in streams), "the first event on every stream")

        reads = count_event_reads(app)
        for n in range(20):  # commits without an event
            await upsert(client, 2, achievement, {"n": n})
        await asyncio.sleep(0.1)  # a stream woken by those commits would have queried by now
        assert reads == []

        await unlock(client, 3, achievement)
        await until(lambda: all(s.ids == [1, 2] for s in streams), "the second event everywhere")
        assert len(reads) == 1  # read once, for all 200 streams
        for stream in streams:
            await stream.close()
        assert app.state.service.feed.open_streams == 0


async def test_with_no_stream_open_unlocks_cost_no_event_read(db_path: Path) -> None:
    """The shared reader reads only for open streams; a stream opened later misses nothing."""
    async with app_and_client(db_path) as (app, client):
        achievement = (await create_definition(client, "A"))["id"]
        reads = count_event_reads(app)
        await unlock_many(client, achievement, range(1, 21))
        await asyncio.sleep(0.1)  # a read woken by those commits would have run by now
        assert reads == []
        late = AsgiStream(app)
        await until(lambda: late.ids == list(range(1, 21)), "the earlier events, from the file")
        await unlock_many(client, achievement, range(21, 31))
        await until(lambda: late.ids == list(range(1, 31)), "the later events, from the reader")
        await late.close()


async def test_every_stream_gets_every_event_once_in_order(db_path: Path) -> None:
    async with app_and_client(db_path) as (app, client):
        achievement = (await create_definition(client, "A"))["id"]
        await unlock_many(client, achievement, range(1, 11))
        streams = {after: AsgiStream(app, after=after) for after in (0, 5, 10)}

        async def produce() -> None:
            for start in range(11, 1011, 100):  # ten commits of 100 events while streams join
                await unlock_many(client, achievement, range(start, start + 100))
                await asyncio.sleep(0)
            await unlock_many(client, achievement, range(2000, 2700))  # more than one page

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.05)
        streams[500] = AsgiStream(app, after=500)
        streams[-1] = AsgiStream(app, last_id=1)  # Last-Event-ID resumes after 1
        await producer
        last = 1010 + 700
        await until(lambda: all(s.ids[-1:] == [last] for s in streams.values()), "every event")
        for after, stream in streams.items():
            start = 1 if after == -1 else after
            assert stream.ids == list(range(start + 1, last + 1)), after

        # A client that hangs up and resumes with Last-Event-ID misses nothing.
        stream = streams[0]
        await stream.close()
        await unlock_many(client, achievement, range(3000, 3005))
        resumed = AsgiStream(app, last_id=stream.ids[-1])
        await until(lambda: resumed.ids[-1:] == [last + 5], "the resumed stream")
        assert resumed.ids == list(range(last + 1, last + 6))
        for other in [*streams.values(), resumed]:
            if not other.ended.is_set():
                await other.close()


async def test_a_stream_that_falls_behind_is_ended_and_resumes(db_path: Path) -> None:
    async with app_and_client(db_path) as (app, client):
        achievement = (await create_definition(client, "A"))["id"]
        await unlock(client, 1, achievement)
        slow, fast = AsgiStream(app), AsgiStream(app)
        await until(lambda: slow.ids == [1] and fast.ids == [1], "the first event")
        slow.reading.clear()  # its client stops reading: its frames pile up, up to the bound
        total = 1 + STREAM_BACKLOG + 1000
        for start in range(2, total + 1, 1000):
            end = min(start + 1000, total + 1)
            await unlock_many(client, achievement, range(start, end))
            # The fast client reads as it comes (in this one process, it must be let to: else a
            # loaded machine leaves it as far behind as the slow one, and it is ended too).
            await until(lambda end=end: fast.ids[-1:] == [end - 1], "the fast stream")
        assert fast.ids == list(range(1, total + 1))  # the slow one did not hold it back
        slow.reading.set()
        # The slow stream sends what was queued for it, then ends: the client resumes from there.
        await asyncio.wait_for(slow.ended.wait(), WAIT_SECONDS)
        assert slow.ids == list(range(1, len(slow.ids) + 1))
        assert len(slow.ids) < total
        resumed = AsgiStream(app, last_id=slow.ids[-1])
        await until(lambda: resumed.ids[-1:] == [total], "the resumed stream")
        assert slow.ids + resumed.ids == list(range(1, total + 1))
        await resumed.close()
        await fast.close()


async def test_open_streams_are_capped_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path / "achievements.db", {"SIDECAR_MAX_STREAMS": "3"})
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
            async with (
                client.stream("GET", STREAM) as first,
                client.stream("GET", STREAM),
                client.stream("GET", STREAM),
            ):
                refused = await client.get(STREAM)
                assert_problem(refused, 503, "TOO_MANY_STREAMS")
                assert int(refused.headers["retry-after"]) > 0
                assert first.status_code == 200
            # Closed streams free their slots (the server notices the hang-up soon).
            for _ in range(200):
                async with client.stream("GET", STREAM) as again:
                    if again.status_code == 200:
                        break
                await asyncio.sleep(0.05)
            assert again.status_code == 200
    finally:
        server.stop()
