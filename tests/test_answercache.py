"""The kept list answers: served while the database is unchanged, dropped at any change, bounded;
and through HTTP, a list never lags a write, whoever made it."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.answercache import AnswerCache
from tests.helpers import DEFINITIONS, PROGRESS
from tests.realserver import RealServer


class Computed:
    """compute() for the cache, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        return f"answer {self.calls}".encode()


async def test_an_answer_is_kept_while_the_version_stays() -> None:
    cache, compute = AnswerCache(), Computed()
    assert await cache.answer(1, "u1", compute) == b"answer 1"
    assert await cache.answer(1, "u1", compute) == b"answer 1"
    assert compute.calls == 1
    assert await cache.answer(1, "u2", compute) == b"answer 2"  # another key is its own answer


async def test_a_new_version_drops_every_answer() -> None:
    cache, compute = AnswerCache(), Computed()
    await cache.answer(1, "u1", compute)
    await cache.answer(1, "u2", compute)
    assert await cache.answer(2, "u1", compute) == b"answer 3"
    assert await cache.answer(2, "u2", compute) == b"answer 4"
    # Back at a version seen before (data_version values are not ordered): still recomputed.
    assert await cache.answer(1, "u1", compute) == b"answer 5"


async def test_the_least_recently_used_answer_goes_first() -> None:
    cache, compute = AnswerCache(entries=2), Computed()
    await cache.answer(1, "a", compute)
    await cache.answer(1, "b", compute)
    await cache.answer(1, "a", compute)  # a is now the most recent
    await cache.answer(1, "c", compute)  # drops b
    assert compute.calls == 3
    await cache.answer(1, "a", compute)
    assert compute.calls == 3
    await cache.answer(1, "b", compute)
    assert compute.calls == 4


async def test_an_answer_over_the_size_limit_is_not_kept() -> None:
    cache, compute = AnswerCache(largest_bytes=len(b"answer 1") - 1), Computed()
    await cache.answer(1, "u1", compute)
    await cache.answer(1, "u1", compute)
    assert compute.calls == 2


async def test_a_failing_compute_keeps_nothing() -> None:
    cache = AnswerCache()

    async def fails() -> bytes:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError):
        await cache.answer(1, "u1", fails)
    assert await cache.answer(1, "u1", Computed()) == b"answer 1"


def listed(client: httpx.Client, user: int) -> list[dict[str, Any]]:
    answer = client.get(f"{PROGRESS}/list", params={"userId": user})
    assert answer.status_code == 200
    result: list[dict[str, Any]] = answer.json()
    return result


def test_a_list_follows_every_write_through_http_and_from_another_process(
    server: RealServer, db_path: Path
) -> None:
    user = 7
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        created = client.post(DEFINITIONS, json={"name": "Worker I"})
        achievement = created.json()["id"]
        assert listed(client, user) == []
        assert listed(client, user) == []  # kept now

        row = {"userId": user, "achievementId": achievement, "metadata": {"current": 1}}
        assert client.post(PROGRESS, json=row).status_code == 200
        assert [r["metadata"] for r in listed(client, user)] == [{"current": 1}]
        assert listed(client, user) == listed(client, user)

        # Another process writes the file (a script, say): the next list sees it.
        with closing(sqlite3.connect(db_path)) as other, other:
            other.execute(
                "UPDATE user_achievements SET metadata = '{\"current\":2}' WHERE user_id = ?",
                (user,),
            )
        assert [r["metadata"] for r in listed(client, user)] == [{"current": 2}]

        # A cascade: the definition's deletion empties the list.
        assert client.delete(f"{DEFINITIONS}/{achievement}").status_code == 200
        assert listed(client, user) == []


def test_under_concurrent_writes_a_list_never_misses_an_acknowledged_write(
    server: RealServer,
) -> None:
    """Writers on one user, each on its own achievement: after each acknowledged upsert, a list
    asked for right then must show that write or a later one of the same writer, never older."""
    user, writers, rounds = 8, 6, 25

    async def run() -> list[str]:
        stale: list[str] = []
        async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
            created = [
                await client.post(DEFINITIONS, json={"name": f"W{n}"}) for n in range(writers)
            ]
            achievements = [answer.json()["id"] for answer in created]

            async def writer(achievement: int) -> None:
                for count in range(1, rounds + 1):
                    row = {"userId": user, "achievementId": achievement, "metadata": {"n": count}}
                    assert (await client.post(PROGRESS, json=row)).status_code == 200
                    answer = await client.get(f"{PROGRESS}/list", params={"userId": user})
                    seen = {r["achievementId"]: r["metadata"]["n"] for r in answer.json()}
                    if seen.get(achievement, 0) < count:
                        stale.append(
                            f"{achievement}: wrote {count}, listed {seen.get(achievement)}"
                        )

            await asyncio.gather(*(writer(achievement) for achievement in achievements))
        return stale

    assert asyncio.run(run()) == []
