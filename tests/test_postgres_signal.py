"""The "changes" signal on PostgreSQL (LISTEN/NOTIFY): two sidecars on one database, here two
apps in one process. The definitions list is kept between changes on PostgreSQL too, and is
never older than a change another sidecar acknowledged before the list was asked for; while
the LISTEN connection is lost it is not kept at all."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from sidecar import store
from sidecar.app import create_app
from sidecar.settings import Settings
from tests import pg
from tests.helpers import DEFINITIONS, create_definition

BASE_URL = "http://127.0.0.1:8787"
LISTENERS = "SELECT pid FROM pg_stat_activity WHERE application_name = 'sidecar-listener'"


@pytest.fixture
def url(postgres_database: str) -> Iterator[str]:
    pg.reset(postgres_database)
    yield postgres_database


@asynccontextmanager
async def sidecars(url: str, count: int) -> AsyncIterator[list[AsyncTestClient[Any]]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(
                AsyncTestClient(app=create_app(Settings(db_path=url)), base_url=BASE_URL)
            )
            for _ in range(count)
        ]


@pytest.fixture
def list_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per read of the definitions list from the database, by any app."""
    reads: list[int] = []
    original = store.list_achievements

    async def counted(readers: Any) -> Any:
        reads.append(1)
        return await original(readers)

    monkeypatch.setattr(store, "list_achievements", counted)
    return reads


async def listed(client: AsyncTestClient[Any]) -> list[str]:
    response = await client.get(DEFINITIONS)
    assert response.status_code == 200, response.text
    return sorted(definition["name"] for definition in response.json())


async def listening(client: AsyncTestClient[Any], list_reads: list[int]) -> None:
    """Until the sidecar keeps its list (its LISTEN connection is made at start, on a thread of
    its own): a list asked twice is read once."""
    for _ in range(200):  # 10 s at most
        await listed(client)
        reads = len(list_reads)
        await listed(client)
        if len(list_reads) == reads:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the list is never kept")


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):  # 20 s at most
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_change_on_one_sidecar_is_listed_by_the_other_at_once(
    url: str, list_reads: list[int]
) -> None:
    async with sidecars(url, 2) as (a, b):
        for n in range(20):  # B's list is kept (asked just before), then A changes a definition
            assert await listed(b) == [f"D{i:03d}" for i in range(n)]
            await create_definition(a, f"D{n:03d}")
            assert await listed(b) == [f"D{i:03d}" for i in range(n + 1)]
        first = (await a.get(DEFINITIONS)).json()[0]["id"]
        assert (await a.put(f"{DEFINITIONS}/{first}", json={"name": "Renamed"})).status_code == 200
        assert "Renamed" in await listed(b)
        assert (await a.delete(f"{DEFINITIONS}/{first}")).status_code == 200
        assert "Renamed" not in await listed(b)


async def test_the_list_is_kept_until_a_definition_changes(url: str, list_reads: list[int]) -> None:
    async with sidecars(url, 2) as (a, b):
        await create_definition(a, "D000")
        await listening(b, list_reads)
        reads = len(list_reads)
        for _ in range(5):
            assert await listed(b) == ["D000"]
        assert len(list_reads) == reads  # kept: no read of the list from the database
        # A write that changes no definition (progress, an unlock) keeps it too.
        unlock = {"userId": 1, "achievementId": (await b.get(DEFINITIONS)).json()[0]["id"]}
        assert (await a.put("/users/achievements/progress/unlock", json=unlock)).status_code == 200
        assert await listed(b) == ["D000"]
        assert len(list_reads) == reads
        await create_definition(a, "D001")
        assert await listed(b) == ["D000", "D001"]
        assert len(list_reads) == reads + 1


