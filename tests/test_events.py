"""The unlock feed (API.md "Unlock feed"): one event per unlock, by cursor and live over SSE."""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.helpers import (
    PROGRESS,
    TIMESTAMP,
    assert_problem,
    create_definition,
    error_fields,
    unlock,
    upsert,
)
from tests.realserver import RealServer

EVENTS = "/users/achievements/events"
STREAM = f"{EVENTS}/stream"
EVENT_FIELDS = {"id", "type", "userId", "achievementId", "achievementKey", "unlockedAt"}
# Snowflake-sized user ids: the feed must carry them exactly.
USER_BASE = 80_351_110_224_678_912
FRAME_SECONDS = 10.0


async def all_events(client: Any, page: int = 100) -> list[dict[str, Any]]:
    """Every event, read by cursor in pages of `page`."""
    events: list[dict[str, Any]] = []
    after = 0
    while True:
        response = await client.get(EVENTS, params={"after": after, "limit": page})
        assert response.status_code == 200, response.text
        batch = response.json()
        assert len(batch) <= page
        if not batch:
            return events
        events.extend(batch)
        after = batch[-1]["id"]


def event_of(row: dict[str, Any], event_id: int, key: str | None = None) -> dict[str, Any]:
    """The event an unlocked row must have produced (`key`: its definition's key)."""
    return {
        "id": event_id,
        "type": "achievement.unlocked",
        "userId": row["userId"],
        "achievementId": row["achievementId"],
        "achievementKey": key,
        "unlockedAt": row["unlockedAt"],
    }


