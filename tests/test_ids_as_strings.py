"""Ids as strings (API.md, Revision 2): a body id may be the canonical decimal string of the
integer, and `Prefer: ids=string` gives every `id`, `userId` and `achievementId` of an answer as
a string, on every route, the fast path's included; metadata is never touched."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.helpers import DEFINITIONS, PROGRESS, assert_problem, create_definition, error_fields
from tests.realserver import RealServer

SNOWFLAKE = 80351110224678912  # above 2^53: a JavaScript number cannot hold it
LARGEST = 2**63 - 1
PREFER = {"Prefer": "ids=string"}
ID_NAMES = {"id", "userId", "achievementId"}
EVENTS = "/users/achievements/events"
LEADERBOARD = "/users/achievements/leaderboard"
BATCH = f"{PROGRESS}/batch"
# Metadata that looks like ids: it must come back digit for digit, whatever the id form.
METADATA = b'{"userId":80351110224678912,"id":1,"deep":{"achievementId":123456789012345678901}}'
ID_STRINGS = [("userId", str(SNOWFLAKE)), ("userId", str(LARGEST))]


def ids_in(value: Any) -> list[Any]:
    """Every id member of the answer's objects, metadata left out."""
    found: list[Any] = []
    if isinstance(value, list):
        for item in value:
            found += ids_in(item)
    elif isinstance(value, dict):
        for name, member in value.items():
            if name in ID_NAMES:
                found.append(member)
            elif name != "metadata":
                found += ids_in(member)
    return found


def assert_string_ids(response: httpx.Response) -> Any:
    """A 2xx answer with string ids (at least one), saying so; returns its JSON."""
    assert response.is_success, response.text
    assert response.headers["preference-applied"] == "ids=string"
    assert response.headers["vary"] == "Prefer"
    body = response.json()
    ids = ids_in(body)
    assert ids and all(isinstance(value, str) and str(int(value)) == value for value in ids)
    return body


def assert_integer_ids(response: httpx.Response) -> Any:
    assert response.is_success, response.text
    assert "preference-applied" not in response.headers
    assert response.headers["vary"] == "Prefer"
    body = response.json()
    ids = ids_in(body)
    assert ids and all(type(value) is int for value in ids)
    return body


def as_strings(value: Any) -> Any:
    """The integer-form answer as the string form must be."""
    if isinstance(value, list):
        return [as_strings(item) for item in value]
    if isinstance(value, dict):
        return {
            name: str(member)
            if name in ID_NAMES
            else member
            if name == "metadata"
            else as_strings(member)
            for name, member in value.items()
        }
    return value


async def both_forms(client: Any, method: str, url: str, **kwargs: Any) -> Any:
    """Asks once in each form (a read, or a write that an identical retry may repeat); the
    string form must be the integer form with its ids as strings. Returns the integer form."""
    plain = await client.request(method, url, **kwargs)
    headers = {**kwargs.pop("headers", {}), **PREFER}
    strings = await client.request(method, url, headers=headers, **kwargs)
    integers = assert_integer_ids(plain)
    assert assert_string_ids(strings) == as_strings(integers)
    return integers


