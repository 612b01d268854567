"""Achievement definitions: create, list, get, update, delete (the seed API)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pytest import Subtests

from tests.helpers import (
    DEFINITIONS,
    TIMESTAMP,
    assert_problem,
    create_definition,
    error_fields,
    unlock,
    upsert,
)

pytestmark = pytest.mark.both_backends

ACHIEVEMENT_FIELDS = {"id", "name", "description", "createdAt", "updatedAt"}
# The extension fields (API.md "Achievement keys"): returned in every Achievement.
EXTENSION_FIELDS = {"key", "metadata"}


async def fetch(client: Any, achievement: int) -> dict[str, Any]:
    response = await client.get(f"{DEFINITIONS}/{achievement}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def stored(sql: Any, achievement: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = sql(
        "SELECT name, description, created_at, updated_at FROM achievements WHERE id = ?",
        achievement,
    )
    return rows


# --- create ---------------------------------------------------------------------------------


async def test_create_returns_201_and_the_new_achievement(client: Any, sql: Any) -> None:
    response = await client.post(
        DEFINITIONS, json={"name": "Worker I", "description": "Complete 100 works"}
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/json")
    created = response.json()
    assert set(created) == ACHIEVEMENT_FIELDS | EXTENSION_FIELDS
    assert type(created["id"]) is int and created["id"] >= 1
    assert created["name"] == "Worker I"
    assert created["description"] == "Complete 100 works"
    assert TIMESTAMP.match(created["createdAt"])
    assert created["createdAt"] == created["updatedAt"]
    assert await fetch(client, created["id"]) == created
    assert stored(sql, created["id"]) == [
        ("Worker I", "Complete 100 works", created["createdAt"], created["updatedAt"])
    ]


async def test_create_without_description_gives_null(client: Any, sql: Any) -> None:
    created = await create_definition(client, "No description")
    assert created["description"] is None
    assert stored(sql, created["id"])[0][1] is None


async def test_create_with_null_description_gives_null(client: Any, sql: Any) -> None:
    created = await create_definition(client, "Null description", description=None)
    assert created["description"] is None
    assert stored(sql, created["id"])[0][1] is None


async def test_empty_description_is_kept_as_empty_string(client: Any) -> None:
    created = await create_definition(client, "Empty", description="")
    assert created["description"] == ""
    assert (await fetch(client, created["id"]))["description"] == ""


async def test_ids_are_distinct_and_growing(client: Any) -> None:
    first = await create_definition(client, "One")
    second = await create_definition(client, "Two")
    assert second["id"] > first["id"]


async def test_description_of_10000_characters_is_accepted(client: Any, sql: Any) -> None:
    text = "d" * 9_999 + "é"  # characters, not bytes: 10,001 bytes of UTF-8
    created = await create_definition(client, "Long", description=text)
    assert created["description"] == text
    assert (await fetch(client, created["id"]))["description"] == text
    assert stored(sql, created["id"])[0][1] == text


async def test_description_of_10001_characters_is_refused(
    client: Any, sql: Any, subtests: Subtests
) -> None:
    for text in ["d" * 10_001, "é" * 10_001, "🏆" * 10_001]:
        with subtests.test(description=text[:3]):
            response = await client.post(
                DEFINITIONS, json={"name": "Too long", "description": text}
            )
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == ["description"]
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


EXACT_NAMES = [
    "a",
    "x" * 255,
    "🏆" * 255,  # 255 characters (1,020 bytes)
    "成" * 255,
    "Ünïcödé 成就 🏆 مرحبا",
    "<script>alert('x')</script> & &amp; \"q\" \\ /",
    "tab\there\nnew line\r\nand more",
    "  spaced out  ",
    "e\u0301 combining, \u200b zero width, \ufeff bom",
    "'; DROP TABLE achievements; --",
    "%s %d {name} ${x}",
]


async def test_names_are_stored_exactly(client: Any, sql: Any, subtests: Subtests) -> None:
    for name in EXACT_NAMES:
        with subtests.test(name=name):
            created = await create_definition(client, name, description=name)
            assert created["name"] == name and created["description"] == name
            fetched = await fetch(client, created["id"])
            assert fetched["name"] == name and fetched["description"] == name
            assert stored(sql, created["id"])[0][:2] == (name, name)


async def test_name_with_a_nul_character_is_stored_exactly(client: Any, sql: Any) -> None:
    # One character (U+0000) like any other: 1 to 255 characters, never a 500 from the file
    # (on PostgreSQL, escaped: tests/test_nul_text.py).
    for name in ["\u0000", "\u0000 starts with NUL", "ends with NUL \u0000"]:
        response = await client.post(DEFINITIONS, json={"name": name, "description": name})
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["name"] == name and created["description"] == name
        assert (await fetch(client, created["id"]))["name"] == name
        assert stored(sql, created["id"])[0][:2] == (name, name)


INVALID_CREATES: list[tuple[dict[str, Any], str]] = [
    ({"name": ""}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": "🏆" * 256}, "name"),
    ({"name": None}, "name"),
    ({"name": 5}, "name"),
    ({"name": 5.5}, "name"),
    ({"name": True}, "name"),
    ({"name": ["a"]}, "name"),
    ({"name": {"text": "a"}}, "name"),
    ({}, "name"),
    ({"description": "only a description"}, "name"),
    ({"name": "A", "colour": "red"}, "colour"),
    ({"name": "A", "Name": "B"}, "Name"),
    ({"name": "A", "description": 7}, "description"),
    ({"name": "A", "description": ["x"]}, "description"),
    ({"name": "A", "id": 5}, "id"),
    ({"name": "A", "createdAt": "2026-01-01T00:00:00.000Z"}, "createdAt"),
]


async def test_invalid_definitions_are_refused(client: Any, sql: Any, subtests: Subtests) -> None:
    for body, field in INVALID_CREATES:
        with subtests.test(body=str(body)[:60]):
            response = await client.post(DEFINITIONS, json=body)
            problem = assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == [field]
            assert all(isinstance(error["message"], str) for error in problem["errors"])
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_concurrent_creates_all_land(client: Any, sql: Any) -> None:
    created = await asyncio.gather(*(create_definition(client, f"n{i}") for i in range(30)))
    assert len({c["id"] for c in created}) == 30
    assert len((await client.get(DEFINITIONS)).json()) == 30
    assert sql("SELECT count(*) FROM achievements") == [(30,)]


# --- list -----------------------------------------------------------------------------------


async def test_list_is_empty_at_first(client: Any) -> None:
    response = await client.get(DEFINITIONS)
    assert response.status_code == 200
    assert response.json() == []


async def test_list_is_ordered_by_name_case_insensitively_then_id(client: Any) -> None:
    # Created so that neither creation order nor a binary (case-sensitive) sort gives the answer.
    names = ["charlie", "alpha", "Bravo", "ALPHA", "bravo", "Alpha", "b", "Same", "same", "Same"]
    names += ["a b", "ab", "Zulu", "alpha2", "10", "9"]
    created = [await create_definition(client, name) for name in names]
    expected = sorted(created, key=lambda a: (a["name"].lower(), a["id"]))
    listed = (await client.get(DEFINITIONS)).json()
    assert listed == expected
    assert [a["name"] for a in listed] == [
        "10", "9", "a b", "ab", "alpha", "ALPHA", "Alpha", "alpha2",
        "b", "Bravo", "bravo", "charlie", "Same", "same", "Same", "Zulu",
    ]  # fmt: skip
    assert sorted(a["name"] for a in listed) != [a["name"] for a in listed]


async def test_list_entries_equal_what_get_returns(client: Any) -> None:
    a = await create_definition(client, "A", description="first")
    b = await create_definition(client, "B")
    await client.put(f"{DEFINITIONS}/{a['id']}", json={"description": "changed"})
    listed = (await client.get(DEFINITIONS)).json()
    assert listed == [await fetch(client, a["id"]), await fetch(client, b["id"])]


async def test_list_follows_renames(client: Any) -> None:
    a = await create_definition(client, "Aardvark")
    b = await create_definition(client, "Badger")
    await client.put(f"{DEFINITIONS}/{a['id']}", json={"name": "zebra"})
    assert [x["id"] for x in (await client.get(DEFINITIONS)).json()] == [b["id"], a["id"]]


# --- get ------------------------------------------------------------------------------------


async def test_get_returns_the_achievement(client: Any) -> None:
    await create_definition(client, "Other")
    created = await create_definition(client, "Target", description="d")
    response = await client.get(f"{DEFINITIONS}/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


# --- update ---------------------------------------------------------------------------------


UPDATES: list[tuple[dict[str, Any], dict[str, Any]]] = [
    ({"name": "Renamed"}, {"name": "Renamed", "description": "old"}),
    ({"description": "new"}, {"name": "Original", "description": "new"}),
    ({"description": None}, {"name": "Original", "description": None}),
    ({"description": ""}, {"name": "Original", "description": ""}),
    ({"name": "Both", "description": "both"}, {"name": "Both", "description": "both"}),
    ({"name": "Both", "description": None}, {"name": "Both", "description": None}),
    ({}, {"name": "Original", "description": "old"}),
    ({"name": "Original", "description": "old"}, {"name": "Original", "description": "old"}),
]


async def test_update_changes_only_given_fields(client: Any, sql: Any, subtests: Subtests) -> None:
    for change, expected in UPDATES:
        with subtests.test(change=change):
            before = await create_definition(client, "Before", description="before")
            target = await create_definition(client, "Original", description="old")
            after = await create_definition(client, "After", description="after")
            response = await client.put(f"{DEFINITIONS}/{target['id']}", json=change)
            assert response.status_code == 200, response.text
            updated = response.json()
            assert updated == {**target, **expected, "updatedAt": updated["updatedAt"]}
            assert updated["createdAt"] == target["createdAt"]
            assert TIMESTAMP.match(updated["updatedAt"])
            assert updated["updatedAt"] > target["updatedAt"]
            assert await fetch(client, target["id"]) == updated
            assert stored(sql, target["id"]) == [
                (
                    expected["name"],
                    expected["description"],
                    target["createdAt"],
                    updated["updatedAt"],
                )
            ]
            assert await fetch(client, before["id"]) == before
            assert await fetch(client, after["id"]) == after


async def test_updated_at_moves_on_every_update_even_in_one_millisecond(client: Any) -> None:
    target = await create_definition(client, "A")
    stamps = [target["updatedAt"]]
    for index in range(8):
        body = {} if index % 2 else {"name": f"A{index}"}
        response = await client.put(f"{DEFINITIONS}/{target['id']}", json=body)
        assert response.status_code == 200
        stamps.append(response.json()["updatedAt"])
    assert stamps == sorted(set(stamps))
    assert (await fetch(client, target["id"]))["createdAt"] == target["createdAt"]


INVALID_UPDATES: list[tuple[Any, str]] = [
    ({"name": None}, "name"),
    ({"name": ""}, "name"),
    ({"name": "x" * 256}, "name"),
    ({"name": 5}, "name"),
    ({"description": "d" * 10_001}, "description"),
    ({"description": 5}, "description"),
    ({"nmae": "typo"}, "nmae"),
    ({"name": "ok", "extra": 1}, "extra"),
    ({"name": "ok", "createdAt": "2020-01-01T00:00:00.000Z"}, "createdAt"),
]


async def test_invalid_updates_are_refused_and_change_nothing(
    client: Any, sql: Any, subtests: Subtests
) -> None:
    target = await create_definition(client, "A", description="kept")
    row = stored(sql, target["id"])
    for body, field in INVALID_UPDATES:
        with subtests.test(body=str(body)[:60]):
            response = await client.put(f"{DEFINITIONS}/{target['id']}", json=body)
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == [field]
    assert await fetch(client, target["id"]) == target
    assert stored(sql, target["id"]) == row


async def test_update_of_a_name_to_255_characters_is_accepted(client: Any) -> None:
    target = await create_definition(client, "A")
    response = await client.put(f"{DEFINITIONS}/{target['id']}", json={"name": "n" * 255})
    assert response.status_code == 200
    assert response.json()["name"] == "n" * 255


# --- delete ---------------------------------------------------------------------------------


async def test_delete_returns_the_deleted_achievement(client: Any, sql: Any) -> None:
    doomed = await create_definition(client, "Doomed", description="bye")
    await client.put(f"{DEFINITIONS}/{doomed['id']}", json={"description": "changed"})
    current = await fetch(client, doomed["id"])
    response = await client.delete(f"{DEFINITIONS}/{doomed['id']}")
    assert response.status_code == 200
    assert response.json() == current
    assert sql("SELECT count(*) FROM achievements WHERE id = ?", doomed["id"]) == [(0,)]
    assert_problem(await client.get(f"{DEFINITIONS}/{doomed['id']}"), 404, "ACHIEVEMENT_NOT_FOUND")
    assert_problem(
        await client.delete(f"{DEFINITIONS}/{doomed['id']}"), 404, "ACHIEVEMENT_NOT_FOUND"
    )


async def test_delete_leaves_other_definitions_untouched(client: Any) -> None:
    first = await create_definition(client, "First", description="1")
    doomed = await create_definition(client, "Doomed")
    last = await create_definition(client, "Last")
    assert (await client.delete(f"{DEFINITIONS}/{doomed['id']}")).status_code == 200
    assert (await client.get(DEFINITIONS)).json() == [first, last]


async def test_delete_cascades_to_its_progress_rows(client: Any, sql: Any) -> None:
    doomed = await create_definition(client, "Doomed")
    kept = await create_definition(client, "Kept")
    await upsert(client, 1, doomed["id"], {"n": 1})
    await unlock(client, 2, doomed["id"])
    await upsert(client, 3, doomed["id"])
    kept_row = await upsert(client, 1, kept["id"], {"n": 2})
    assert sql("SELECT count(*) FROM user_achievements WHERE achievement_id = ?", doomed["id"]) == [
        (3,)
    ]
    response = await client.delete(f"{DEFINITIONS}/{doomed['id']}")
    assert response.status_code == 200
    assert sql("SELECT count(*) FROM user_achievements WHERE achievement_id = ?", doomed["id"]) == [
        (0,)
    ]
    assert sql("SELECT id, user_id, achievement_id FROM user_achievements") == [
        (kept_row["id"], 1, kept["id"])
    ]
    # Users stay until DELETE /users/{userId}, even with no progress left.
    assert sql("SELECT id FROM users ORDER BY id") == [(1,), (2,), (3,)]
    for user in (1, 2, 3):
        got = await client.get(
            "/users/achievements/progress", params={"userId": user, "achievementId": doomed["id"]}
        )
        assert got.status_code == 200 and got.json() is None
    listed = await client.get("/users/achievements/progress/list", params={"userId": 1})
    assert listed.json() == [kept_row]


# --- missing and malformed ids ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["get", "put", "delete"])
async def test_missing_definition_is_404(client: Any, sql: Any, method: str) -> None:
    existing = await create_definition(client, "Exists")
    kwargs = {"json": {"name": "x"}} if method == "put" else {}
    for achievement in (existing["id"] + 1, 999, 2**63 - 1):
        response = await getattr(client, method)(f"{DEFINITIONS}/{achievement}", **kwargs)
        problem = assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
        assert "errors" not in problem
    assert await fetch(client, existing["id"]) == existing
    assert sql("SELECT count(*) FROM achievements") == [(1,)]


async def test_put_of_empty_body_to_missing_definition_is_404(client: Any) -> None:
    assert_problem(await client.put(f"{DEFINITIONS}/12345", json={}), 404, "ACHIEVEMENT_NOT_FOUND")


@pytest.mark.parametrize("method", ["get", "put", "delete"])
async def test_ids_out_of_range_are_422(
    client: Any, sql: Any, subtests: Subtests, method: str
) -> None:
    await create_definition(client, "Exists")
    kwargs = {"json": {"name": "x"}} if method == "put" else {}
    for bad in ["0", "-1", str(2**63), "abc", "1.5", "1e3", "0x10", "99999999999999999999999"]:
        with subtests.test(id=bad):
            response = await getattr(client, method)(f"{DEFINITIONS}/{bad}", **kwargs)
            assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == ["id"]
    assert sql("SELECT name FROM achievements") == [("Exists",)]