async def apply(client: Any, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(f"{PROGRESS}/apply", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def batch(client: Any, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    response = await client.post(f"{PROGRESS}/batch", json={"operations": operations})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


# --- events from every kind of unlock -----------------------------------------------------------


async def test_unlock_appends_one_event(client: Any, sql: Any) -> None:
    achievement = (await create_definition(client, "First"))["id"]
    assert await all_events(client) == []
    row = await unlock(client, USER_BASE + 1, achievement)
    assert row["newlyUnlocked"] is True
    events = await all_events(client)
    assert events == [event_of(row, 1)]
    assert set(events[0]) == EVENT_FIELDS
    assert TIMESTAMP.match(events[0]["unlockedAt"])
    stored = sql(
        "SELECT unlocked_at FROM user_achievements WHERE user_id = ? AND achievement_id = ?",
        USER_BASE + 1,
        achievement,
    )
    assert stored == [(events[0]["unlockedAt"],)]

    # A repeated unlock changes nothing and adds no event.
    again = await unlock(client, USER_BASE + 1, achievement)
    assert again["newlyUnlocked"] is False
    assert await all_events(client) == [event_of(row, 1)]


async def test_unlocking_a_locked_row_appends_an_event_upserts_do_not(client: Any) -> None:
    achievement = (await create_definition(client, "First"))["id"]
    await upsert(client, 1, achievement, {"current": 3})
    await upsert(client, 1, achievement, {"current": 4})
    assert await all_events(client) == []
    row = await unlock(client, 1, achievement)
    assert await all_events(client) == [event_of(row, 1)]
    # An upsert of an unlocked row keeps it unlocked and adds nothing.
    await upsert(client, 1, achievement, {"current": 5})
    assert await all_events(client) == [event_of(row, 1)]


async def test_apply_with_unlock_when_appends_an_event_once(client: Any) -> None:
    achievement = (await create_definition(client, "Counter"))["id"]
    body = {
        "userId": 2,
        "achievementId": achievement,
        "ops": [{"op": "inc", "path": "current", "value": 1}],
        "unlockWhen": [{"path": "current", "gte": 2}],
    }
    first = await apply(client, body)
    assert first["newlyUnlocked"] is False
    assert await all_events(client) == []
    second = await apply(client, body)
    assert second["newlyUnlocked"] is True
    assert await all_events(client) == [event_of(second, 1)]
    third = await apply(client, body)
    assert third["newlyUnlocked"] is False
    assert third["unlockedAt"] == second["unlockedAt"]
    assert await all_events(client) == [event_of(second, 1)]


async def test_batch_unlocks_append_events_in_item_order(client: Any) -> None:
    first = (await create_definition(client, "First"))["id"]
    second = (await create_definition(client, "Second"))["id"]
    earlier = await unlock(client, 1, first)
    results = await batch(
        client,
        [
            {"type": "unlock", "userId": 2, "achievementId": first},
            {"type": "unlock", "userId": 2, "achievementId": first},
            {"type": "upsert", "userId": 4, "achievementId": first},
            {
                "type": "apply",
                "userId": 3,
                "achievementId": second,
                "ops": [{"op": "set", "path": "done", "value": True}],
                "unlockWhen": [{"path": "done", "eq": True}],
            },
            {"type": "unlock", "userId": 1, "achievementId": first},
        ],
    )
    assert [r.get("newlyUnlocked") for r in results] == [True, False, None, True, False]
    assert await all_events(client) == [
        event_of(earlier, 1),
        event_of(results[0], 2),
        event_of(results[3], 3),
    ]


async def test_failed_batch_appends_no_event(client: Any) -> None:
    achievement = (await create_definition(client, "First"))["id"]
    response = await client.post(
        f"{PROGRESS}/batch",
        json={
            "operations": [
                {"type": "unlock", "userId": 1, "achievementId": achievement},
                {"type": "unlock", "userId": 2, "achievementId": achievement + 100},
            ]
        },
    )
    assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    assert await all_events(client) == []
    row = await unlock(client, 1, achievement)
    # The refused batch used up no id: the next event is still 1.
    assert await all_events(client) == [event_of(row, 1)]


async def test_event_ids_start_at_one_and_grow_by_one(client: Any, sql: Any) -> None:
    achievements = [(await create_definition(client, f"A{i}"))["id"] for i in range(3)]
    rows = []
    for user in (5, 3, 9):
        for achievement in achievements:
            rows.append(await unlock(client, user, achievement))
            await unlock(client, user, achievement)  # a repeat: no event
    events = await all_events(client)
    assert events == [event_of(row, i) for i, row in enumerate(rows, start=1)]
    assert sql("SELECT count(*) FROM user_achievements WHERE unlocked_at IS NOT NULL") == [(9,)]


# --- reading by cursor --------------------------------------------------------------------------


async def test_cursor_limit_and_after(client: Any) -> None:
    achievement = (await create_definition(client, "Many"))["id"]
    rows = await batch(
        client,
        [
            {"type": "unlock", "userId": user, "achievementId": achievement}
            for user in range(1, 106)
        ],
    )
    expected = [event_of(row, i) for i, row in enumerate(rows, start=1)]

    default = await client.get(EVENTS)
    assert default.status_code == 200, default.text
    assert default.json() == expected[:100]
    rest = await client.get(EVENTS, params={"after": 100})
    assert rest.json() == expected[100:]
    assert (await client.get(EVENTS, params={"after": 105})).json() == []
    assert (await client.get(EVENTS, params={"after": 5000})).json() == []
    assert (await client.get(EVENTS, params={"limit": 1000})).json() == expected
    assert (await client.get(EVENTS, params={"limit": 1})).json() == expected[:1]
    assert (await client.get(EVENTS, params={"after": 3, "limit": 2})).json() == expected[3:5]
    assert (await client.get(EVENTS, params={"after": 0, "limit": 7})).json() == expected[:7]
    assert await all_events(client, page=7) == expected


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1.5"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"after": -1}, "after"),
        ({"after": "x"}, "after"),
        ({"after": "1e3"}, "after"),
        ({"after": ""}, "after"),
    ],
)
async def test_bad_cursor_parameters_are_422(
    client: Any, params: dict[str, Any], field: str
) -> None:
    response = await client.get(EVENTS, params=params)
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]


async def test_events_survive_user_and_achievement_deletion(client: Any, sql: Any) -> None:
    first = (await create_definition(client, "First"))["id"]
    second = (await create_definition(client, "Second"))["id"]
    for user in (1, 2):
        for achievement in (first, second):
            await unlock(client, user, achievement)
    before = await all_events(client)
    assert len(before) == 4

    assert (await client.delete(f"/users/{1}")).status_code == 200
    assert await all_events(client) == before
    deleted = await client.delete(f"/users/achievements/definitions/{second}")
    assert deleted.status_code == 200
    assert await all_events(client) == before
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]

    # Unlocking again after the user's deletion is a new unlock: a new event, id 5.
    row = await unlock(client, 1, first)
    assert await all_events(client) == [*before, event_of(row, 5)]


# --- concurrency against the real server --------------------------------------------------------