async def test_every_route_answers_ids_as_strings_on_request(client: Any) -> None:
    # Definitions: create, by-key create (201) and replace (200), read, list, update.
    created = await client.post(DEFINITIONS, json={"name": "First"}, headers=PREFER)
    assert created.status_code == 201
    first = int(assert_string_ids(created)["id"])
    by_key = await client.put(f"{DEFINITIONS}/by-key/second", json={"name": "S"}, headers=PREFER)
    assert by_key.status_code == 201
    second = int(assert_string_ids(by_key)["id"])
    replaced = await client.put(f"{DEFINITIONS}/by-key/second", json={"name": "S2"}, headers=PREFER)
    assert replaced.status_code == 200 and assert_string_ids(replaced)["id"] == str(second)
    await both_forms(client, "GET", DEFINITIONS)
    await both_forms(client, "GET", f"{DEFINITIONS}/{first}")
    await both_forms(client, "GET", f"{DEFINITIONS}/by-key/second")
    updated = await client.put(f"{DEFINITIONS}/{first}", json={"description": "d"}, headers=PREFER)
    assert assert_string_ids(updated)["id"] == str(first)

    # Progress, with string ids in the bodies: upsert, apply, unlock, read, list, batch.
    for user in (SNOWFLAKE, LARGEST):
        upserted = await client.post(
            PROGRESS,
            content=b'{"userId":"%d","achievementId":"%d","metadata":%s}' % (user, first, METADATA),
            headers={"Content-Type": "application/json", **PREFER},
        )
        row = assert_string_ids(upserted)
        assert (row["userId"], row["achievementId"]) == (str(user), str(first))
        assert b'"metadata":' + METADATA in upserted.content
        applied = await client.post(
            f"{PROGRESS}/apply",
            json={"userId": str(user), "achievementKey": "second", "ops": []},
            headers=PREFER,
        )
        assert assert_string_ids(applied)["achievementId"] == str(second)
        unlocked = await client.put(
            f"{PROGRESS}/unlock",
            json={"userId": str(user), "achievementId": second},
            headers=PREFER,
        )
        assert assert_string_ids(unlocked)["newlyUnlocked"] is True
        row = await both_forms(client, "GET", PROGRESS, params=query(user, first))
        assert row["userId"] == user and row["metadata"] == json.loads(METADATA)
        rows = await both_forms(client, "GET", f"{PROGRESS}/list", params={"userId": user})
        assert [row["userId"] for row in rows] == [user, user]
    batch = await client.post(
        BATCH,
        json={
            "operations": [
                {"type": "upsert", "userId": str(SNOWFLAKE), "achievementId": str(first)},
                {"type": "apply", "userId": str(LARGEST), "achievementId": first, "ops": []},
                {"type": "unlock", "userId": SNOWFLAKE, "achievementId": str(second)},
            ]
        },
        headers=PREFER,
    )
    results = assert_string_ids(batch)["results"]
    assert [(r["userId"], r.get("newlyUnlocked")) for r in results] == [
        (str(SNOWFLAKE), None),
        (str(LARGEST), False),
        (str(SNOWFLAKE), False),
    ]

    # The feed, stats and the leaderboard.
    events = await both_forms(client, "GET", EVENTS)
    assert [event["userId"] for event in events] == [SNOWFLAKE, LARGEST]
    await both_forms(client, "GET", "/users/achievements/stats")
    board = await both_forms(client, "GET", LEADERBOARD)
    assert [entry["userId"] for entry in board] == [SNOWFLAKE, LARGEST]
    await both_forms(client, "GET", f"{LEADERBOARD}/{LARGEST}")

    # Deletes.
    deleted = await client.delete(PROGRESS, params=query(SNOWFLAKE, first), headers=PREFER)
    assert assert_string_ids(deleted)["userId"] == str(SNOWFLAKE)
    gone = await client.delete(f"/users/{LARGEST}", headers=PREFER)
    assert assert_string_ids(gone) == {"userId": str(LARGEST), "deletedProgress": 2}
    for url in (f"{DEFINITIONS}/{first}", f"{DEFINITIONS}/by-key/second"):
        assert assert_string_ids(await client.delete(url, headers=PREFER))["name"]


def query(user: int, achievement: int) -> dict[str, int]:
    return {"userId": user, "achievementId": achievement}


async def test_a_row_that_is_not_there_still_varies(client: Any) -> None:
    for headers in ({}, PREFER):
        response = await client.get(PROGRESS, params=query(1, 1), headers=headers)
        assert response.content == b"null"
        assert response.headers["vary"] == "Prefer"
        assert response.headers.get("preference-applied") == headers.get("Prefer")
        assert (await client.get(f"{PROGRESS}/list", params={"userId": 1})).content == b"[]"


async def test_answers_without_ids_and_errors_are_unchanged(client: Any) -> None:
    health = await client.get("/health", headers=PREFER)
    assert health.status_code == 200
    assert "vary" not in health.headers and "preference-applied" not in health.headers
    for response in (
        await client.get(f"{DEFINITIONS}/5", headers=PREFER),
        await client.get(f"{LEADERBOARD}/5", headers=PREFER),  # the fast path's 404 is Litestar's
        await client.post(PROGRESS, json={"userId": "5", "achievementId": "5"}, headers=PREFER),
    ):
        assert response.status_code == 404
        assert "preference-applied" not in response.headers and "vary" not in response.headers
        assert isinstance(response.json()["status"], int)


PREFERENCES = [
    (["ids=string"], True),
    (["respond-async, ids=string"], True),
    (["IDS = STRING"], True),
    (['ids="string"'], True),
    (["wait=10;foo=bar, ids=string;x=1"], True),
    (["respond-async", "ids=string"], True),  # two Prefer headers
    ([' x="a,b" ,ids=string'], True),
    (["ids=number"], False),
    (["ids=number, ids=string"], False),  # the first counts
    (["return=minimal"], False),
    (['x="ids=string"'], False),
    (['x="a, ids=string"'], False),  # inside a quoted string
    (["ids=strings"], False),
    (["ids"], False),
    ([""], False),
]