async def test_without_its_listen_connection_a_sidecar_keeps_no_list_then_listens_again(
    url: str, list_reads: list[int]
) -> None:
    query = pg.query_function(url)
    async with sidecars(url, 2) as (a, b):
        await until(lambda: len(query(LISTENERS)) == 2, "both sidecars listening")
        await create_definition(a, "D000")
        assert await listed(b) == ["D000"]
        for (pid,) in query(LISTENERS):
            query("SELECT pg_terminate_backend(?)", pid)
        # Lost, then back (within POLL_SECONDS): meanwhile every list is read, and exact.
        n = 1
        while len(query(LISTENERS)) < 2 and n < 200:
            await create_definition(a, f"D{n:03d}")
            assert await listed(b) == [f"D{i:03d}" for i in range(n + 1)]
            n += 1
        await until(lambda: len(query(LISTENERS)) == 2, "both sidecars listening again")
        await listening(b, list_reads)  # kept again
        await create_definition(a, f"D{n:03d}")
        assert await listed(b) == [f"D{i:03d}" for i in range(n + 1)]


async def test_the_listener_polls_while_it_cannot_listen_and_reads_again_once_back(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Listener alone: an "events" notification from another session wakes the feed; with
    its connection cut and no new one to be had, it wakes the feed every POLL_SECONDS (the
    notifications sent meanwhile are lost) and keeps no list; back, it keeps the list and
    hears notifications again."""
    from sidecar.postgres import backend

    query = pg.query_function(url)
    wakes: list[bool] = []
    listener = backend.Listener(url)
    listener.start(wakes.append)
    try:
        await until(lambda: len(wakes) == 1, "the wake-up of the first connection")
        assert await listener.version() == await listener.version()  # kept
        query("SELECT pg_notify(?, ?)", backend.CHANNEL, backend.EVENTS)
        await until(lambda: len(wakes) == 2, "the wake-up of a notification")

        connect = backend.psycopg.connect

        def no_listening(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("application_name") == "sidecar-listener":
                raise backend.psycopg.OperationalError("refused by the test")
            return connect(*args, **kwargs)

        monkeypatch.setattr(backend.psycopg, "connect", no_listening)
        for (pid,) in query(LISTENERS):
            query("SELECT pg_terminate_backend(?)", pid)
        await until(lambda: len(wakes) >= 5, "wake-ups by polling")
        assert await listener.version() != await listener.version()  # not kept meanwhile

        monkeypatch.undo()
        await until(lambda: len(query(LISTENERS)) == 1, "the listener back")
        for _ in range(200):  # kept again, once it listens (10 s at most)
            if await listener.version() == await listener.version():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the list is not kept again")
        woken = len(wakes)
        query("SELECT pg_notify(?, ?)", backend.CHANNEL, backend.EVENTS)
        await until(lambda: len(wakes) > woken, "the wake-up of a notification, again")
    finally:
        await listener.close()


async def test_a_group_of_unlocks_sends_one_notification(url: str) -> None:
    """20 unlocks committed in one transaction by the writer: one NOTIFY (counted by a LISTEN
    session of the test), "events"; the transaction that only held the writer sends none."""
    from sidecar.postgres import backend

    writer = backend.Writer(url)
    listen = psycopg.connect(url, autocommit=True)
    try:
        achievement = await writer.run(
            lambda connection: store.create_achievement(connection, "A", None, None, "{}")
        )
        listen.execute(f"LISTEN {backend.CHANNEL}")
        entered, gate = threading.Event(), threading.Event()

        def hold(connection: Any) -> None:
            entered.set()
            gate.wait(10)

        held = asyncio.ensure_future(writer.run(hold))
        await until(entered.is_set, "the writer held")
        unlocks = [
            asyncio.ensure_future(
                writer.run(partial(store.unlock_progress, user_id=user, ref=achievement.id))
            )
            for user in range(1, 21)
        ]
        await until(lambda: writer._queue.qsize() == len(unlocks), "the unlocks queued")
        gate.set()
        await held
        assert all(change.newly_unlocked for change in await asyncio.gather(*unlocks))
        listen.execute("SELECT")  # takes in every notification committed before it
        assert [notify.payload for notify in listen.notifies(timeout=0)] == [backend.EVENTS]
    finally:
        listen.close()
        await writer.close()
