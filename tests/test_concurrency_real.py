"""Exactness under real concurrency, against the real server (`python -m sidecar serve`):
no lost update, no double count, exactly one "newly unlocked" however the requests race."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.realserver import RealServer, start_server

PROGRESS = "/users/achievements/progress"
APPLY = f"{PROGRESS}/apply"
BATCH = f"{PROGRESS}/batch"
CLIENTS = 50
INCS_PER_CLIENT = 20
TOTAL = CLIENTS * INCS_PER_CLIENT
THRESHOLD = 500
REPLAYED = "idempotent-replayed"


def inc_body(user: int, achievement: int) -> dict[str, Any]:
    return {
        "userId": user,
        "achievementId": achievement,
        "ops": [{"op": "inc", "path": "current", "value": 1}],
        "unlockWhen": [{"path": "current", "gte": THRESHOLD}],
    }


def connect(base_url: str, connections: int = 1) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)


async def create_achievement(base_url: str, name: str) -> int:
    async with connect(base_url) as client:
        response = await client.post("/users/achievements/definitions", json={"name": name})
        assert response.status_code == 201, response.text
        return int(response.json()["id"])


async def get_row(base_url: str, user: int, achievement: int) -> Any:
    async with connect(base_url) as client:
        params = {"userId": user, "achievementId": achievement}
        response = await client.get(PROGRESS, params=params)
        assert response.status_code == 200, response.text
        return response.json()


async def events_of(base_url: str, user: int, achievement: int) -> list[dict[str, Any]]:
    async with connect(base_url) as client:
        response = await client.get("/users/achievements/events", params={"limit": 1000})
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()
    return [e for e in events if (e["userId"], e["achievementId"]) == (user, achievement)]


async def run_clients(
    base_url: str, work: Callable[[httpx.AsyncClient], Awaitable[list[Any]]]
) -> tuple[list[Any], int]:
    """CLIENTS clients, each with its own connection, all started at once; their answers and
    the most requests that were in flight together."""
    in_flight = 0
    peak = 0
    clients = [connect(base_url) for _ in range(CLIENTS)]

    def counted(client: httpx.AsyncClient) -> httpx.AsyncClient:
        async def on_request(request: httpx.Request) -> None:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)

        async def on_response(response: httpx.Response) -> None:
            nonlocal in_flight
            in_flight -= 1

        client.event_hooks = {"request": [on_request], "response": [on_response]}
        return client

    try:
        answers = await asyncio.gather(*(work(counted(client)) for client in clients))
    finally:
        for client in clients:
            await client.aclose()
    return [answer for per_client in answers for answer in per_client], peak


async def test_concurrent_incs_on_one_row_are_exact(server: RealServer, sql: Any) -> None:
    achievement = await create_achievement(server.base_url, "Hot row")

    async def work(client: httpx.AsyncClient) -> list[tuple[int, bool, Any]]:
        answers = []
        for _ in range(INCS_PER_CLIENT):
            response = await client.post(APPLY, json=inc_body(1, achievement))
            assert response.status_code == 200, response.text
            body = response.json()
            answers.append((body["metadata"]["current"], body["newlyUnlocked"], body["unlockedAt"]))
        return answers

    answers, peak = await run_clients(server.base_url, work)
    assert peak == CLIENTS
    # Every answer saw its own increment: the values are exactly 1..1000, none lost or repeated.
    assert sorted(current for current, _, _ in answers) == list(range(1, TOTAL + 1))
    unlocking = [(current, at) for current, newly, at in answers if newly]
    assert len(unlocking) == 1 and unlocking[0][0] == THRESHOLD
    for current, _, unlocked_at in answers:
        assert (unlocked_at is None) is (current < THRESHOLD)
        assert unlocked_at is None or unlocked_at == unlocking[0][1]
    row = await get_row(server.base_url, 1, achievement)
    assert row["metadata"] == {"current": TOTAL}
    assert row["unlockedAt"] == unlocking[0][1]
    assert len(await events_of(server.base_url, 1, achievement)) == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]


async def test_concurrent_batches_on_one_row_are_exact(server: RealServer, sql: Any) -> None:
    achievement = await create_achievement(server.base_url, "Hot batches")
    batches, items = 4, 5

    async def work(client: httpx.AsyncClient) -> list[list[tuple[int, bool]]]:
        answers = []
        for _ in range(batches):
            operations = [{"type": "apply", **inc_body(2, achievement)} for _ in range(items)]
            response = await client.post(BATCH, json={"operations": operations})
            assert response.status_code == 200, response.text
            results = response.json()["results"]
            answers.append([(r["metadata"]["current"], r["newlyUnlocked"]) for r in results])
        return answers

    answers, peak = await run_clients(server.base_url, work)
    assert peak == CLIENTS
    # Each batch is one transaction: its five items are five consecutive values.
    for results in answers:
        first = results[0][0]
        assert [current for current, _ in results] == list(range(first, first + items))
    currents = sorted(current for results in answers for current, _ in results)
    assert currents == list(range(1, CLIENTS * batches * items + 1))
    unlocking = [current for results in answers for current, newly in results if newly]
    assert unlocking == [THRESHOLD]
    row = await get_row(server.base_url, 2, achievement)
    assert row["metadata"] == {"current": CLIENTS * batches * items}
    assert len(await events_of(server.base_url, 2, achievement)) == 1


async def test_one_key_sent_five_times_counts_once(server: RealServer) -> None:
    achievement = await create_achievement(server.base_url, "Retried")
    body = inc_body(3, achievement)
    headers = {"Idempotency-Key": "retry-me"}
    async with connect(server.base_url, connections=5) as client:
        together = await asyncio.gather(
            *(client.post(APPLY, json=body, headers=headers) for _ in range(3))
        )
        later = [await client.post(APPLY, json=body, headers=headers) for _ in range(2)]
    answers = [*together, *later]
    assert [a.status_code for a in answers] == [200] * 5
    assert len({a.content for a in answers}) == 1
    assert sum(REPLAYED not in a.headers for a in together) == 1
    assert all(a.headers[REPLAYED] == "true" for a in later)
    assert answers[0].json()["metadata"] == {"current": 1}
    assert (await get_row(server.base_url, 3, achievement))["metadata"] == {"current": 1}


async def test_replay_survives_a_kill(server: RealServer, sql: Any) -> None:
    achievement = await create_achievement(server.base_url, "Crash")
    body = inc_body(4, achievement)
    async with connect(server.base_url) as client:
        first = await client.post(APPLY, json=body, headers={"Idempotency-Key": "before-crash"})
    assert first.status_code == 200 and REPLAYED not in first.headers
    server.kill()  # SIGKILL: no shutdown code runs
    restarted = start_server(server.db_path)
    try:
        async with connect(restarted.base_url) as client:
            again = await client.post(APPLY, json=body, headers={"Idempotency-Key": "before-crash"})
            assert again.status_code == 200
            assert again.headers[REPLAYED] == "true"
            assert again.content == first.content
            row = await client.get(PROGRESS, params={"userId": 4, "achievementId": achievement})
            assert row.json()["metadata"] == {"current": 1}
            fresh = await client.post(APPLY, json=body, headers={"Idempotency-Key": "after"})
            assert REPLAYED not in fresh.headers
            assert fresh.json()["metadata"] == {"current": 2}
    finally:
        restarted.stop()
    rows = sql("SELECT metadata FROM user_achievements WHERE user_id = 4")
    assert [json.loads(metadata) for (metadata,) in rows] == [{"current": 2}]
