"""Idempotency-Key: a retry gets the first answer back and applies nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import DEFINITIONS, PROGRESS, assert_problem, create_definition, error_fields

pytestmark = pytest.mark.both_backends

APPLY = f"{PROGRESS}/apply"
BATCH = f"{PROGRESS}/batch"
REPLAYED = "idempotent-replayed"
INC = {"userId": 1, "achievementId": 1, "ops": [{"op": "inc", "path": "n", "value": 1}]}


def key(value: str | bytes) -> list[tuple[str, bytes]]:
    """The header as raw bytes, so that any byte reaches the service as sent."""
    return [("Idempotency-Key", value if isinstance(value, bytes) else value.encode())]


def state(sql: Any) -> tuple[list[tuple[Any, ...]], ...]:
    """Everything a write can change, apart from the stored answers themselves."""
    return tuple(
        sql(f"SELECT * FROM {table} ORDER BY 1")
        for table in ("achievements", "users", "user_achievements", "events")
    )


async def count(client: Any, user: int = 1) -> Any:
    row = (await client.get(PROGRESS, params={"userId": user, "achievementId": 1})).json()
    return None if row is None else row["metadata"].get("n")


@pytest.fixture
async def achievement(client: Any) -> int:
    created = await create_definition(client, "Counted")
    assert created["id"] == 1
    return 1


async def test_replay_returns_the_stored_answer_and_applies_nothing(
    client: Any, sql: Any, achievement: int
) -> None:
    first = await client.post(APPLY, json=INC, headers=key("msg-1"))
    assert first.status_code == 200, first.text
    assert REPLAYED not in first.headers
    assert first.json()["metadata"] == {"n": 1}
    before = state(sql)
    for _ in range(3):
        again = await client.post(APPLY, json=INC, headers=key("msg-1"))
        assert again.status_code == 200
        assert again.headers[REPLAYED] == "true"
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"]
    assert state(sql) == before
    assert await count(client) == 1
    # The replay is the stored answer, not the row as it is now.
    other = await client.post(APPLY, json=INC, headers=key("msg-2"))
    assert REPLAYED not in other.headers and other.json()["metadata"] == {"n": 2}
    late = await client.post(APPLY, json=INC, headers=key("msg-1"))
    assert late.headers[REPLAYED] == "true" and late.content == first.content
    assert await count(client) == 2
    without = await client.post(APPLY, json=INC)
    assert REPLAYED not in without.headers and without.json()["metadata"] == {"n": 3}


async def test_replay_of_a_201(client: Any, sql: Any) -> None:
    first = await client.post(DEFINITIONS, json={"name": "Once"}, headers=key("create"))
    again = await client.post(DEFINITIONS, json={"name": "Once"}, headers=key("create"))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.content == first.content and again.headers[REPLAYED] == "true"
    assert REPLAYED not in first.headers
    assert sql("SELECT count(*) FROM achievements") == [(1,)]


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("post", APPLY, {"json": {**INC, "userId": 2}}),
        ("post", APPLY, {"json": {**INC, "ops": [{"op": "inc", "path": "n", "value": 2}]}}),
        # The same JSON value in other bytes is another request.
        ("post", APPLY, {"content": json.dumps(INC, indent=1).encode()}),
        ("post", PROGRESS, {"json": {"userId": 1, "achievementId": 1}}),
        ("put", f"{PROGRESS}/unlock", {"json": {"userId": 1, "achievementId": 1}}),
        ("post", BATCH, {"json": {"operations": [{"type": "apply", **INC}]}}),
        ("delete", PROGRESS, {"params": {"userId": 1, "achievementId": 1}}),
        ("delete", "/users/1", {}),
        ("post", DEFINITIONS, {"json": {"name": "Other"}}),
        ("put", f"{DEFINITIONS}/1", {"json": {"name": "Other"}}),
        ("post", f"{APPLY}?x=1", {"json": INC}),
    ],
    ids=[
        "other userId",
        "other value",
        "other bytes",
        "upsert",
        "unlock",
        "batch",
        "delete progress",
        "delete user",
        "create definition",
        "update definition",
        "other query",
    ],
)
async def test_same_key_for_another_request_is_refused(
    client: Any, sql: Any, achievement: int, method: str, path: str, kwargs: dict[str, Any]
) -> None:
    first = await client.post(APPLY, json=INC, headers=key("shared"))
    assert first.status_code == 200
    before = state(sql)
    headers = [*key("shared"), ("Content-Type", "application/json")]
    response = await client.request(method.upper(), path, headers=headers, **kwargs)
    assert_problem(response, 422, "IDEMPOTENCY_KEY_REUSED")
    assert REPLAYED not in response.headers
    assert state(sql) == before
    # The key still replays its own request.
    again = await client.post(APPLY, json=INC, headers=key("shared"))
    assert again.headers[REPLAYED] == "true" and again.content == first.content


async def test_same_key_on_another_query(client: Any, sql: Any, achievement: int) -> None:
    for user in (1, 2):
        await client.post(PROGRESS, json={"userId": user, "achievementId": 1})
    first = await client.delete(
        PROGRESS, params={"userId": 1, "achievementId": 1}, headers=key("q")
    )
    assert first.status_code == 200
    other = await client.delete(
        PROGRESS, params={"userId": 2, "achievementId": 1}, headers=key("q")
    )
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
    assert sql("SELECT user_id FROM user_achievements") == [(2,)]


async def test_a_404_is_not_stored(client: Any, sql: Any) -> None:
    body = {"userId": 1, "achievementKey": "worker-1", "ops": INC["ops"]}
    missing = await client.post(APPLY, json=body, headers=key("e-404"))
    assert_problem(missing, 404, "ACHIEVEMENT_NOT_FOUND")
    assert REPLAYED not in missing.headers
    created = await client.put(f"{DEFINITIONS}/by-key/worker-1", json={"name": "Worker I"})
    assert created.status_code == 201
    retry = await client.post(APPLY, json=body, headers=key("e-404"))
    assert retry.status_code == 200, retry.text
    assert REPLAYED not in retry.headers
    assert retry.json()["newlyUnlocked"] is False and retry.json()["metadata"] == {"n": 1}
    replay = await client.post(APPLY, json=body, headers=key("e-404"))
    assert replay.headers[REPLAYED] == "true" and replay.content == retry.content
    rows = sql("SELECT metadata FROM user_achievements")
    assert [json.loads(metadata) for (metadata,) in rows] == [{"n": 1}]


async def test_a_repeat_gets_its_first_answer_whatever_the_write_meets_now(
    client: Any, sql: Any, achievement: int
) -> None:
    """The write runs before its key is looked at: a repeat whose write would fail now (the
    stored value is no longer a number, the definition is gone) still gets its first answer."""
    first = await client.post(APPLY, json=INC, headers=key("then"))
    assert first.status_code == 200
    await client.post(PROGRESS, json={"userId": 1, "achievementId": 1, "metadata": {"n": "x"}})
    assert_problem(await client.post(APPLY, json=INC), 422, "NOT_A_NUMBER")
    again = await client.post(APPLY, json=INC, headers=key("then"))
    assert again.headers[REPLAYED] == "true" and again.content == first.content
    assert (await client.delete(f"{DEFINITIONS}/{achievement}")).status_code == 200
    before = state(sql)
    again = await client.post(APPLY, json=INC, headers=key("then"))
    assert again.headers[REPLAYED] == "true" and again.content == first.content
    reused = await client.post(APPLY, json={**INC, "userId": 2}, headers=key("then"))
    assert_problem(reused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert_problem(
        await client.post(APPLY, json=INC, headers=key("now")), 404, "ACHIEVEMENT_NOT_FOUND"
    )
    assert state(sql) == before


@pytest.mark.sqlite_only  # counts the statements of SQLite's writer connection
async def test_a_new_key_costs_one_statement_beside_the_write(
    client: Any, achievement: int
) -> None:
    """Storing the answer is the one statement a new key adds (the insert finds a key taken);
    the key is read only when it is taken: a replay reads it, and runs the write undone."""
    statements: list[str] = []

    def trace(callback: Any) -> None:  # on the writer's thread, run from the app's own loop
        writer = client.app.state.service.writer
        client.blocking_portal.call(writer.run, lambda c: c.set_trace_callback(callback))

    trace(statements.append)

    async def counted(*headers: tuple[str, bytes]) -> list[str]:
        statements.clear()
        assert (await client.post(APPLY, json=INC, headers=list(headers))).status_code == 200
        # A statement's triggers and subqueries are traced again with its text: counted once.
        return [sql for n, sql in enumerate(statements) if n == 0 or sql != statements[n - 1]]

    await counted()  # the row is there: each write below updates it the same way
    plain = await counted()
    keyed = await counted(*key("new"))
    assert len(keyed) == len(plain) + 1
    assert keyed[-3].startswith("INSERT INTO idempotency_keys")  # before RELEASE, COMMIT
    replayed = await counted(*key("new"))
    assert sum("FROM idempotency_keys WHERE key" in sql for sql in replayed) == 1
    assert "ROLLBACK TO job" in replayed  # the write it ran, undone
    trace(None)


async def test_a_422_is_not_stored(client: Any, achievement: int) -> None:
    await client.post(PROGRESS, json={"userId": 1, "achievementId": 1, "metadata": {"n": "x"}})
    refused = await client.post(APPLY, json=INC, headers=key("e-422"))
    assert_problem(refused, 422, "NOT_A_NUMBER")
    await client.post(PROGRESS, json={"userId": 1, "achievementId": 1, "metadata": {"n": 5}})
    retry = await client.post(APPLY, json=INC, headers=key("e-422"))
    assert retry.status_code == 200 and REPLAYED not in retry.headers
    assert await count(client) == 6
    # A key used only by a refused request is free for another request.
    invalid = await client.post(APPLY, json={**INC, "userId": "01"}, headers=key("e-bad"))
    assert_problem(invalid, 422, "VALIDATION_FAILED")
    fresh = await client.post(APPLY, json=INC, headers=key("e-bad"))
    assert fresh.status_code == 200 and REPLAYED not in fresh.headers
    assert await count(client) == 7


@pytest.mark.parametrize(
    "bad",
    [b"", b"x" * 256, "clé".encode(), "🏆".encode(), b"tab\there", b"del\x7f", b"nul\x01"],
    ids=["empty", "256 chars", "non-ASCII", "emoji", "tab", "DEL", "control"],
)
async def test_bad_keys_are_422(client: Any, sql: Any, achievement: int, bad: bytes) -> None:
    before = state(sql)
    response = await client.post(APPLY, json=INC, headers=key(bad))
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["Idempotency-Key"]
    assert state(sql) == before
    deleted = await client.delete(f"{DEFINITIONS}/1", headers=key(bad))
    assert_problem(deleted, 422, "VALIDATION_FAILED")
    assert error_fields(deleted) == ["Idempotency-Key"]
    assert state(sql) == before


async def test_edge_keys_are_accepted(client: Any, achievement: int) -> None:
    printable = "".join(chr(c) for c in range(0x21, 0x7F))
    keys = ["k", "k" * 255, f"a{printable} b", "~", "0"]
    for one in keys:
        response = await client.post(APPLY, json=INC, headers=key(one))
        assert response.status_code == 200, (one, response.text)
        assert REPLAYED not in response.headers
    assert await count(client) == len(keys)
    for one in keys:
        again = await client.post(APPLY, json=INC, headers=key(one))
        assert again.headers[REPLAYED] == "true", one
    assert await count(client) == len(keys)


async def test_every_write_route_takes_a_key(client: Any, sql: Any) -> None:
    async def twice(method: str, path: str, name: str, status: int = 200, **kwargs: Any) -> Any:
        first = await client.request(method, path, headers=key(name), **kwargs)
        assert first.status_code == status, first.text
        assert REPLAYED not in first.headers
        before = state(sql)
        second = await client.request(method, path, headers=key(name), **kwargs)
        assert (second.status_code, second.content) == (first.status_code, first.content)
        assert second.headers[REPLAYED] == "true"
        assert state(sql) == before
        return first.json()

    created = await twice("POST", DEFINITIONS, "create", 201, json={"name": "Once"})
    assert sql("SELECT count(*) FROM achievements") == [(1,)]
    renamed = await twice("PUT", f"{DEFINITIONS}/1", "rename", json={"name": "Renamed"})
    assert renamed["updatedAt"] > created["updatedAt"]
    stored = sql("SELECT name, updated_at FROM achievements WHERE id = 1")
    assert stored == [("Renamed", renamed["updatedAt"])]
    await twice("PUT", f"{DEFINITIONS}/by-key/k", "by-key", 201, json={"name": "Keyed"})
    await twice("POST", PROGRESS, "upsert", json={"userId": 5, "achievementId": 1})
    unlocked = await twice(
        "PUT", f"{PROGRESS}/unlock", "unlock", json={"userId": 5, "achievementId": 1}
    )
    assert unlocked["newlyUnlocked"] is True  # the replay says true again: the stored answer
    assert sql("SELECT count(*) FROM events") == [(1,)]
    batch = {"operations": [{"type": "apply", **INC}, {"type": "apply", **INC}]}
    await twice("POST", BATCH, "batch", json=batch)
    assert await count(client) == 2
    deleted = await twice("DELETE", PROGRESS, "del-p", params={"userId": 1, "achievementId": 1})
    assert deleted["metadata"] == {"n": 2}
    gone = await twice("DELETE", "/users/5", "del-u")
    assert gone == {"userId": 5, "deletedProgress": 1}
    assert sql("SELECT count(*) FROM users WHERE id = 5") == [(0,)]
    await twice("DELETE", f"{DEFINITIONS}/by-key/k", "del-k")
    await twice("DELETE", f"{DEFINITIONS}/1", "del-d")
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_get_ignores_the_header(client: Any, achievement: int) -> None:
    for value in (b"", b"x" * 300, b"same"):
        response = await client.get(DEFINITIONS, headers=key(value))
        assert response.status_code == 200 and REPLAYED not in response.headers
    again = await client.get(DEFINITIONS, headers=key("same"))
    assert again.status_code == 200 and REPLAYED not in again.headers
    # A GET does not take the key: a write may still use it.
    write = await client.post(APPLY, json=INC, headers=key("same"))
    assert write.status_code == 200 and REPLAYED not in write.headers


async def test_concurrent_repeats_count_once(client: Any, sql: Any, achievement: int) -> None:
    answers = await asyncio.gather(
        *(client.post(APPLY, json=INC, headers=key("race")) for _ in range(5))
    )
    assert [answer.status_code for answer in answers] == [200] * 5
    assert sum(REPLAYED not in answer.headers for answer in answers) == 1
    assert sum(answer.headers.get(REPLAYED) == "true" for answer in answers) == 4
    assert len({answer.content for answer in answers}) == 1
    assert await count(client) == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]


async def test_replay_survives_a_restart(make_client: Any, sql: Any) -> None:
    async with make_client() as client:
        await create_definition(client, "Counted")
        first = await client.post(APPLY, json=INC, headers=key("persist"))
        assert first.status_code == 200
    async with make_client() as client:
        again = await client.post(APPLY, json=INC, headers=key("persist"))
        assert again.status_code == 200
        assert again.headers[REPLAYED] == "true"
        assert again.content == first.content
        reused = await client.post(APPLY, json={**INC, "userId": 2}, headers=key("persist"))
        assert_problem(reused, 422, "IDEMPOTENCY_KEY_REUSED")
        assert await count(client) == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(1,)]


@pytest.mark.sqlite_only  # writes into the file; ordered by rowid
async def test_keys_older_than_a_day_are_purged(make_client: Any, db_path: Path, sql: Any) -> None:
    """The README's choice: keys are kept 24 hours, then purged in the background."""
    async with make_client() as client:
        await create_definition(client, "Counted")
        await client.post(APPLY, json=INC, headers=key("fresh"))
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
        again = await client.post(APPLY, json=INC, headers=key("fresh"))
        assert again.headers[REPLAYED] == "true"