async def test_concurrent_unlocks_give_a_gap_free_feed(server: RealServer, sql: Any) -> None:
    users = [USER_BASE + i for i in range(20)]
    rng = random.Random(20261124)
    clients = [httpx.AsyncClient(base_url=server.base_url, timeout=30) for _ in range(10)]
    try:
        achievements = []
        for i in range(5):
            response = await clients[0].post(
                "/users/achievements/definitions", json={"name": f"A{i}"}
            )
            assert response.status_code == 201, response.text
            achievements.append(response.json()["id"])
        pairs = [(user, achievement) for user in users for achievement in achievements]
        rng.shuffle(pairs)
        distinct = pairs[:80]
        requests = distinct + [rng.choice(distinct) for _ in range(20)]
        rng.shuffle(requests)

        async def one(index: int, pair: tuple[int, int]) -> dict[str, Any]:
            response = await clients[index % len(clients)].put(
                f"{PROGRESS}/unlock", json={"userId": pair[0], "achievementId": pair[1]}
            )
            assert response.status_code == 200, response.text
            result: dict[str, Any] = response.json()
            return result

        answers = await asyncio.gather(*(one(i, pair) for i, pair in enumerate(requests)))
        newly = [(a["userId"], a["achievementId"]) for a in answers if a["newlyUnlocked"]]
        assert sorted(newly) == sorted(distinct)

        events = await all_events(clients[1], page=7)
    finally:
        for client in clients:
            await client.aclose()

    assert [event["id"] for event in events] == list(range(1, len(distinct) + 1))
    assert all(event["type"] == "achievement.unlocked" for event in events)
    assert all(set(event) == EVENT_FIELDS for event in events)
    assert sorted((e["userId"], e["achievementId"]) for e in events) == sorted(distinct)
    stored = {
        (user, achievement): unlocked_at
        for user, achievement, unlocked_at in sql(
            "SELECT user_id, achievement_id, unlocked_at FROM user_achievements"
        )
    }
    assert {(e["userId"], e["achievementId"]): e["unlockedAt"] for e in events} == stored


# --- Server-Sent Events against the real server -------------------------------------------------


