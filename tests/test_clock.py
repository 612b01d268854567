"""The service's clock never runs backwards: after the wall clock steps back an hour,
unlockedAt, updatedAt and event timestamps still never go backwards against what was written
before (also after a restart: the clock is seeded from the file), and the leaderboard keeps
whoever reached a count first ahead."""

from __future__ import annotations

import time
from typing import Any

import pytest

from sidecar import store
from tests.helpers import PROGRESS, create_definition, unlock, upsert

HOUR_NS = 3600 * 10**9


def step_back(monkeypatch: pytest.MonkeyPatch, nanoseconds: int) -> None:
    """The wall clock, as the service reads it, set back by `nanoseconds` from now on."""

    class SteppedBack:
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def time_ns(self) -> int:
            return time.time_ns() - nanoseconds

    monkeypatch.setattr(store, "time", SteppedBack())


async def events(client: Any) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = (await client.get("/users/achievements/events")).json()
    return answer


async def test_timestamps_never_run_backwards_when_the_clock_steps_back(
    make_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_client() as client:
        first = await create_definition(client, "First")
        second = await create_definition(client, "Second")
        before = await unlock(client, 1, first["id"])
        touched = await upsert(client, 9, second["id"], {"n": 1})

        step_back(monkeypatch, HOUR_NS)
        after = await unlock(client, 2, first["id"])
        later = await upsert(client, 8, second["id"], {"n": 2})
        assert after["unlockedAt"] >= before["unlockedAt"]
        assert later["updatedAt"] >= touched["updatedAt"]
        assert later["createdAt"] >= touched["createdAt"]
        board = (await client.get("/users/achievements/leaderboard")).json()
        assert [entry["userId"] for entry in board] == [1, 2]

    # A restart with the clock still an hour back: the clock starts from what the file holds.
    monkeypatch.setattr(store, "_latest_ms", 0, raising=False)
    async with make_client() as client:
        third = await unlock(client, 3, first["id"])
        assert third["unlockedAt"] >= after["unlockedAt"]
        stamps = [event["unlockedAt"] for event in await events(client)]
        assert stamps == sorted(stamps) and len(stamps) == 3
        board = (await client.get("/users/achievements/leaderboard")).json()
        assert [entry["userId"] for entry in board] == [1, 2, 3]
        row = (await client.get(PROGRESS, params={"userId": 3, "achievementId": 1})).json()
        assert row["updatedAt"] >= after["unlockedAt"]