@pytest.mark.parametrize(("values", "strings"), PREFERENCES)
async def test_the_prefer_header_is_parsed_as_rfc_7240_says(
    client: Any, values: list[str], strings: bool
) -> None:
    achievement = (await create_definition(client, "A"))["id"]
    await client.post(PROGRESS, json={"userId": SNOWFLAKE, "achievementId": achievement})
    headers = [("Prefer", value) for value in values]
    for url, params in [
        (PROGRESS, query(SNOWFLAKE, achievement)),  # the fast path
        (f"{PROGRESS}/list", {"userId": SNOWFLAKE}),  # the fast path, with its answer cache
        (DEFINITIONS, {}),  # Litestar
    ]:
        response = await client.get(url, params=params, headers=headers)
        assert (assert_string_ids if strings else assert_integer_ids)(response)


BAD_ID_STRINGS = ["080", "+1", " 1", "1 ", "1.0", "9223372036854775808", "0", "١٢", "1\n", "", "-1"]


@pytest.mark.parametrize("text", BAD_ID_STRINGS)
async def test_other_id_strings_are_refused_naming_the_field(client: Any, text: str) -> None:
    achievement = (await create_definition(client, "A"))["id"]
    for method, url, body, field in [
        ("POST", PROGRESS, {"userId": text, "achievementId": achievement}, "userId"),
        ("POST", PROGRESS, {"userId": 1, "achievementId": text}, "achievementId"),
        ("PUT", f"{PROGRESS}/unlock", {"userId": text, "achievementId": achievement}, "userId"),
        (
            "POST",
            f"{PROGRESS}/apply",
            {"userId": 1, "achievementId": text, "ops": []},
            "achievementId",
        ),
    ]:
        response = await client.request(method, url, json=body, headers=PREFER)
        assert_problem(response, 422, "VALIDATION_FAILED")
        assert error_fields(response) == [field]
    operations = [
        {"type": "upsert", "userId": 1, "achievementId": achievement},
        {"type": "delete", "userId": "1", "achievementId": text},
    ]
    response = await client.post(BATCH, json={"operations": operations})
    assert assert_problem(response, 422, "VALIDATION_FAILED")["index"] == 1
    assert error_fields(response) == ["achievementId"]
    assert (await client.get(f"{PROGRESS}/list", params={"userId": 1})).json() == []


@pytest.mark.parametrize("first_form", [{}, PREFER], ids=["integers-first", "strings-first"])
async def test_a_replay_comes_back_in_the_form_the_retry_asks_for(
    client: Any, first_form: dict[str, str]
) -> None:
    achievement = (await create_definition(client, "A"))["id"]
    body = {"userId": str(SNOWFLAKE), "achievementId": achievement, "ops": []}
    batch = {"operations": [{"type": "unlock", **query(SNOWFLAKE, achievement)}]}
    for index, (method, url, payload) in enumerate(
        [
            ("POST", f"{PROGRESS}/apply", body),
            ("POST", BATCH, batch),
            ("DELETE", f"/users/{SNOWFLAKE}", None),
        ]
    ):
        key = {"Idempotency-Key": f"k{index}"}
        first = await client.request(method, url, json=payload, headers={**key, **first_form})
        answers = {}
        for form in ({}, PREFER):
            retry = await client.request(method, url, json=payload, headers={**key, **form})
            assert retry.headers["idempotent-replayed"] == "true"
            answers[bool(form)] = (assert_string_ids if form else assert_integer_ids)(retry)
        assert answers[True] == as_strings(answers[False])
        assert first.json() == answers[bool(first_form)]


async def test_the_event_stream_sends_string_ids_on_request(server: RealServer) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        achievement = (await create_definition(client, "A"))["id"]
        await client.put(
            f"{PROGRESS}/unlock", json={"userId": str(SNOWFLAKE), "achievementId": achievement}
        )
        for form, data in [({}, SNOWFLAKE), (PREFER, str(SNOWFLAKE))]:
            async with client.stream("GET", f"{EVENTS}/stream", headers=form) as response:
                assert response.headers["vary"] == "Prefer"
                assert response.headers.get("preference-applied") == form.get("Prefer")
                event = await asyncio.wait_for(first_event(response), 10.0)
            assert event["userId"] == data
            assert event["id"] == (str(1) if form else 1)


async def first_event(response: httpx.Response) -> Any:
    async for line in response.aiter_lines():
        if line.startswith("data: "):
            return json.loads(line.removeprefix("data: "))
    raise AssertionError("the stream ended")


async def test_a_key_replays_only_the_same_bytes_whatever_the_id_form(client: Any) -> None:
    # The same request in meaning, but other bytes: a retry must send what it sent first.
    achievement = (await create_definition(client, "A"))["id"]
    key = {"Idempotency-Key": "same-key"}
    first = await client.put(
        f"{PROGRESS}/unlock",
        json={"userId": str(SNOWFLAKE), "achievementId": achievement},
        headers=key,
    )
    assert first.status_code == 200
    other = await client.put(
        f"{PROGRESS}/unlock", json={"userId": SNOWFLAKE, "achievementId": achievement}, headers=key
    )
    assert_problem(other, 422, "IDEMPOTENCY_KEY_REUSED")