class Frames:
    """Reads SSE frames from a streaming response: comments skipped, fields checked."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines: AsyncIterator[str] = response.aiter_lines()

    async def _next(self) -> dict[str, Any]:
        fields: list[tuple[str, str]] = []
        while True:
            line = await anext(self.lines)
            if line == "":
                if fields:
                    break
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields.append((name, value.removeprefix(" ")))
        assert [name for name, _ in fields] == ["id", "data"], fields
        event_id = int(fields[0][1])
        data: dict[str, Any] = json.loads(fields[1][1])
        assert data["id"] == event_id
        return data

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._next(), FRAME_SECONDS)

    async def take(self, count: int) -> list[dict[str, Any]]:
        return [await self.next() for _ in range(count)]


def real_client(server: RealServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=server.base_url, timeout=httpx.Timeout(10.0, read=FRAME_SECONDS * 3)
    )


async def unlock_real(client: httpx.AsyncClient, user: int, achievement: int) -> dict[str, Any]:
    response = await client.put(
        f"{PROGRESS}/unlock", json={"userId": user, "achievementId": achievement}
    )
    assert response.status_code == 200, response.text
    assert response.json()["newlyUnlocked"] is True
    result: dict[str, Any] = response.json()
    return result


async def test_stream_delivers_live_events_and_resumes(server: RealServer) -> None:
    async with real_client(server) as client:
        created = await client.post("/users/achievements/definitions", json={"name": "A"})
        assert created.status_code == 201, created.text
        achievement_id = created.json()["id"]
        before = [await unlock_real(client, user, achievement_id) for user in (1, 2)]

        async with client.stream("GET", STREAM) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            frames = Frames(response)
            # What was there before connecting comes first (the stream starts after 0)...
            assert await frames.take(2) == [event_of(row, i) for i, row in enumerate(before, 1)]
            # ...then an unlock made while connected arrives live.
            live = await unlock_real(client, 3, achievement_id)
            assert await frames.next() == event_of(live, 3)
            live = await unlock_real(client, 4, achievement_id)
            assert await frames.next() == event_of(live, 4)

        # Disconnected: three unlocks are missed, then a reconnect resumes after the last id.
        missed = [await unlock_real(client, user, achievement_id) for user in (5, 6, 7)]
        async with client.stream("GET", STREAM, headers={"Last-Event-ID": "4"}) as response:
            assert response.status_code == 200
            frames = Frames(response)
            assert await frames.take(3) == [event_of(row, i) for i, row in enumerate(missed, 5)]
            # Nothing else was waiting: the next frame is the next unlock.
            live = await unlock_real(client, 8, achievement_id)
            assert await frames.next() == event_of(live, 8)

        async with client.stream("GET", STREAM, params={"after": 6}) as response:
            assert response.status_code == 200
            frames = Frames(response)
            assert await frames.take(2) == [event_of(missed[2], 7), event_of(live, 8)]
            newest = await unlock_real(client, 9, achievement_id)
            assert await frames.next() == event_of(newest, 9)

        # A cursor at the end waits for the next one only.
        async with client.stream("GET", STREAM, params={"after": 9}) as response:
            frames = Frames(response)
            newest = await unlock_real(client, 10, achievement_id)
            assert await frames.next() == event_of(newest, 10)


async def test_stream_ends_cleanly_on_sigterm(server: RealServer) -> None:
    async with real_client(server) as client:
        created = await client.post("/users/achievements/definitions", json={"name": "A"})
        assert created.status_code == 201, created.text
        achievement_id = created.json()["id"]
        first = await unlock_real(client, 1, achievement_id)

        async with client.stream("GET", STREAM) as response:
            frames = Frames(response)
            assert await frames.next() == event_of(first, 1)

            async def drain() -> list[str]:
                return [line async for line in frames.lines]

            reader = asyncio.create_task(drain())
            status = await asyncio.to_thread(server.terminate, signal.SIGTERM, 15.0)
            rest = await asyncio.wait_for(reader, 15.0)

    assert status == 0, server.log()
    # The stream ended without another event (keep-alive comments and blank lines only).
    assert all(line == "" or line.startswith(":") for line in rest), rest


# --- events name the achievement (Revision 2) ----------------------------------------------------


async def define_by_key(client: Any, key: str) -> int:
    response = await client.put(f"/users/achievements/definitions/by-key/{key}", json={"name": key})
    assert response.status_code == 201, response.text
    achievement_id: int = response.json()["id"]
    return achievement_id


async def test_events_carry_the_achievement_key(client: Any) -> None:
    keyed = await define_by_key(client, "worker-1")
    unkeyed = (await create_definition(client, "No key"))["id"]
    by_unlock = await unlock(client, 1, keyed)
    by_apply = await apply(
        client,
        {
            "userId": 2,
            "achievementKey": "worker-1",
            "ops": [{"op": "set", "path": "n", "value": 1}],
            "unlockWhen": [{"path": "n", "eq": 1}],
        },
    )
    by_batch = await batch(
        client,
        [
            {"type": "unlock", "userId": 3, "achievementKey": "worker-1"},
            {"type": "unlock", "userId": 3, "achievementId": unkeyed},
        ],
    )
    expected = [
        event_of(by_unlock, 1, "worker-1"),
        event_of(by_apply, 2, "worker-1"),
        event_of(by_batch[0], 3, "worker-1"),
        event_of(by_batch[1], 4, None),
    ]
    assert await all_events(client) == expected


async def test_event_key_is_the_definitions_current_key(client: Any) -> None:
    """The key is read with the event, so it follows the definition: a key given later shows,
    and a deleted definition's events keep their achievementId with a null key (ids are never
    reused, so no other achievement's key can appear)."""
    achievement = (await create_definition(client, "Later keyed"))["id"]
    row = await unlock(client, 1, achievement)
    assert await all_events(client) == [event_of(row, 1, None)]
    keyed = await client.put(f"/users/achievements/definitions/{achievement}", json={"key": "k-1"})
    assert keyed.status_code == 200, keyed.text
    assert await all_events(client) == [event_of(row, 1, "k-1")]
    deleted = await client.delete(f"/users/achievements/definitions/{achievement}")
    assert deleted.status_code == 200, deleted.text
    assert await all_events(client) == [event_of(row, 1, None)]


async def test_stream_events_carry_the_achievement_key(server: RealServer) -> None:
    async with real_client(server) as client:
        keyed = await client.put(
            "/users/achievements/definitions/by-key/streamed", json={"name": "Streamed"}
        )
        assert keyed.status_code == 201, keyed.text
        unkeyed = await client.post("/users/achievements/definitions", json={"name": "Plain"})
        assert unkeyed.status_code == 201, unkeyed.text
        first = await unlock_real(client, 1, keyed.json()["id"])
        async with client.stream("GET", STREAM) as response:
            frames = Frames(response)
            assert await frames.next() == event_of(first, 1, "streamed")
            live = await unlock_real(client, 1, unkeyed.json()["id"])
            assert await frames.next() == event_of(live, 2, None)
