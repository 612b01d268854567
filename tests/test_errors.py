"""Every row of API.md's error table: status, code, problem+json body."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import DEFINITIONS, PROGRESS, assert_problem, create_definition, error_fields

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    "body", [b"{", b'{"name": "x",}', b"NaN", b'{"name": NaN}', b"", b"\xff\xfe", b"{'a': 1}"]
)
async def test_malformed_json_is_400(client: Any, sql: Any, body: bytes) -> None:
    response = await client.post(DEFINITIONS, content=body, headers=JSON)
    assert_problem(response, 400, "MALFORMED_JSON")
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_json_that_is_not_an_object_is_422(client: Any) -> None:
    for body in (b"[]", b"5", b'"name"', b"null"):
        response = await client.post(DEFINITIONS, content=body, headers=JSON)
        assert_problem(response, 422, "VALIDATION_FAILED")


async def test_token_guards_every_route_but_health(make_client: Any) -> None:
    async with make_client(token="s3cret") as client:
        for authorization in (None, "Bearer wrong", "s3cret", "Basic s3cret", "Bearer s3cre"):
            headers = {"Authorization": authorization} if authorization else {}
            response = await client.get(DEFINITIONS, headers=headers)
            assert_problem(response, 401, "UNAUTHORIZED")
            assert response.headers["www-authenticate"] == "Bearer"
        response = await client.post(DEFINITIONS, json={"name": "x"})
        assert_problem(response, 401, "UNAUTHORIZED")
        assert_problem(await client.get("/nope"), 401, "UNAUTHORIZED")
        assert (await client.get("/health")).status_code == 200
        good = {"Authorization": "Bearer s3cret"}
        assert (await client.post(DEFINITIONS, json={"name": "x"}, headers=good)).status_code == 201
        assert (await client.get(DEFINITIONS, headers=good)).status_code == 200


async def test_no_token_configured_needs_none(client: Any) -> None:
    assert (await client.get(DEFINITIONS)).status_code == 200


async def test_not_found_codes(client: Any) -> None:
    assert_problem(await client.get(f"{DEFINITIONS}/5"), 404, "ACHIEVEMENT_NOT_FOUND")
    response = await client.delete(PROGRESS, params={"userId": 1, "achievementId": 1})
    assert_problem(response, 404, "PROGRESS_NOT_FOUND")
    assert_problem(await client.delete("/users/1"), 404, "USER_NOT_FOUND")
    assert_problem(await client.get("/no/such/path"), 404, "NOT_FOUND")
    assert_problem(await client.post("/users/achievements"), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    "host", ["evil.example", "evil.example:8787", "127.0.0.1.evil.example", "localhost.evil", ""]
)
async def test_foreign_host_is_400_on_every_route(client: Any, host: str) -> None:
    for path in ("/health", DEFINITIONS, "/unknown"):
        response = await client.get(path, headers={"host": host})
        assert_problem(response, 400, "INVALID_HOST")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:9000", "localhost", "LOCALHOST:1", "[::1]", "[::1]:8787"]
)
async def test_loopback_hosts_with_any_port_are_allowed(client: Any, host: str) -> None:
    assert (await client.get("/health", headers={"host": host})).status_code == 200


async def test_allowed_hosts_extend_the_list(make_client: Any) -> None:
    async with make_client(allowed_hosts=("bot", "api.internal:8080")) as client:
        for host, status in [
            ("bot", 200), ("bot:1234", 200), ("api.internal:8080", 200),
            ("api.internal:8081", 400), ("api.internal", 400), ("evil", 400),
        ]:  # fmt: skip
            assert (await client.get("/health", headers={"host": host})).status_code == status
    async with make_client(allowed_hosts=("*",)) as client:
        assert (await client.get("/health", headers={"host": "anything:1"})).status_code == 200


async def test_wrong_method_is_405(client: Any) -> None:
    response = await client.patch(DEFINITIONS, json={})
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert_problem(await client.get("/users/1"), 405, "METHOD_NOT_ALLOWED")
    assert_problem(await client.post("/health"), 405, "METHOD_NOT_ALLOWED")


async def test_body_over_one_mebibyte_is_413(client: Any, sql: Any) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = await client.post(DEFINITIONS, content=big, headers=JSON)
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/jsonx", "text/json"],
)  # fmt: skip
async def test_body_that_is_not_json_typed_is_415(
    client: Any, sql: Any, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post(DEFINITIONS, content=b'{"name": "x"}', headers=headers)
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_json_content_type_with_parameters_is_accepted(client: Any) -> None:
    for content_type in ("application/json; charset=utf-8", "Application/JSON"):
        response = await client.post(
            DEFINITIONS, content=b'{"name": "x"}', headers={"content-type": content_type}
        )
        assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"userId": "5", "achievementId": 1}, "userId"),
        ({"userId": 5, "achievementId": "1"}, "achievementId"),
        ({"userId": 5, "achievementId": 1, "extra": 1}, "extra"),
        ({"achievementId": 1}, "userId"),
        ({"userId": 0, "achievementId": 1}, "userId"),
        ({"userId": 2**63, "achievementId": 1}, "userId"),
        ({"userId": -1, "achievementId": 1}, "userId"),
        ({"userId": 1.0, "achievementId": 1}, "userId"),
        ({"userId": True, "achievementId": 1}, "userId"),
        ({"userId": 5, "achievementId": 1, "metadata": []}, "metadata"),
    ],
)
async def test_schema_violations_are_422_with_the_field(
    client: Any, sql: Any, body: dict[str, Any], field: str
) -> None:
    await create_definition(client, "A")
    response = await client.post(PROGRESS, json=body)
    problem = assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]
    assert all(set(error) == {"field", "message"} for error in problem["errors"])
    assert sql("SELECT count(*) FROM user_achievements") == [(0,)]


async def test_openapi_document_lists_every_route(client: Any) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.1")
    paths = document["paths"]
    expected = {
        "/users/achievements/definitions": {"get", "post"},
        "/users/achievements/definitions/{id}": {"get", "put", "delete"},
        "/users/achievements/progress": {"get", "post", "delete"},
        "/users/achievements/progress/list": {"get"},
        "/users/achievements/progress/unlock": {"put"},
        "/users/{userId}": {"delete"},
        "/health": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    upsert = paths["/users/achievements/progress"]["post"]
    assert "requestBody" in upsert
