"""Achievement keys and definition metadata (API.md "Achievement keys and achievements as code"):
`key`/`metadata` on definitions, the by-key routes, and `achievementKey` wherever a body or a
query takes `achievementId`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import (
    DEFINITIONS,
    PROGRESS,
    TIMESTAMP,
    assert_problem,
    create_definition,
    error_fields,
    unlock,
    upsert,
)

pytestmark = pytest.mark.both_backends

BY_KEY = f"{DEFINITIONS}/by-key"
ACHIEVEMENT_FIELDS = {"id", "name", "description", "createdAt", "updatedAt", "key", "metadata"}
# Metadata that only comes back right if it is kept exactly: key order, big ints, nesting.
RICH_METADATA = {
    "icon": "⛏",
    "points": 10,
    "big": 2**70,
    "hidden": False,
    "nested": {"z": 1, "a": [1, 2.5, None, True, "x"]},
}

VALID_KEYS = ["a", "0", "worker-1", "work.count_100", "9lives", "a" * 64, "a-_.", "z" + "9" * 63]
INVALID_KEYS = [
    "a" * 65,
    "Worker",
    "workeR-1",
    "-worker",
    "_worker",
    ".worker",
    "",
    "work er",
    "work/er",
    "wörker",
    "worker!",
]


def exact(value: Any) -> str:
    """JSON text with key order kept: equal only when the objects match key for key, in order."""
    return json.dumps(value, separators=(",", ":"))


def stored_key(sql: Any, achievement: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = sql("SELECT key FROM achievements WHERE id = ?", achievement)
    return rows


def all_rows(sql: Any) -> dict[str, list[tuple[Any, ...]]]:
    return {
        table: sql(f"SELECT * FROM {table} ORDER BY 1")
        for table in ("users", "achievements", "user_achievements")
    }


async def put_by_key(client: Any, key: str, body: dict[str, Any], status: int) -> dict[str, Any]:
    response = await client.put(f"{BY_KEY}/{key}", json=body)
    assert response.status_code == status, response.text
    result: dict[str, Any] = response.json()
    return result


# --- key and metadata on definitions ------------------------------------------------------------


async def test_key_and_metadata_absent_come_back_null_and_empty(client: Any, sql: Any) -> None:
    created = await create_definition(client, "Plain")
    assert set(created) == ACHIEVEMENT_FIELDS
    assert created["key"] is None
    assert created["metadata"] == {}
    fetched = (await client.get(f"{DEFINITIONS}/{created['id']}")).json()
    assert fetched == created
    listed = (await client.get(DEFINITIONS)).json()
    assert listed == [created]
    assert stored_key(sql, created["id"]) == [(None,)]


async def test_key_and_metadata_are_stored_and_returned_exactly(client: Any, sql: Any) -> None:
    created = await create_definition(client, "Worker I", key="worker-1", metadata=RICH_METADATA)
    assert set(created) == ACHIEVEMENT_FIELDS
    assert created["key"] == "worker-1"
    assert exact(created["metadata"]) == exact(RICH_METADATA)
    fetched = (await client.get(f"{DEFINITIONS}/{created['id']}")).json()
    assert exact(fetched) == exact(created)
    listed = (await client.get(DEFINITIONS)).json()
    assert exact(listed) == exact([created])
    assert stored_key(sql, created["id"]) == [("worker-1",)]
    (metadata_text,) = sql("SELECT metadata FROM achievements WHERE id = ?", created["id"])[0]
    assert exact(json.loads(metadata_text)) == exact(RICH_METADATA)


@pytest.mark.parametrize("key", VALID_KEYS)
async def test_valid_keys_are_accepted(client: Any, key: str) -> None:
    created = await create_definition(client, "Keyed", key=key)
    assert created["key"] == key
    fetched = await client.get(f"{BY_KEY}/{key}")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == created


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_malformed_keys_are_refused_on_create(client: Any, sql: Any, key: str) -> None:
    response = await client.post(DEFINITIONS, json={"name": "Bad key", "key": key})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["key"]
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_malformed_keys_are_refused_on_update(client: Any, key: str) -> None:
    created = await create_definition(client, "Good key", key="good")
    response = await client.put(f"{DEFINITIONS}/{created['id']}", json={"key": key})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["key"]
    assert (await client.get(f"{DEFINITIONS}/{created['id']}")).json() == created


@pytest.mark.parametrize("metadata", [[], "x", 5, True])
async def test_definition_metadata_must_be_an_object(client: Any, metadata: Any) -> None:
    response = await client.post(DEFINITIONS, json={"name": "Bad metadata", "metadata": metadata})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["metadata"]


async def test_create_with_a_taken_key_is_a_conflict(client: Any, sql: Any) -> None:
    first = await create_definition(client, "First", key="shared")
    before = all_rows(sql)
    response = await client.post(DEFINITIONS, json={"name": "Second", "key": "shared"})
    assert_problem(response, 409, "KEY_CONFLICT")
    assert all_rows(sql) == before
    assert (await client.get(f"{BY_KEY}/shared")).json() == first


async def test_update_to_another_definitions_key_is_a_conflict(client: Any, sql: Any) -> None:
    first = await create_definition(client, "First", key="first")
    second = await create_definition(client, "Second", key="second")
    before = all_rows(sql)
    response = await client.put(f"{DEFINITIONS}/{second['id']}", json={"key": "first"})
    assert_problem(response, 409, "KEY_CONFLICT")
    assert all_rows(sql) == before
    assert (await client.get(f"{DEFINITIONS}/{first['id']}")).json() == first
    assert (await client.get(f"{DEFINITIONS}/{second['id']}")).json() == second


async def test_update_with_its_own_key_is_fine(client: Any) -> None:
    created = await create_definition(client, "Mine", key="mine")
    response = await client.put(f"{DEFINITIONS}/{created['id']}", json={"key": "mine"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["key"] == "mine"
    assert updated["updatedAt"] > created["updatedAt"]


async def test_update_sets_changes_and_clears_the_key(client: Any, sql: Any) -> None:
    created = await create_definition(client, "Changing")
    achievement = created["id"]
    response = await client.put(f"{DEFINITIONS}/{achievement}", json={"key": "one"})
    assert response.status_code == 200, response.text
    assert response.json()["key"] == "one"
    assert stored_key(sql, achievement) == [("one",)]

    response = await client.put(f"{DEFINITIONS}/{achievement}", json={"key": "two"})
    assert response.json()["key"] == "two"
    assert (await client.get(f"{BY_KEY}/two")).json()["id"] == achievement
    assert_problem(await client.get(f"{BY_KEY}/one"), 404, "ACHIEVEMENT_NOT_FOUND")

    response = await client.put(f"{DEFINITIONS}/{achievement}", json={"key": None})
    assert response.status_code == 200, response.text
    cleared = response.json()
    assert cleared["key"] is None
    assert cleared["name"] == "Changing"
    assert stored_key(sql, achievement) == [(None,)]
    assert_problem(await client.get(f"{BY_KEY}/two"), 404, "ACHIEVEMENT_NOT_FOUND")

    # A cleared key is free for another definition.
    other = await create_definition(client, "Other", key="two")
    assert other["key"] == "two"


async def test_update_leaves_key_and_metadata_alone_when_left_out(client: Any) -> None:
    created = await create_definition(client, "Kept", key="kept", metadata={"points": 5})
    response = await client.put(f"{DEFINITIONS}/{created['id']}", json={"name": "Renamed"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Renamed"
    assert updated["key"] == "kept"
    assert updated["metadata"] == {"points": 5}

    response = await client.put(f"{DEFINITIONS}/{created['id']}", json={})
    assert response.json()["key"] == "kept"
    assert response.json()["metadata"] == {"points": 5}


async def test_update_replaces_metadata(client: Any) -> None:
    created = await create_definition(client, "Meta", key="meta", metadata={"points": 5})
    response = await client.put(
        f"{DEFINITIONS}/{created['id']}", json={"metadata": {"icon": "x", "points": 7}}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert exact(updated["metadata"]) == exact({"icon": "x", "points": 7})
    assert updated["key"] == "meta"
    assert updated["name"] == "Meta"


async def test_two_definitions_without_key_coexist(client: Any) -> None:
    await create_definition(client, "No key one")
    await create_definition(client, "No key two", key=None)
    listed = (await client.get(DEFINITIONS)).json()
    assert [a["key"] for a in listed] == [None, None]


# --- by-key routes ------------------------------------------------------------------------------


async def test_put_by_key_creates_then_replaces(client: Any, sql: Any) -> None:
    created = await put_by_key(
        client,
        "worker-1",
        {"name": "Worker I", "description": "Do 100 works", "metadata": RICH_METADATA},
        201,
    )
    assert set(created) == ACHIEVEMENT_FIELDS
    assert created["key"] == "worker-1"
    assert created["name"] == "Worker I"
    assert created["description"] == "Do 100 works"
    assert exact(created["metadata"]) == exact(RICH_METADATA)
    assert TIMESTAMP.match(created["createdAt"])
    assert created["createdAt"] == created["updatedAt"]
    assert (await client.get(f"{DEFINITIONS}/{created['id']}")).json() == created

    # Progress on it, locked and unlocked, must survive the replacement untouched.
    await upsert(client, 1, created["id"], {"current": 3})
    await unlock(client, 2, created["id"])
    progress_before = sql("SELECT * FROM user_achievements ORDER BY id")

    replaced = await put_by_key(client, "worker-1", {"name": "Worker One"}, 200)
    assert replaced["id"] == created["id"]
    assert replaced["key"] == "worker-1"
    assert replaced["name"] == "Worker One"
    assert replaced["description"] is None
    assert replaced["metadata"] == {}
    assert replaced["createdAt"] == created["createdAt"]
    assert TIMESTAMP.match(replaced["updatedAt"])
    assert replaced["updatedAt"] > created["updatedAt"]
    assert (await client.get(f"{BY_KEY}/worker-1")).json() == replaced
    assert sql("SELECT count(*) FROM achievements") == [(1,)]
    assert sql("SELECT * FROM user_achievements ORDER BY id") == progress_before

    # The same content again is still a successful replace: 200, and updatedAt moves.
    again = await put_by_key(client, "worker-1", {"name": "Worker One"}, 200)
    assert again["id"] == created["id"]
    assert again["updatedAt"] > replaced["updatedAt"]


async def test_put_by_key_replaces_a_definition_created_by_post(client: Any) -> None:
    created = await create_definition(
        client, "Posted", key="posted", description="old", metadata={"a": 1}
    )
    replaced = await put_by_key(
        client, "posted", {"name": "Put", "description": "new", "metadata": {"b": 2}}, 200
    )
    assert replaced["id"] == created["id"]
    assert (replaced["name"], replaced["description"], replaced["metadata"]) == (
        "Put",
        "new",
        {"b": 2},
    )
    assert replaced["createdAt"] == created["createdAt"]


async def test_put_by_key_with_null_description_gives_null(client: Any) -> None:
    created = await put_by_key(client, "nulls", {"name": "N", "description": None}, 201)
    assert created["description"] is None
    assert created["metadata"] == {}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": None}, "name"),
        ({"name": 5}, "name"),
        ({"name": "N", "key": "other"}, "key"),
        ({"name": "N", "metadata": []}, "metadata"),
        ({"name": "N", "description": 5}, "description"),
    ],
)
async def test_put_by_key_body_is_validated(
    client: Any, sql: Any, body: dict[str, Any], field: str
) -> None:
    response = await client.put(f"{BY_KEY}/valid-key", json=body)
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


@pytest.mark.parametrize("key", ["a" * 65, "Upper", "-lead", "_lead", "bad!"])
async def test_malformed_key_in_the_path_is_422(client: Any, sql: Any, key: str) -> None:
    await create_definition(client, "Existing", key="existing")
    before = all_rows(sql)
    for method in ("GET", "DELETE"):
        response = await client.request(method, f"{BY_KEY}/{key}")
        assert_problem(response, 422, "VALIDATION_FAILED")
        assert error_fields(response) == ["key"]
    response = await client.put(f"{BY_KEY}/{key}", json={"name": "N"})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["key"]
    assert all_rows(sql) == before


async def test_sixty_four_character_key_in_the_path(client: Any) -> None:
    key = "k" * 64
    created = await put_by_key(client, key, {"name": "Long"}, 201)
    assert created["key"] == key
    assert (await client.get(f"{BY_KEY}/{key}")).json() == created


async def test_get_and_delete_by_key(client: Any, sql: Any) -> None:
    kept = await create_definition(client, "Kept", key="kept")
    target = await create_definition(client, "Target", key="target", metadata={"p": 1})
    await upsert(client, 7, target["id"], {"n": 1})
    await upsert(client, 7, kept["id"], {"n": 2})

    fetched = await client.get(f"{BY_KEY}/target")
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == target

    deleted = await client.delete(f"{BY_KEY}/target")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == target
    assert sql("SELECT id FROM achievements") == [(kept["id"],)]
    # Its progress went with it (cascade); the other achievement's stays, and so does the user.
    assert sql("SELECT user_id, achievement_id FROM user_achievements") == [(7, kept["id"])]
    assert sql("SELECT id FROM users") == [(7,)]

    assert_problem(await client.get(f"{BY_KEY}/target"), 404, "ACHIEVEMENT_NOT_FOUND")
    assert_problem(await client.delete(f"{BY_KEY}/target"), 404, "ACHIEVEMENT_NOT_FOUND")
    assert_problem(await client.get(f"{DEFINITIONS}/{target['id']}"), 404, "ACHIEVEMENT_NOT_FOUND")


async def test_get_and_delete_by_unknown_key_are_404(client: Any) -> None:
    assert_problem(await client.get(f"{BY_KEY}/nobody"), 404, "ACHIEVEMENT_NOT_FOUND")
    assert_problem(await client.delete(f"{BY_KEY}/nobody"), 404, "ACHIEVEMENT_NOT_FOUND")


# --- achievementKey in place of achievementId ---------------------------------------------------


async def test_upsert_by_key(client: Any, sql: Any) -> None:
    target = await create_definition(client, "Target", key="target")
    response = await client.post(
        PROGRESS, json={"userId": 5, "achievementKey": "target", "metadata": {"current": 1}}
    )
    assert response.status_code == 200, response.text
    row = response.json()
    assert row["userId"] == 5
    assert row["achievementId"] == target["id"]
    assert row["metadata"] == {"current": 1}
    assert row["unlockedAt"] is None
    assert "achievementKey" not in row
    assert sql("SELECT user_id, achievement_id FROM user_achievements") == [(5, target["id"])]


async def test_unlock_by_key(client: Any) -> None:
    target = await create_definition(client, "Target", key="target")
    response = await client.put(
        f"{PROGRESS}/unlock", json={"userId": 5, "achievementKey": "target"}
    )
    assert response.status_code == 200, response.text
    row = response.json()
    assert row["achievementId"] == target["id"]
    assert row["newlyUnlocked"] is True
    assert TIMESTAMP.match(row["unlockedAt"])
    again = await client.put(f"{PROGRESS}/unlock", json={"userId": 5, "achievementKey": "target"})
    assert again.json()["newlyUnlocked"] is False
    assert again.json()["unlockedAt"] == row["unlockedAt"]


async def test_apply_by_key(client: Any) -> None:
    target = await create_definition(client, "Target", key="target")
    body = {
        "userId": 5,
        "achievementKey": "target",
        "ops": [{"op": "inc", "path": "current", "value": 2}],
        "unlockWhen": [{"path": "current", "gte": 4}],
    }
    first = await client.post(f"{PROGRESS}/apply", json=body)
    assert first.status_code == 200, first.text
    assert first.json()["achievementId"] == target["id"]
    assert first.json()["metadata"] == {"current": 2}
    assert first.json()["newlyUnlocked"] is False
    second = await client.post(f"{PROGRESS}/apply", json=body)
    assert second.json()["metadata"] == {"current": 4}
    assert second.json()["newlyUnlocked"] is True


async def test_get_and_delete_progress_by_key(client: Any, sql: Any) -> None:
    target = await create_definition(client, "Target", key="target")
    row = await upsert(client, 5, target["id"], {"n": 1})

    fetched = await client.get(PROGRESS, params={"userId": 5, "achievementKey": "target"})
    assert fetched.status_code == 200, fetched.text
    assert fetched.json() == row

    deleted = await client.delete(PROGRESS, params={"userId": 5, "achievementKey": "target"})
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == row
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]

    gone = await client.get(PROGRESS, params={"userId": 5, "achievementKey": "target"})
    assert gone.status_code == 200
    assert gone.json() is None
    again = await client.delete(PROGRESS, params={"userId": 5, "achievementKey": "target"})
    assert_problem(again, 404, "PROGRESS_NOT_FOUND")


async def test_batch_items_by_key(client: Any, sql: Any) -> None:
    first = await create_definition(client, "First", key="first")
    second = await create_definition(client, "Second", key="second")
    operations = [
        {"type": "upsert", "userId": 9, "achievementKey": "first", "metadata": {"a": 1}},
        {"type": "unlock", "userId": 9, "achievementKey": "second"},
        {
            "type": "apply",
            "userId": 9,
            "achievementKey": "first",
            "ops": [{"op": "inc", "path": "a", "value": 1}],
            "unlockWhen": [{"path": "a", "eq": 2}],
        },
        {"type": "delete", "userId": 9, "achievementKey": "second"},
    ]
    response = await client.post(f"{PROGRESS}/batch", json={"operations": operations})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["achievementId"] for r in results] == [
        first["id"],
        second["id"],
        first["id"],
        second["id"],
    ]
    assert results[0]["metadata"] == {"a": 1}
    assert results[1]["newlyUnlocked"] is True
    assert results[2]["metadata"] == {"a": 2}
    assert results[2]["newlyUnlocked"] is True
    assert sql(
        "SELECT user_id, achievement_id, unlocked_at IS NOT NULL FROM user_achievements"
    ) == [(9, first["id"], 1)]


async def test_batch_item_with_unknown_key_fails_the_batch(client: Any, sql: Any) -> None:
    await create_definition(client, "First", key="first")
    operations = [
        {"type": "unlock", "userId": 9, "achievementKey": "first"},
        {"type": "unlock", "userId": 9, "achievementKey": "missing"},
    ]
    response = await client.post(f"{PROGRESS}/batch", json={"operations": operations})
    body = assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    assert body["index"] == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]
    assert sql("SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", PROGRESS, {"metadata": {"a": 1}}),
        ("PUT", f"{PROGRESS}/unlock", {}),
        ("POST", f"{PROGRESS}/apply", {"ops": [{"op": "inc", "path": "a", "value": 1}]}),
    ],
)
async def test_write_with_unknown_key_is_404_and_creates_no_user(
    client: Any, sql: Any, method: str, path: str, body: dict[str, Any]
) -> None:
    await create_definition(client, "Known", key="known")
    response = await client.request(
        method, path, json={"userId": 11, "achievementKey": "unknown", **body}
    )
    assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    assert sql("SELECT count(*) FROM users") == [(0,)]
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


async def test_delete_progress_with_unknown_key_is_404(client: Any) -> None:
    await upsert(client, 11, (await create_definition(client, "Known", key="known"))["id"])
    response = await client.delete(PROGRESS, params={"userId": 11, "achievementKey": "unknown"})
    assert response.status_code == 404, response.text
    # API.md does not say which 404 code; either names what is missing.
    assert response.json()["code"] in {"ACHIEVEMENT_NOT_FOUND", "PROGRESS_NOT_FOUND"}


async def test_get_progress_with_unknown_key_is_null(client: Any) -> None:
    response = await client.get(PROGRESS, params={"userId": 11, "achievementKey": "unknown"})
    assert response.status_code == 200, response.text
    assert response.json() is None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", PROGRESS, {}),
        ("PUT", f"{PROGRESS}/unlock", {}),
        ("POST", f"{PROGRESS}/apply", {"ops": []}),
    ],
)
async def test_both_or_neither_id_and_key_in_a_body_is_422(
    client: Any, sql: Any, method: str, path: str, body: dict[str, Any]
) -> None:
    target = await create_definition(client, "Target", key="target")
    both = {"userId": 3, "achievementId": target["id"], "achievementKey": "target", **body}
    assert_problem(await client.request(method, path, json=both), 422, "VALIDATION_FAILED")
    neither = {"userId": 3, **body}
    assert_problem(await client.request(method, path, json=neither), 422, "VALIDATION_FAILED")
    assert sql("SELECT count(*) FROM users") == [(0,)]


async def test_both_or_neither_in_a_batch_item_is_422(client: Any, sql: Any) -> None:
    target = await create_definition(client, "Target", key="target")
    for item in (
        {"type": "unlock", "userId": 3, "achievementId": target["id"], "achievementKey": "target"},
        {"type": "unlock", "userId": 3},
        {"type": "delete", "userId": 3},
    ):
        operations = [{"type": "unlock", "userId": 3, "achievementKey": "target"}, item]
        response = await client.post(f"{PROGRESS}/batch", json={"operations": operations})
        body = assert_problem(response, 422, "VALIDATION_FAILED")
        assert body["index"] == 1
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_both_or_neither_id_and_key_in_a_query_is_422(client: Any, method: str) -> None:
    target = await create_definition(client, "Target", key="target")
    await upsert(client, 3, target["id"])
    both = {"userId": 3, "achievementId": target["id"], "achievementKey": "target"}
    response = await client.request(method, PROGRESS, params=both)
    assert_problem(response, 422, "VALIDATION_FAILED")
    response = await client.request(method, PROGRESS, params={"userId": 3})
    assert_problem(response, 422, "VALIDATION_FAILED")
    # Nothing was deleted by the refused requests.
    still = await client.get(PROGRESS, params={"userId": 3, "achievementId": target["id"]})
    assert still.json() is not None
