"""Idempotency-Key: a retry gets the first answer back and applies nothing."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest

from tests.helpers import DEFINITIONS, PROGRESS, assert_problem, create_definition, error_fields

APPLY = f"{PROGRESS}/apply"
INC = {"userId": 1, "achievementId": 1, "ops": [{"op": "inc", "path": "n", "value": 1}]}


async def count(client: Any) -> Any:
    row = (await client.get(PROGRESS, params={"userId": 1, "achievementId": 1})).json()
    return None if row is None else row["metadata"].get("n")


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Counted"))["id"])


async def test_replay_returns_the_stored_answer_and_applies_nothing(
    client: Any, achievement: int
) -> None:
    first = await client.post(APPLY, json=INC, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    for _ in range(3):
        again = await client.post(APPLY, json=INC, headers={"Idempotency-Key": "k-1"})
        assert again.status_code == 200
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
    assert await count(client) == 1
    other = await client.post(APPLY, json=INC, headers={"Idempotency-Key": "k-2"})
    assert "idempotent-replayed" not in other.headers
    assert await count(client) == 2


async def test_same_key_for_another_request_is_refused(client: Any, achievement: int) -> None:
    await client.post(APPLY, json=INC, headers={"Idempotency-Key": "shared"})
    different = [
        ("post", APPLY, {"json": {**INC, "userId": 2}}),
        ("post", PROGRESS, {"json": {"userId": 1, "achievementId": 1}}),
        ("put", f"{PROGRESS}/unlock", {"json": {"userId": 1, "achievementId": 1}}),
        ("delete", PROGRESS, {"params": {"userId": 1, "achievementId": 1}}),
    ]
    for method, path, kwargs in different:
        response = await getattr(client, method)(
            path, headers={"Idempotency-Key": "shared"}, **kwargs
        )
        assert_problem(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert await count(client) == 1


async def test_errors_are_not_stored(client: Any) -> None:
    body = {"userId": 1, "achievementId": 1}
    missing = await client.put(f"{PROGRESS}/unlock", json=body, headers={"Idempotency-Key": "e"})
    assert_problem(missing, 404, "ACHIEVEMENT_NOT_FOUND")
    await create_definition(client, "Now it exists")
    retry = await client.put(f"{PROGRESS}/unlock", json=body, headers={"Idempotency-Key": "e"})
    assert retry.status_code == 200 and retry.json()["newlyUnlocked"] is True
    assert "idempotent-replayed" not in retry.headers


@pytest.mark.parametrize("key", ["", "x" * 256, "clé", "tab\there", "new\x7fline"])
async def test_bad_keys_are_422(client: Any, achievement: int, key: str) -> None:
    response = await client.post(
        APPLY, json=INC, headers=[("Idempotency-Key", key.encode("utf-8"))]
    )
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["Idempotency-Key"]
    assert await count(client) is None


async def test_longest_and_oddest_valid_keys(client: Any, achievement: int) -> None:
    for key in ("k" * 255, "a b~!@#$%^&*()"):
        response = await client.post(APPLY, json=INC, headers={"Idempotency-Key": key})
        assert response.status_code == 200
    assert await count(client) == 2


async def test_every_write_route_takes_a_key(client: Any, sql: Any) -> None:
    async def twice(method: str, path: str, key: str, **kwargs: Any) -> Any:
        first = await getattr(client, method)(path, headers={"Idempotency-Key": key}, **kwargs)
        second = await getattr(client, method)(path, headers={"Idempotency-Key": key}, **kwargs)
        assert (second.status_code, second.content) == (first.status_code, first.content)
        assert second.headers["idempotent-replayed"] == "true"
        return first

    created = await twice("post", DEFINITIONS, "c", json={"name": "Once"})
    assert created.status_code == 201
    assert sql("SELECT count(*) FROM achievements") == [(1,)]
    await twice("put", f"{DEFINITIONS}/1", "u", json={"name": "Renamed"})
    keyed = await twice("put", f"{DEFINITIONS}/by-key/k", "bk", json={"name": "Keyed"})
    assert keyed.status_code == 201
    await twice(
        "post",
        f"{PROGRESS}/batch",
        "b",
        json={"operations": [{"type": "apply", **INC}]},
    )
    assert await count(client) == 1
    await twice("delete", PROGRESS, "d", params={"userId": 1, "achievementId": 1})
    await client.post(PROGRESS, json={"userId": 5, "achievementId": 1})
    deleted = await twice("delete", "/users/5", "du")
    assert deleted.json() == {"userId": 5, "deletedProgress": 1}
    await twice("delete", f"{DEFINITIONS}/by-key/k", "dk")
    await twice("delete", f"{DEFINITIONS}/1", "dd")
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_concurrent_repeats_count_once(client: Any, achievement: int) -> None:
    answers = await asyncio.gather(
        *(client.post(APPLY, json=INC, headers={"Idempotency-Key": "race"}) for _ in range(5))
    )
    assert all(answer.status_code == 200 for answer in answers)
    assert sum("idempotent-replayed" not in answer.headers for answer in answers) == 1
    assert len({answer.content for answer in answers}) == 1
    assert await count(client) == 1


async def test_replay_survives_a_restart(make_client: Any) -> None:
    async with make_client() as client:
        await create_definition(client, "Counted")
        first = await client.post(APPLY, json=INC, headers={"Idempotency-Key": "persist"})
    async with make_client() as client:
        again = await client.post(APPLY, json=INC, headers={"Idempotency-Key": "persist"})
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        assert await count(client) == 1


async def test_get_ignores_the_header(client: Any, achievement: int) -> None:
    response = await client.get(DEFINITIONS, headers={"Idempotency-Key": ""})
    assert response.status_code == 200


async def test_keys_older_than_a_day_are_purged(make_client: Any, db_path: Any, sql: Any) -> None:
    async with make_client() as client:
        await create_definition(client, "Counted")
        await client.post(APPLY, json=INC, headers={"Idempotency-Key": "fresh"})
    with sqlite3.connect(db_path) as connection:
        connection.executemany(
            "INSERT INTO idempotency_keys (key, fingerprint, status, body, created_at) "
            "VALUES (?, x'00', 200, x'7b7d', ?)",
            [(f"old-{i}", "2020-01-01T00:00:00.000Z") for i in range(1200)],
        )
    async with make_client() as client:  # the purge runs at start, in bites, beside requests
        for _ in range(100):
            if sql("SELECT count(*) FROM idempotency_keys") == [(1,)]:
                break
            assert (await client.get("/health")).status_code == 200
            await asyncio.sleep(0.02)
        assert sql("SELECT key FROM idempotency_keys") == [("fresh",)]
