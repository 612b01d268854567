"""The OpenAPI document (/schema/openapi.json): valid OpenAPI 3.1, and true to the service.

Route by route, the service is made to answer each status it can (success, not found, conflict,
a bad body, a bad parameter, a bad or reused Idempotency-Key, a full disk, a refused Host or
token, oversized headers), and each answer must be documented for its operation: the status,
the media type, a body that the documented schema accepts, and for a problem its `code` among
the codes documented for that status. The rest holds the document to what generators need.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from sidecar.security import MAX_HEADER_BYTES
from tests.helpers import DEFINITIONS, PROGRESS, create_definition, unlock, upsert

OPENAPI = "/schema/openapi.json"
USER = 80351110224678912
WRITES = {"post", "put", "delete"}

# The success of each operation: its URL (path parameters filled in), query and body. Seeded:
# definitions 1 (key "first") and 2 (key "second"), user USER with progress on both, 2 unlocked.
SUCCESS: dict[tuple[str, str], tuple[str, dict[str, Any], Any]] = {
    ("get", DEFINITIONS): (DEFINITIONS, {}, None),
    ("post", DEFINITIONS): (DEFINITIONS, {}, {"name": "New", "key": "new"}),
    ("get", f"{DEFINITIONS}/{{id}}"): (f"{DEFINITIONS}/1", {}, None),
    ("put", f"{DEFINITIONS}/{{id}}"): (f"{DEFINITIONS}/1", {}, {"description": "d"}),
    ("delete", f"{DEFINITIONS}/{{id}}"): (f"{DEFINITIONS}/1", {}, None),
    ("get", f"{DEFINITIONS}/by-key/{{key}}"): (f"{DEFINITIONS}/by-key/first", {}, None),
    ("put", f"{DEFINITIONS}/by-key/{{key}}"): (f"{DEFINITIONS}/by-key/first", {}, {"name": "F"}),
    ("delete", f"{DEFINITIONS}/by-key/{{key}}"): (f"{DEFINITIONS}/by-key/first", {}, None),
    ("get", PROGRESS): (PROGRESS, {"userId": USER, "achievementId": 1}, None),
    ("post", PROGRESS): (PROGRESS, {}, {"userId": str(USER), "achievementId": 1}),
    ("delete", PROGRESS): (PROGRESS, {"userId": USER, "achievementId": 1}, None),
    ("get", f"{PROGRESS}/list"): (f"{PROGRESS}/list", {"userId": USER}, None),
    ("put", f"{PROGRESS}/unlock"): (f"{PROGRESS}/unlock", {}, {"userId": USER, "achievementId": 1}),
    ("post", f"{PROGRESS}/apply"): (
        f"{PROGRESS}/apply",
        {},
        {
            "userId": USER,
            "achievementKey": "first",
            "ops": [{"op": "inc", "path": "n", "value": 1}],
        },
    ),
    ("post", f"{PROGRESS}/batch"): (
        f"{PROGRESS}/batch",
        {},
        {"operations": [{"type": "unlock", "userId": USER, "achievementId": 1}]},
    ),
    ("delete", "/users/{userId}"): (f"/users/{USER}", {}, None),
    ("get", "/users/achievements/events"): ("/users/achievements/events", {"limit": 5}, None),
    ("get", "/users/achievements/stats"): ("/users/achievements/stats", {}, None),
    ("get", "/users/achievements/leaderboard"): ("/users/achievements/leaderboard", {}, None),
    ("get", "/users/achievements/leaderboard/{userId}"): (
        f"/users/achievements/leaderboard/{USER}",
        {},
        None,
    ),
    ("get", "/health"): ("/health", {}, None),
    ("get", "/metrics"): ("/metrics", {}, None),
    ("get", OPENAPI): (OPENAPI, {}, None),
}
# Endless: its success is checked on the real server (test_events, test_ids_as_strings).
STREAM = ("get", "/users/achievements/events/stream")
# Requests that fail in the operation's own way: (url, query, body, status).
OWN_FAILURES: dict[tuple[str, str], list[tuple[str, dict[str, Any], Any, int]]] = {
    ("post", DEFINITIONS): [(DEFINITIONS, {}, {"name": "Dup", "key": "second"}, 409)],
    ("get", f"{DEFINITIONS}/{{id}}"): [(f"{DEFINITIONS}/99", {}, None, 404)],
    ("put", f"{DEFINITIONS}/{{id}}"): [
        (f"{DEFINITIONS}/99", {}, {}, 404),
        (f"{DEFINITIONS}/1", {}, {"key": "second"}, 409),
    ],
    ("delete", f"{DEFINITIONS}/{{id}}"): [(f"{DEFINITIONS}/99", {}, None, 404)],
    ("get", f"{DEFINITIONS}/by-key/{{key}}"): [(f"{DEFINITIONS}/by-key/none", {}, None, 404)],
    ("put", f"{DEFINITIONS}/by-key/{{key}}"): [
        (f"{DEFINITIONS}/by-key/brand-new", {}, {"name": "B"}, 201)
    ],
    ("delete", f"{DEFINITIONS}/by-key/{{key}}"): [(f"{DEFINITIONS}/by-key/none", {}, None, 404)],
    ("post", PROGRESS): [(PROGRESS, {}, {"userId": USER, "achievementId": 99}, 404)],
    ("delete", PROGRESS): [(PROGRESS, {"userId": 5, "achievementId": 1}, None, 404)],
    ("put", f"{PROGRESS}/unlock"): [
        (f"{PROGRESS}/unlock", {}, {"userId": 5, "achievementId": 99}, 404)
    ],
    ("post", f"{PROGRESS}/apply"): [
        (f"{PROGRESS}/apply", {}, {"userId": 5, "achievementId": 99, "ops": []}, 404),
        (
            f"{PROGRESS}/apply",
            {},
            {"userId": USER, "achievementId": 1, "ops": [{"op": "inc", "path": "text"}]},
            422,
        ),
    ],
    ("post", f"{PROGRESS}/batch"): [
        (
            f"{PROGRESS}/batch",
            {},
            {"operations": [{"type": "delete", "userId": 5, "achievementId": 1}]},
            404,
        )
    ],
    ("delete", "/users/{userId}"): [("/users/5", {}, None, 404)],
    ("get", "/users/achievements/leaderboard/{userId}"): [
        ("/users/achievements/leaderboard/5", {}, None, 404)
    ],
    ("get", "/users/achievements/events"): [
        ("/users/achievements/events", {"limit": 0}, None, 422)
    ],
    ("get", "/users/achievements/leaderboard"): [
        ("/users/achievements/leaderboard", {"limit": 101}, None, 422)
    ],
    ("get", f"{PROGRESS}/list"): [(f"{PROGRESS}/list", {"userId": 0}, None, 422)],
    ("get", PROGRESS): [(PROGRESS, {"userId": USER}, None, 422)],
    STREAM: [("/users/achievements/events/stream", {"after": "x"}, None, 422)],
}


def load_document() -> dict[str, Any]:
    from litestar.testing import TestClient

    from sidecar.app import create_app
    from sidecar.settings import Settings

    app = create_app(Settings(db_path="never-opened.db"))
    response = TestClient(app, base_url="http://127.0.0.1:8787").get(OPENAPI)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


DOCUMENT = load_document()
OPERATIONS = [(method, path) for path, item in DOCUMENT["paths"].items() for method in item]


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def assert_documented(operation: dict[str, Any], response: httpx.Response) -> None:
    """The answer's status, media type and body are the document's for this operation."""
    responses = operation["responses"]
    assert str(response.status_code) in responses, (response.status_code, response.text)
    documented = responses[str(response.status_code)]["content"]
    media_type = response.headers["content-type"].split(";")[0]
    assert media_type in documented, (media_type, list(documented))
    schema = documented[media_type]["schema"]
    if media_type.endswith("json"):
        body = response.json()
        # The document's components sit beside the schema, so that its $refs resolve.
        validator = Draft202012Validator({**schema, "components": DOCUMENT["components"]})
        errors = [error.message for error in validator.iter_errors(body)]
        assert not errors, (errors, body)
    if media_type == "application/problem+json":
        assert response.json()["code"] in documented[media_type]["examples"], response.text


async def seed(client: Any) -> None:
    for key in ("first", "second"):
        await create_definition(client, key.capitalize(), key=key)
    await upsert(client, USER, 1, {"text": "not a number"})
    await unlock(client, USER, 2)


def test_the_document_is_valid_openapi_3_1() -> None:
    assert DOCUMENT["openapi"] == "3.1.0"
    validate(DOCUMENT)


def test_every_operation_has_its_success_here() -> None:
    assert set(OPERATIONS) == {*SUCCESS, STREAM}


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_each_status_an_operation_answers_is_documented(
    client: Any, monkeypatch: pytest.MonkeyPatch, method: str, path: str
) -> None:
    operation = DOCUMENT["paths"][path][method]
    await seed(client)
    url, query, body = SUCCESS.get((method, path), (path, {}, None))

    async def send(
        target: str,
        query: dict[str, Any],
        body: Any,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> httpx.Response:
        response = await client.request(
            method.upper(), target, params=query, json=body, headers=headers, **kw
        )
        assert_documented(operation, response)
        return response

    for failing_url, failing_query, failing_body, status in OWN_FAILURES.get((method, path), []):
        assert (await send(failing_url, failing_query, failing_body)).status_code == status
    if "requestBody" in operation:
        json_type, text = {"content-type": "application/json"}, {"content-type": "text/plain"}
        assert (await send(url, query, None, json_type, content=b"{nope")).status_code == 400
        assert (await send(url, query, None, text, content=b"{}")).status_code == 415
        huge = b'{"name": "%s"}' % (b"x" * (1024 * 1024 + 1))
        assert (await send(url, query, None, json_type, content=huge)).status_code == 413
        assert (await send(url, query, {"unknown": 1})).status_code == 422
    if any(p.get("in") == "path" for p in operation["parameters"]):
        bad = re.sub(r"/[^/]+$", "/-0", url)  # neither an id nor a key
        assert (await send(bad, query, body)).status_code == 422
    if method in WRITES:
        assert (await send(url, query, body, {"Idempotency-Key": "k" * 256})).status_code == 422
    if (method, path) != STREAM:
        keyed = {"Idempotency-Key": "k"} if method in WRITES else None
        assert (await send(url, query, body, keyed)).status_code in (200, 201)
    if method in WRITES:
        other = {"userId": 5, "achievementId": 1} if body is None else {**body, "x": 1}
        assert (await send(url, other, body, {"Idempotency-Key": "k"})).status_code == 422

        async def disk_full(*args: Any) -> Any:
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = sqlite3.SQLITE_FULL  # as SQLite's own error carries it
            raise error

        monkeypatch.setattr("sidecar.db.Writer.run", disk_full)
        assert (await send(url, query, body)).status_code == 507


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
async def test_refusals_at_the_gate_are_documented(
    make_client: Any, method: str, path: str
) -> None:
    operation = DOCUMENT["paths"][path][method]
    url, query, body = SUCCESS.get((method, path), (path, {}, None))
    async with make_client(token="s3cret") as client:
        refusals = [
            ({"Host": "evil.example", "Authorization": "Bearer s3cret"}, 400),
            ({"Authorization": "Bearer s3cret", "X-Big": "x" * MAX_HEADER_BYTES}, 431),
        ]
        if path != "/health":
            refusals.append(({}, 401))
        for headers, status in refusals:
            response = await client.request(
                method.upper(), url, params=query, json=body, headers=headers
            )
            assert response.status_code == status
            assert_documented(operation, response)


# --- what generators need ---------------------------------------------------------------------


def walk(value: Any, trail: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield trail, value
    if isinstance(value, dict):
        for key, member in value.items():
            yield from walk(member, (*trail, str(key)))
    elif isinstance(value, list):
        for index, member in enumerate(value):
            yield from walk(member, (*trail, str(index)))


def test_no_optional_field_says_default_null() -> None:
    # openapi-typescript would make such a field a required `T | null`.
    nulls = [
        trail
        for trail, value in walk(DOCUMENT)
        if isinstance(value, dict) and "default" in value and value["default"] is None
    ]
    assert nulls == []


def test_ids_timestamps_and_metadata_are_typed() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    seen = set()
    for name, schema in schemas.items():
        for member, property_schema in schema.get("properties", {}).items():
            choices = property_schema.get("oneOf", property_schema.get("anyOf", [property_schema]))
            if member in ("id", "userId", "achievementId") and name != "Problem":
                integer = [choice for choice in choices if choice.get("type") == "integer"]
                assert integer and integer[0]["format"] == "int64", (name, member)
                string = [choice for choice in choices if choice.get("type") == "string"]
                if "additionalProperties" in schema:  # a request body: the string form too
                    assert "oneOf" in property_schema and string, (name, member)
                    assert re.fullmatch(string[0]["pattern"], "80351110224678912")
                    assert not re.fullmatch(string[0]["pattern"], "080")
                    seen.add("request")
                else:
                    assert not string, (name, member)
                    seen.add("answer")
            if member.endswith("At"):
                assert any(choice.get("format") == "date-time" for choice in choices), (
                    name,
                    member,
                )
            if member == "metadata":
                assert property_schema["type"] == "object", name
                assert property_schema["additionalProperties"] is True, name
    assert seen == {"request", "answer"}
    assert "Op" not in schemas and "ProgressOp" in schemas


def test_every_bounded_parameter_says_its_bounds() -> None:
    found = 0
    for _, _, operation in operations():
        for parameter in operation["parameters"]:
            if parameter.get("name") in ("limit", "offset", "after"):
                schema = parameter["schema"]
                assert {"minimum", "maximum"} <= set(schema), parameter
                # A default, or (the definitions list's limit) a word on leaving it out.
                assert "default" in schema or "description" in schema, parameter
                assert (
                    schema["minimum"]
                    <= schema.get("default", schema["minimum"])
                    <= schema["maximum"]
                )
                found += 1
    assert found >= 5


def test_by_key_put_documents_created_and_replaced() -> None:
    responses = DOCUMENT["paths"][f"{DEFINITIONS}/by-key/{{key}}"]["put"]["responses"]
    assert {"200", "201"} <= set(responses)
    for status in ("200", "201"):
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/Achievement"}


def test_security_headers_and_operation_names() -> None:
    scheme = DOCUMENT["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    assert {"bearerAuth": []} in DOCUMENT["security"]
    assert DOCUMENT["paths"]["/health"]["get"]["security"] == []
    tags = {tag["name"] for tag in DOCUMENT["tags"]}
    operation_ids = []
    for method, path, operation in operations():
        operation_ids.append(operation["operationId"])
        assert re.fullmatch(r"[a-z]+(?:[A-Z][a-z0-9]*)+", operation["operationId"]), operation
        assert operation["summary"] and " " in operation["summary"]
        assert operation["tags"] and set(operation["tags"]) <= tags
        names = {p.get("name") or p["$ref"].rpartition("/")[2] for p in operation["parameters"]}
        success = [operation["responses"][s] for s in ("200", "201") if s in operation["responses"]]
        headers = [set(response.get("headers", {})) for response in success]
        if method in WRITES:
            assert "Idempotency-Key" in names, (method, path)
            assert all("Idempotent-Replayed" in h for h in headers), (method, path)
        carries_ids = path.startswith("/users")
        assert ("Prefer" in names) == carries_ids, (method, path)
        assert all(("Preference-Applied" in h) == carries_ids for h in headers), (method, path)
        for status, response in operation["responses"].items():
            if status >= "400":
                content = response["content"]["application/problem+json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Problem"}
                for code, example in content["examples"].items():
                    assert (
                        example["value"]["status"] == int(status)
                        and example["value"]["code"] == code
                    )
    assert len(operation_ids) == len(set(operation_ids))
    for expected in ("upsertProgress", "listEvents", "getDefinition", "applyProgress"):
        assert expected in operation_ids
