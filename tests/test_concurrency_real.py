"""Exactness under real concurrency, against the real server: no lost update, no double count,
exactly one "newly unlocked" however the requests race."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.realserver import RealServer, start_server

PROGRESS = "/users/achievements/progress"
CLIENTS = 50
INCS_PER_CLIENT = 20
THRESHOLD = 500


def inc_body(user: int, achievement: int) -> dict[str, Any]:
    return {
        "userId": user,
        "achievementId": achievement,
        "ops": [{"op": "inc", "path": "current", "value": 1}],
        "unlockWhen": [{"path": "current", "gte": THRESHOLD}],
    }


async def create_achievement(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/users/achievements/definitions", json={"name": "Hot"})
        return int(response.json()["id"])


async def current(base_url: str, user: int, achievement: int) -> Any:
    async with httpx.AsyncClient(base_url=base_url) as client:
        params = {"userId": user, "achievementId": achievement}
        return (await client.get(PROGRESS, params=params)).json()


def pool(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30)


def test_concurrent_incs_on_one_row_are_exact(server: RealServer) -> None:
    async def run() -> None:
        achievement = await create_achievement(server.base_url)
        async with pool(server.base_url) as client:

            async def one_client() -> list[bool]:
                unlocked = []
                for _ in range(INCS_PER_CLIENT):
                    response = await client.post(f"{PROGRESS}/apply", json=inc_body(1, achievement))
                    assert response.status_code == 200, response.text
                    unlocked.append(response.json()["newlyUnlocked"])
                return unlocked

            answers = await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        flags = [flag for client_flags in answers for flag in client_flags]
        assert sum(flags) == 1
        row = await current(server.base_url, 1, achievement)
        assert row["metadata"]["current"] == CLIENTS * INCS_PER_CLIENT
        assert row["unlockedAt"] is not None

    asyncio.run(run())


def test_concurrent_batches_on_one_row_are_exact(server: RealServer) -> None:
    async def run() -> None:
        achievement = await create_achievement(server.base_url)
        async with pool(server.base_url) as client:

            async def one_client() -> int:
                unlocked = 0
                for _ in range(4):
                    items = [{"type": "apply", **inc_body(2, achievement)} for _ in range(5)]
                    response = await client.post(f"{PROGRESS}/batch", json={"operations": items})
                    assert response.status_code == 200, response.text
                    unlocked += sum(r["newlyUnlocked"] for r in response.json()["results"])
                return unlocked

            answers = await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
        assert sum(answers) == 1
        row = await current(server.base_url, 2, achievement)
        assert row["metadata"]["current"] == CLIENTS * 4 * 5

    asyncio.run(run())


def test_retried_inc_with_one_key_counts_once_also_across_a_crash(server: RealServer) -> None:
    async def run() -> str:
        achievement = await create_achievement(server.base_url)
        body = inc_body(3, achievement)
        headers = {"Idempotency-Key": "retry-me"}
        async with pool(server.base_url) as client:
            first = await client.post(f"{PROGRESS}/apply", json=body, headers=headers)
            concurrent = await asyncio.gather(
                *(client.post(f"{PROGRESS}/apply", json=body, headers=headers) for _ in range(4))
            )
        assert all(r.headers["idempotent-replayed"] == "true" for r in concurrent)
        assert (await current(server.base_url, 3, achievement))["metadata"]["current"] == 1
        return str(first.text)

    first_answer = asyncio.run(run())
    server.kill()
    restarted = start_server(server.db_path)
    try:
        with httpx.Client(base_url=restarted.base_url) as client:
            achievement = client.get("/users/achievements/definitions").json()[0]["id"]
            again = client.post(
                f"{PROGRESS}/apply",
                json=inc_body(3, achievement),
                headers={"Idempotency-Key": "retry-me"},
            )
            assert again.headers["idempotent-replayed"] == "true"
            assert again.text == first_answer
            row = client.get(PROGRESS, params={"userId": 3, "achievementId": achievement})
            assert row.json()["metadata"]["current"] == 1
    finally:
        restarted.stop()
