"""Several sidecar processes on one PostgreSQL database, as on several bot hosts: 3 real servers
(`python -m sidecar serve --db postgresql://...`) and 30 clients spread over them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import pg
from tests.helpers import DEFINITIONS, PROGRESS
from tests.realserver import RealServer, start_server

SIDECARS = 3
CLIENTS = 30
INCREMENTS = 20  # per client
APPLY = f"{PROGRESS}/apply"


@pytest.fixture
def sidecars(postgres_url: str, tmp_path: Path) -> Iterator[list[RealServer]]:
    with pg.fresh_database(postgres_url) as url:
        servers: list[RealServer] = []
        try:
            for _ in range(SIDECARS):
                servers.append(start_server(url, log_dir=tmp_path))
            yield servers
        finally:
            for server in servers:
                server.stop()


async def test_three_sidecars_one_database(sidecars: list[RealServer]) -> None:
    clients = [
        httpx.AsyncClient(base_url=sidecars[n % SIDECARS].base_url, timeout=60)
        for n in range(CLIENTS)
    ]
    try:
        created = await clients[0].post(DEFINITIONS, json={"name": "Counted", "key": "counted"})
        assert created.status_code == 201, created.text
        achievement = created.json()["id"]
        body = {"userId": 7, "achievementId": achievement}
        inc = {**body, "ops": [{"op": "inc", "path": "n", "value": 1}]}

        async def increments(client: httpx.AsyncClient) -> None:
            for _ in range(INCREMENTS):
                response = await client.post(APPLY, json=inc)
                assert response.status_code == 200, response.text

        async def unlock(client: httpx.AsyncClient) -> Any:
            response = await client.put(f"{PROGRESS}/unlock", json=body)
            assert response.status_code == 200, response.text
            return response.json()["newlyUnlocked"]

        # Read-modify-write from every sidecar at once: no increment lost.
        await asyncio.gather(*(increments(client) for client in clients))
        for sidecar_client in clients[:SIDECARS]:
            row = await sidecar_client.get(PROGRESS, params=body)
            assert row.json()["metadata"] == {"n": CLIENTS * INCREMENTS}

        # The same unlock from 30 clients on 3 sidecars: exactly one is newly unlocked, one event.
        flags = await asyncio.gather(*(unlock(client) for client in clients))
        assert flags.count(True) == 1
        for sidecar_client in clients[:SIDECARS]:
            events = (await sidecar_client.get("/users/achievements/events")).json()
            assert [event["id"] for event in events] == [1]

        # An Idempotency-Key retried against every other sidecar, also while the first is in
        # flight: applied once, the others replay its answer.
        headers = {"Idempotency-Key": "message-42"}
        answers = await asyncio.gather(
            *(client.post(APPLY, json=inc, headers=headers) for client in clients)
        )
        assert {answer.status_code for answer in answers} == {200}
        assert len({answer.content for answer in answers}) == 1
        replayed = [answer.headers.get("idempotent-replayed") for answer in answers]
        assert replayed.count(None) == 1
        row = await clients[1].get(PROGRESS, params=body)
        assert row.json()["metadata"] == {"n": CLIENTS * INCREMENTS + 1}

        # The counters behind stats and the leaderboard agree on every sidecar.
        for sidecar_client in clients[:SIDECARS]:
            stats = (await sidecar_client.get("/users/achievements/stats")).json()
            assert [(s["unlockedCount"], s["inProgressCount"]) for s in stats] == [(1, 0)]
            board = (await sidecar_client.get("/users/achievements/leaderboard")).json()
            assert [(entry["userId"], entry["unlockedCount"]) for entry in board] == [(7, 1)]
    finally:
        for client in clients:
            await client.aclose()


STREAM = "/users/achievements/events/stream"
UNLOCKS = 60


async def stream_ids(base_url: str, ids: list[int], opened: asyncio.Event, total: int) -> None:
    """Read the SSE stream of one sidecar until `total` event ids have come."""
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=60) as client,
        client.stream("GET", STREAM) as response,
    ):
        assert response.status_code == 200
        opened.set()
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
                if len(ids) >= total:
                    return


BATCHES = 5
LISTENERS = "SELECT pid FROM pg_stat_activity WHERE application_name = 'sidecar-listener'"


@pytest.mark.parametrize("cut", [False, True], ids=["listening", "listen-connections-cut"])
async def test_streams_on_every_sidecar_see_every_unlock_in_commit_order(
    sidecars: list[RealServer], cut: bool
) -> None:
    """Unlocks committed by any of 3 sidecars reach a stream open on each, live, each once,
    gap-free and in id (commit) order; also when every sidecar's LISTEN connection is cut
    before each batch (the notifications sent meanwhile are lost: the sidecar polls, and reads
    everything past its cursor once it listens again)."""
    query = pg.query_function(str(sidecars[0].db_path))
    clients = [
        httpx.AsyncClient(base_url=sidecars[n % SIDECARS].base_url, timeout=60)
        for n in range(CLIENTS)
    ]
    try:
        created = await clients[0].post(DEFINITIONS, json={"name": "Streamed"})
        assert created.status_code == 201, created.text
        achievement = created.json()["id"]
        seen: list[list[int]] = [[] for _ in sidecars]
        opened = [asyncio.Event() for _ in sidecars]
        streams = [
            asyncio.create_task(stream_ids(sidecar.base_url, ids, event, UNLOCKS))
            for sidecar, ids, event in zip(sidecars, seen, opened, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in opened)), 30)

        async def unlock(client: httpx.AsyncClient, user: int) -> None:
            body = {"userId": user, "achievementId": achievement}
            response = await client.put(f"{PROGRESS}/unlock", json=body)
            assert response.status_code == 200, response.text

        users = range(1, UNLOCKS + 1)
        for batch in range(BATCHES):
            if cut:
                for (pid,) in query(LISTENERS):
                    query("SELECT pg_terminate_backend(?)", pid)
            await asyncio.gather(
                *(unlock(clients[user % CLIENTS], user) for user in users[batch::BATCHES])
            )
        await asyncio.wait_for(asyncio.gather(*streams), 60)
        for ids in seen:
            assert ids == list(range(1, UNLOCKS + 1))
        events = (await clients[1].get("/users/achievements/events")).json()
        assert sorted(event["userId"] for event in events) == list(range(1, UNLOCKS + 1))
    finally:
        for client in clients:
            await client.aclose()


ROWS = 10  # unlocked rows, each asked by CLIENTS // ROWS clients
USERS = 10  # users whose counter the clients increment
OPERATIONS = 10  # per client
KILL_AFTER = 100  # acknowledged requests before sidecar 0 is killed
ATTEMPTS = 30  # per request, over the sidecars in turn


async def test_kill_9_of_one_sidecar_mid_load_loses_and_doubles_nothing(
    sidecars: list[RealServer],
) -> None:
    """30 clients write through 3 sidecars; sidecar 0 gets kill -9 mid-load. A client whose
    request fails (connection refused or cut) sends it again, with the same Idempotency-Key,
    to the next sidecar: every increment counts once, each row has one newlyUnlocked, and
    the feed has each unlock once."""
    http = [httpx.AsyncClient(base_url=sidecar.base_url, timeout=60) for sidecar in sidecars]
    acknowledged = 0
    enough = asyncio.Event()
    try:
        created = await http[1].post(DEFINITIONS, json={"name": "Counted"})
        assert created.status_code == 201, created.text
        achievement = created.json()["id"]

        async def send(first: int, method: str, path: str, body: Any, key: str) -> Any:
            nonlocal acknowledged
            for attempt in range(ATTEMPTS):
                client = http[(first + attempt) % SIDECARS]
                try:
                    response = await client.request(
                        method, path, json=body, headers={"Idempotency-Key": key}
                    )
                except httpx.TransportError:
                    continue
                if response.status_code >= 500:
                    await asyncio.sleep(0.1)
                    continue
                assert response.status_code == 200, response.text
                acknowledged += 1
                if acknowledged >= KILL_AFTER:
                    enough.set()
                return response.json()
            raise AssertionError(f"{key} was never acknowledged")

        async def client(n: int) -> list[tuple[int, bool]]:
            unlocked = []
            for k in range(OPERATIONS):
                if k == OPERATIONS // 2:
                    row = {"userId": 1000 + n % ROWS, "achievementId": achievement}
                    answer = await send(n, "PUT", f"{PROGRESS}/unlock", row, f"unlock-{n}")
                    unlocked.append((row["userId"], answer["newlyUnlocked"]))
                else:
                    body = {
                        "userId": 1 + n % USERS,
                        "achievementId": achievement,
                        "ops": [{"op": "inc", "path": "n", "value": 1}],
                    }
                    await send(n, "POST", APPLY, body, f"inc-{n}-{k}")
            return unlocked

        async def kill() -> None:
            await enough.wait()
            await asyncio.to_thread(sidecars[0].kill)

        killer = asyncio.create_task(kill())
        answers = await asyncio.wait_for(asyncio.gather(*(client(n) for n in range(CLIENTS))), 300)
        await asyncio.wait_for(killer, 30)
        assert sidecars[0].process.poll() is not None  # it was killed mid-load

        increments = (OPERATIONS - 1) * CLIENTS // USERS  # per user
        for user in range(1, USERS + 1):
            row = await http[2].get(PROGRESS, params={"userId": user, "achievementId": achievement})
            assert row.json()["metadata"] == {"n": increments}, user
        flags = [pair for unlocked in answers for pair in unlocked]
        for user in range(1000, 1000 + ROWS):
            assert [newly for row, newly in flags if row == user].count(True) == 1, user
        for survivor in http[1:]:
            events = (await survivor.get("/users/achievements/events")).json()
            assert [event["id"] for event in events] == list(range(1, ROWS + 1))
            assert sorted(event["userId"] for event in events) == list(range(1000, 1000 + ROWS))
    finally:
        for each in http:
            await each.aclose()