async def test_keys_are_kept_for_the_configured_ttl(make_client: Any) -> None:
    async with make_client(idempotency_ttl_seconds=2) as client:
        await create_definition(client, "Counted")
        first = await client.post(APPLY, json=INC, headers=key("short-lived"))
        again = await client.post(APPLY, json=INC, headers=key("short-lived"))
        assert again.headers[REPLAYED] == "true" and await count(client) == 1
        await asyncio.sleep(2.2)
        # Past its TTL the key is a new key, purged or not: the write applies again.
        late = await client.post(APPLY, json=INC, headers=key("short-lived"))
        assert late.status_code == 200 and REPLAYED not in late.headers
        assert late.json()["metadata"] == {"n": 2} and first.json()["metadata"] == {"n": 1}
        assert await count(client) == 2


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.sqlite_only  # ordered by rowid
async def test_past_the_budget_the_oldest_keys_go_first(make_client: Any, sql: Any) -> None:
    budget = 16 * 1024
    async with make_client(idempotency_budget_bytes=budget) as client:
        await create_definition(client, "Counted")
        for n in range(200):
            response = await client.post(APPLY, json=INC, headers=key(f"key-{n:03d}"))
            assert response.status_code == 200
            # Stored answers stay within the budget, up to the one just stored.
            stored = sql(
                "SELECT sum(2 * length(key) + length(fingerprint) + length(body) + 96) "
                "FROM idempotency_keys"
            )[0][0]
            assert stored <= budget
        kept = [
            row[0] for row in sql("SELECT key FROM idempotency_keys ORDER BY created_at, rowid")
        ]
        assert 10 < len(kept) < 200
        assert kept == [f"key-{n:03d}" for n in range(200 - len(kept), 200)]  # the newest ones
        assert (await client.post(APPLY, json=INC, headers=key("key-199"))).headers[REPLAYED]
        oldest = await client.post(APPLY, json=INC, headers=key("key-000"))
        assert REPLAYED not in oldest.headers  # purged: a new key
        keys = sql("SELECT count(*) FROM idempotency_keys")[0][0]
        text = (await client.get("/metrics")).text
        assert metric(text, "sidecar_idempotency_keys") == keys
        assert 0 < metric(text, "sidecar_idempotency_bytes") <= budget
        assert metric(text, "sidecar_idempotency_evicted_keys") == 201 - keys


async def test_large_answers_are_stored_compressed_and_replayed_byte_for_byte(
    client: Any, sql: Any, achievement: int
) -> None:
    metadata = {"log": ["the same line, again and again"] * 1800, "big": 2**70, "x": 1.50}
    body = {"userId": 1, "achievementId": 1, "metadata": metadata}
    first = await client.post(PROGRESS, json=body, headers=key("large"))
    assert first.status_code == 200 and len(first.content) > 55_000
    stored = sql("SELECT length(body) FROM idempotency_keys WHERE key = 'large'")[0][0]
    assert stored < len(first.content) // 10
    again = await client.post(PROGRESS, json=body, headers=key("large"))
    assert again.headers[REPLAYED] == "true"
    assert again.content == first.content
    # Small answers are stored as they are: JSON text.
    await client.post(APPLY, json={**INC, "userId": 2}, headers=key("small"))
    assert sql("SELECT substr(body, 1, 1) FROM idempotency_keys WHERE key = 'small'") == [(b"{",)]
