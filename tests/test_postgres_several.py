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
