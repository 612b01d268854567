"""Achievement definitions: create, list, get, update, delete."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.helpers import (
    DEFINITIONS,
    TIMESTAMP,
    assert_problem,
    create_definition,
    error_fields,
    upsert,
)


async def test_create_returns_the_achievement(client: Any) -> None:
    created = await create_definition(client, "Worker I", description="Complete 100 works")
    assert set(created) == {
        "id",
        "key",
        "name",
        "description",
        "metadata",
        "createdAt",
        "updatedAt",
    }
    assert created["name"] == "Worker I"
    assert created["description"] == "Complete 100 works"
    assert created["key"] is None and created["metadata"] == {}
    assert TIMESTAMP.match(created["createdAt"]) and created["createdAt"] == created["updatedAt"]
    assert (await client.get(f"{DEFINITIONS}/{created['id']}")).json() == created


@pytest.mark.parametrize("fields", [{}, {"description": None}])
async def test_description_is_optional_and_nullable(client: Any, fields: dict[str, Any]) -> None:
    assert (await create_definition(client, "A", **fields))["description"] is None


@pytest.mark.parametrize(
    "name",
    ["x" * 255, "Ünïcödé 成就 🏆", "<b>&amp;</b> ' \" \\ \n\t", "  spaced  ", "a"],
)
async def test_names_are_stored_exactly(client: Any, name: str) -> None:
    created = await create_definition(client, name)
    assert (await client.get(f"{DEFINITIONS}/{created['id']}")).json()["name"] == name


async def test_description_limit(client: Any, sql: Any) -> None:
    long = "d" * 10_000
    assert (await create_definition(client, "A", description=long))["description"] == long
    response = await client.post(DEFINITIONS, json={"name": "B", "description": long + "d"})
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["description"]
    assert sql("SELECT count(*) FROM achievements") == [(1,)]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 256}, "name"),
        ({"name": None}, "name"),
        ({"name": 5}, "name"),
        ({}, "name"),
        ({"name": "A", "colour": "red"}, "colour"),
        ({"name": "A", "description": 7}, "description"),
    ],
)
async def test_invalid_definitions_are_refused(
    client: Any, sql: Any, body: dict[str, Any], field: str
) -> None:
    response = await client.post(DEFINITIONS, json=body)
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_list_is_ordered_by_name_case_insensitively_then_id(client: Any) -> None:
    ids = {}
    for name in ["beta", "Alpha", "alpha", "Charlie", "ÄBC"]:
        ids.setdefault(name, []).append((await create_definition(client, name))["id"])
    listed = (await client.get(DEFINITIONS)).json()
    assert [a["name"] for a in listed] == ["Alpha", "alpha", "beta", "Charlie", "ÄBC"]
    assert listed[0]["id"] < listed[1]["id"]


async def test_list_is_empty_at_first(client: Any) -> None:
    response = await client.get(DEFINITIONS)
    assert response.status_code == 200 and response.json() == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"name": "Renamed"}, {"name": "Renamed", "description": "old"}),
        ({"description": "new"}, {"name": "Original", "description": "new"}),
        ({"description": None}, {"name": "Original", "description": None}),
        ({"name": "Both", "description": "both"}, {"name": "Both", "description": "both"}),
        ({}, {"name": "Original", "description": "old"}),
    ],
)
async def test_update_changes_only_given_fields(
    client: Any, change: dict[str, Any], expected: dict[str, Any]
) -> None:
    target = await create_definition(client, "Original", description="old")
    other = await create_definition(client, "Other", description="untouched")
    response = await client.put(f"{DEFINITIONS}/{target['id']}", json=change)
    assert response.status_code == 200, response.text
    updated = response.json()
    assert {k: updated[k] for k in expected} == expected
    assert updated["createdAt"] == target["createdAt"]
    assert updated["updatedAt"] > target["updatedAt"]
    assert (await client.get(f"{DEFINITIONS}/{other['id']}")).json() == other


async def test_updated_at_moves_on_every_update_even_in_one_millisecond(client: Any) -> None:
    target = await create_definition(client, "A")
    stamps = [target["updatedAt"]]
    for index in range(5):
        response = await client.put(f"{DEFINITIONS}/{target['id']}", json={"name": f"A{index}"})
        stamps.append(response.json()["updatedAt"])
    assert stamps == sorted(set(stamps))


async def test_update_refuses_null_name_and_unknown_fields(client: Any) -> None:
    target = await create_definition(client, "A")
    for body, field in [({"name": None}, "name"), ({"nmae": "x"}, "nmae"), ({"name": ""}, "name")]:
        response = await client.put(f"{DEFINITIONS}/{target['id']}", json=body)
        assert_problem(response, 422, "VALIDATION_FAILED")
        assert error_fields(response) == [field]
    assert (await client.get(f"{DEFINITIONS}/{target['id']}")).json() == target


async def test_delete_returns_it_and_cascades_to_progress(client: Any, sql: Any) -> None:
    doomed = await create_definition(client, "Doomed")
    kept = await create_definition(client, "Kept")
    await upsert(client, 1, doomed["id"], {"n": 1})
    await upsert(client, 2, doomed["id"])
    await upsert(client, 1, kept["id"], {"n": 2})
    response = await client.delete(f"{DEFINITIONS}/{doomed['id']}")
    assert response.status_code == 200 and response.json() == doomed
    assert (await client.get(f"{DEFINITIONS}/{doomed['id']}")).status_code == 404
    assert (await client.get(DEFINITIONS)).json() == [kept]
    assert sql("SELECT user_id, achievement_id FROM user_achievements") == [(1, kept["id"])]
    assert sql("SELECT id FROM users ORDER BY id") == [(1,), (2,)]


@pytest.mark.parametrize("method", ["get", "put", "delete"])
async def test_missing_definition_is_404(client: Any, method: str) -> None:
    kwargs = {"json": {"name": "x"}} if method == "put" else {}
    response = await getattr(client, method)(f"{DEFINITIONS}/999", **kwargs)
    assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")


@pytest.mark.parametrize("bad", ["0", "-1", str(2**63), "abc", "1.5", "1e3", "%201"])
async def test_bad_ids_are_422(client: Any, bad: str) -> None:
    for method in ("get", "delete"):
        response = await getattr(client, method)(f"{DEFINITIONS}/{bad}")
        assert_problem(response, 422, "VALIDATION_FAILED")
        assert error_fields(response) == ["id"]


async def test_largest_id_is_accepted_as_a_path_parameter(client: Any) -> None:
    response = await client.get(f"{DEFINITIONS}/{2**63 - 1}")
    assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")


async def test_concurrent_creates_all_land(client: Any) -> None:
    created = await asyncio.gather(*(create_definition(client, f"n{i}") for i in range(30)))
    assert len({c["id"] for c in created}) == 30
    assert len((await client.get(DEFINITIONS)).json()) == 30
