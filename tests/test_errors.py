"""Every row of API.md's error table (the seed's): status, code, problem+json body.

Also the order of the checks (brief): Host → token → route → Content-Type → size → JSON →
schema → existence, and the OpenAPI document.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pytest import Subtests

from tests.helpers import DEFINITIONS, PROGRESS, assert_problem, create_definition, error_fields

JSON = {"content-type": "application/json"}
MIB = 1024 * 1024
TOKEN = "s3cret"
GOOD = {"Authorization": f"Bearer {TOKEN}"}

# (method, path, a valid JSON body) for every seed route that takes a body; {id} is filled in.
BODY_ROUTES = [
    ("POST", DEFINITIONS, b'{"name": "x"}'),
    ("PUT", DEFINITIONS + "/{id}", b'{"name": "x"}'),
    ("POST", PROGRESS, b'{"userId": 1, "achievementId": {id}}'),
    ("PUT", PROGRESS + "/unlock", b'{"userId": 1, "achievementId": {id}}'),
]


@pytest.fixture
async def achievement(client: Any) -> int:
    return int((await create_definition(client, "Existing"))["id"])


def fill(path: str, body: bytes, achievement: int) -> tuple[str, bytes]:
    return path.replace("{id}", str(achievement)), body.replace(b"{id}", b"%d" % achievement)


def untouched(sql: Any) -> list[Any]:
    """Everything a write could change."""
    return [
        sql("SELECT * FROM achievements ORDER BY id"),
        sql("SELECT * FROM users ORDER BY id"),
        sql("SELECT * FROM user_achievements ORDER BY id"),
    ]


# --- 400 MALFORMED_JSON ---------------------------------------------------------------------

MALFORMED = [
    b"{",
    b'{"name": "x",}',
    b'{"name": "x"} trailing',
    b'{"name": "x"}{}',
    b"{'name': 'x'}",
    b'{name: "x"}',
    b"NaN",
    b'{"name": NaN}',
    b'{"name": "x", "description": Infinity}',
    b"-Infinity",
    b"",
    b"   ",
    b"\xff\xfe",
    b'{"name": "\xff\xfe"}',
    b'{"name": "\xc3"}',
    b'{"name": "x"\x00}',
    b'{"name": "unterminated}',
    b'{"name": "bad \\x escape"}',
    b'{"name": 01}',
]


async def test_malformed_json_is_400_on_every_body_route(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    before = untouched(sql)
    for method, template, _ in BODY_ROUTES:
        path, _body = fill(template, b"", achievement)
        for body in MALFORMED:
            with subtests.test(method=method, path=template, body=body):
                response = await client.request(method, path, content=body, headers=JSON)
                problem = assert_problem(response, 400, "MALFORMED_JSON")
                assert "errors" not in problem
    assert untouched(sql) == before


async def test_json_that_is_not_an_object_is_422(client: Any, sql: Any, subtests: Subtests) -> None:
    for body in (b"[]", b"5", b'"name"', b"null", b"true", b'[{"name": "x"}]'):
        with subtests.test(body=body):
            response = await client.post(DEFINITIONS, content=body, headers=JSON)
            assert_problem(response, 422, "VALIDATION_FAILED")
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


# --- 401 UNAUTHORIZED -----------------------------------------------------------------------


@pytest.fixture
async def guarded(make_client: Any) -> AsyncIterator[Any]:
    async with make_client(token=TOKEN) as client:
        yield client


async def test_missing_or_wrong_token_is_401(guarded: Any, sql: Any, subtests: Subtests) -> None:
    created = await guarded.post(DEFINITIONS, json={"name": "A"}, headers=GOOD)
    assert created.status_code == 201
    before = untouched(sql)
    wrong = [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        "Bearer s3cre",
        "Bearer s3crett",
        "Bearer S3CRET",
        "s3cret",
        "Basic s3cret",
        "Token s3cret",
        "Basic czNjcmV0",
    ]
    requests = [
        ("GET", DEFINITIONS, None),
        ("POST", DEFINITIONS, {"name": "B"}),
        ("PUT", f"{DEFINITIONS}/1", {"name": "C"}),
        ("DELETE", f"{DEFINITIONS}/1", None),
        ("POST", PROGRESS, {"userId": 1, "achievementId": 1}),
        ("PUT", f"{PROGRESS}/unlock", {"userId": 1, "achievementId": 1}),
        ("GET", f"{PROGRESS}/list?userId=1", None),
        ("DELETE", "/users/1", None),
        ("GET", "/schema/openapi.json", None),
    ]
    for authorization in wrong:
        headers = {} if authorization is None else {"Authorization": authorization}
        for method, path, body in requests:
            with subtests.test(authorization=authorization, method=method, path=path):
                response = await guarded.request(method, path, json=body, headers=headers)
                assert_problem(response, 401, "UNAUTHORIZED")
                assert response.headers["www-authenticate"] == "Bearer"
    assert untouched(sql) == before


async def test_health_never_needs_the_token(guarded: Any) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, GOOD):
        response = await guarded.get("/health", headers=headers)
        assert response.status_code == 200
        assert response.json()["status"] == "ok"


async def test_correct_token_works_everywhere(guarded: Any) -> None:
    created = await guarded.post(DEFINITIONS, json={"name": "A"}, headers=GOOD)
    assert created.status_code == 201
    achievement = created.json()["id"]
    body = {"userId": 1, "achievementId": achievement}
    for method, path, json_body, status in [
        ("GET", DEFINITIONS, None, 200),
        ("GET", f"{DEFINITIONS}/{achievement}", None, 200),
        ("PUT", f"{DEFINITIONS}/{achievement}", {"name": "B"}, 200),
        ("POST", PROGRESS, body, 200),
        ("PUT", f"{PROGRESS}/unlock", body, 200),
        ("GET", f"{PROGRESS}?userId=1&achievementId={achievement}", None, 200),
        ("GET", f"{PROGRESS}/list?userId=1", None, 200),
        ("DELETE", f"{PROGRESS}?userId=1&achievementId={achievement}", None, 200),
        ("DELETE", "/users/1", None, 200),
        ("DELETE", f"{DEFINITIONS}/{achievement}", None, 200),
        ("GET", "/schema/openapi.json", None, 200),
    ]:
        response = await guarded.request(method, path, json=json_body, headers=GOOD)
        assert response.status_code == status, (method, path, response.text)
    # With the right token the other errors show through.
    assert_problem(await guarded.get("/nope", headers=GOOD), 404, "NOT_FOUND")
    response = await guarded.get(f"{DEFINITIONS}/{achievement}", headers=GOOD)
    assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")


async def test_no_token_configured_needs_none(client: Any) -> None:
    assert (await client.get(DEFINITIONS)).status_code == 200
    response = await client.get(DEFINITIONS, headers={"Authorization": "Bearer anything"})
    assert response.status_code == 200


# --- 404 ------------------------------------------------------------------------------------


async def test_missing_resources_are_404_with_their_code(client: Any, achievement: int) -> None:
    missing = achievement + 1
    for method, path, body in [
        ("GET", f"{DEFINITIONS}/{missing}", None),
        ("PUT", f"{DEFINITIONS}/{missing}", {"name": "x"}),
        ("DELETE", f"{DEFINITIONS}/{missing}", None),
        ("POST", PROGRESS, {"userId": 1, "achievementId": missing}),
        ("PUT", f"{PROGRESS}/unlock", {"userId": 1, "achievementId": missing}),
    ]:
        response = await client.request(method, path, json=body)
        assert_problem(response, 404, "ACHIEVEMENT_NOT_FOUND")
    response = await client.delete(PROGRESS, params={"userId": 1, "achievementId": achievement})
    assert_problem(response, 404, "PROGRESS_NOT_FOUND")
    assert_problem(await client.delete("/users/1"), 404, "USER_NOT_FOUND")


async def test_unknown_paths_are_404_not_found(client: Any, subtests: Subtests) -> None:
    for method, path in [
        ("GET", "/nope"),
        ("POST", "/nope"),
        ("DELETE", "/nope/1"),
        ("GET", "/users"),
        ("GET", "/users/achievements"),
        ("POST", "/users/achievements"),
        ("GET", "/users/achievements/definition"),
        ("GET", f"{DEFINITIONS}/1/extra"),
        ("GET", f"{PROGRESS}/unlock/1"),
        ("DELETE", "/users/1/extra"),
        ("GET", "/healthz"),
        ("GET", "/schema/openapi.yaml.nope"),
    ]:
        with subtests.test(method=method, path=path):
            response = await client.request(method, path)
            assert_problem(response, 404, "NOT_FOUND")


# --- 400 INVALID_HOST -----------------------------------------------------------------------

FOREIGN_HOSTS = [
    "evil.example",
    "evil.example:8787",
    "127.0.0.1.evil.example",
    "localhost.evil",
    "evil-localhost",
    # IP literals (127.0.0.2, [::2]) are allowed since Revision 2: tests/test_host_policy.py.
    "bot",
    "",
]


async def test_foreign_host_is_400_on_every_route(
    client: Any, sql: Any, subtests: Subtests
) -> None:
    before = untouched(sql)
    for host in FOREIGN_HOSTS:
        for method, path, body in [
            ("GET", "/health", None),
            ("GET", DEFINITIONS, None),
            ("POST", DEFINITIONS, {"name": "x"}),
            ("GET", "/unknown", None),
            ("GET", "/schema/openapi.json", None),
        ]:
            with subtests.test(host=host, method=method, path=path):
                response = await client.request(method, path, json=body, headers={"host": host})
                assert_problem(response, 400, "INVALID_HOST")
    assert untouched(sql) == before


async def test_loopback_hosts_with_any_port_are_allowed(client: Any, subtests: Subtests) -> None:
    for host in [
        "127.0.0.1",
        "127.0.0.1:8787",
        "127.0.0.1:9000",
        "localhost",
        "localhost:9000",
        "localhost:1",
        "[::1]",
        "[::1]:1234",
        "[::1]:8787",
    ]:
        with subtests.test(host=host):
            assert (await client.get("/health", headers={"host": host})).status_code == 200
            assert (await client.get(DEFINITIONS, headers={"host": host})).status_code == 200


async def test_allowed_host_without_port_allows_any_port(make_client: Any) -> None:
    async with make_client(allowed_hosts=("bot",)) as client:
        for host, status in [
            ("bot", 200),
            ("bot:1234", 200),
            ("bot:8787", 200),
            ("localhost:9000", 200),
            ("bot.evil", 400),
            ("evilbot", 400),
            ("evil.example", 400),
        ]:
            response = await client.get(DEFINITIONS, headers={"host": host})
            assert response.status_code == status, host
            if status == 400:
                assert_problem(response, 400, "INVALID_HOST")


async def test_allowed_host_with_port_allows_only_that_port(make_client: Any) -> None:
    async with make_client(allowed_hosts=("bot:8080",)) as client:
        for host, status in [
            ("bot:8080", 200),
            ("bot", 400),
            ("bot:8081", 400),
            ("bot:80", 400),
            ("127.0.0.1:8080", 200),
        ]:
            response = await client.get(DEFINITIONS, headers={"host": host})
            assert response.status_code == status, host
            if status == 400:
                assert_problem(response, 400, "INVALID_HOST")


async def test_star_allows_every_host(make_client: Any) -> None:
    async with make_client(allowed_hosts=("*",)) as client:
        for host in ("evil.example", "anything:1", "bot", "127.0.0.1", "[2001:db8::1]:80"):
            assert (await client.get(DEFINITIONS, headers={"host": host})).status_code == 200


# --- 405 METHOD_NOT_ALLOWED -----------------------------------------------------------------


async def test_wrong_method_on_a_known_path_is_405(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    before = untouched(sql)
    for method, path in [
        ("PATCH", DEFINITIONS),
        ("PUT", DEFINITIONS),
        ("DELETE", DEFINITIONS),
        ("PATCH", f"{DEFINITIONS}/{achievement}"),
        ("POST", f"{DEFINITIONS}/{achievement}"),
        ("PATCH", PROGRESS),
        ("PUT", PROGRESS),
        ("GET", f"{PROGRESS}/unlock"),
        ("POST", f"{PROGRESS}/unlock"),
        ("DELETE", f"{PROGRESS}/unlock"),
        ("POST", f"{PROGRESS}/list"),
        ("GET", "/users/1"),
        ("PUT", "/users/1"),
        ("POST", "/health"),
        ("DELETE", "/health"),
    ]:
        with subtests.test(method=method, path=path):
            response = await client.request(method, path, json={"name": "x"})
            assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert untouched(sql) == before


# --- 413 PAYLOAD_TOO_LARGE ------------------------------------------------------------------


def body_of_size(size: int) -> bytes:
    """A JSON object body of exactly `size` bytes (its name far too long: 422 if read)."""
    body = b'{"name": "' + b"x" * (size - len(b'{"name": ""}')) + b'"}'
    assert len(body) == size
    return body


async def test_body_over_one_mebibyte_is_413(client: Any, achievement: int, sql: Any) -> None:
    before = untouched(sql)
    for method, template, _ in BODY_ROUTES:
        path, _body = fill(template, b"", achievement)
        response = await client.request(method, path, content=body_of_size(MIB + 1), headers=JSON)
        assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
    big = b'{"userId": 1, "achievementId": %d, "metadata": {"x": "%s"}}' % (
        achievement,
        b"y" * (2 * MIB),
    )
    assert_problem(await client.post(PROGRESS, content=big, headers=JSON), 413, "PAYLOAD_TOO_LARGE")
    assert untouched(sql) == before


async def test_body_of_exactly_one_mebibyte_is_read(client: Any) -> None:
    response = await client.post(DEFINITIONS, content=body_of_size(MIB), headers=JSON)
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == ["name"]


async def test_streamed_body_over_the_limit_is_413(client: Any, sql: Any) -> None:
    # Chunked, no Content-Length: the limit must hold while reading, not only from the header.
    # Sent as raw ASGI messages (the test client cannot stream a request body).
    chunks = [b'{"name": "', *[b"x" * 65536] * 17, b'"}']
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": index < len(chunks) - 1}
        for index, chunk in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": DEFINITIONS,
        "raw_path": DEFINITIONS.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8787"),
            (b"content-type", b"application/json"),
            (b"transfer-encoding", b"chunked"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8787),
    }
    await client.app(scope, receive, send)
    start = next(message for message in sent if message["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    headers = {key.decode().lower(): value.decode() for key, value in start["headers"]}
    assert start["status"] == 413, body
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert problem["status"] == 413 and problem["code"] == "PAYLOAD_TOO_LARGE"
    assert problem["title"]
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_body_limit_follows_the_setting(make_client: Any) -> None:
    async with make_client(max_body_bytes=100) as client:
        response = await client.post(DEFINITIONS, content=body_of_size(101), headers=JSON)
        assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
        response = await client.post(DEFINITIONS, content=body_of_size(100), headers=JSON)
        assert response.status_code == 201


# --- 415 UNSUPPORTED_MEDIA_TYPE -------------------------------------------------------------

NOT_JSON_TYPES = [
    None,
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "application/json-patch+json",
    "text/json",
    "text/html",
    "application/octet-stream",
]


async def test_body_that_is_not_json_typed_is_415(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    before = untouched(sql)
    for method, template, body in BODY_ROUTES:
        path, content = fill(template, body, achievement)
        for content_type in NOT_JSON_TYPES:
            with subtests.test(method=method, path=template, content_type=content_type):
                headers = {} if content_type is None else {"content-type": content_type}
                response = await client.request(method, path, content=content, headers=headers)
                assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert untouched(sql) == before


async def test_form_posts_are_415(client: Any, sql: Any) -> None:
    response = await client.post(DEFINITIONS, data={"name": "x"})
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    response = await client.post(DEFINITIONS, files={"name": ("name.json", b'{"name": "x"}')})
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert_problem(await client.post(DEFINITIONS), 415, "UNSUPPORTED_MEDIA_TYPE")
    assert sql("SELECT count(*) FROM achievements") == [(0,)]


async def test_json_content_type_with_parameters_is_accepted(
    client: Any, achievement: int, subtests: Subtests
) -> None:
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/JSON",
    ):
        for method, template, body in BODY_ROUTES:
            path, content = fill(template, body, achievement)
            with subtests.test(content_type=content_type, method=method, path=template):
                response = await client.request(
                    method, path, content=content, headers={"content-type": content_type}
                )
                assert response.status_code in (200, 201), response.text


# --- 422 VALIDATION_FAILED ------------------------------------------------------------------

SCHEMA_VIOLATIONS: list[tuple[str, str, Any, str]] = [
    ("POST", PROGRESS, {"userId": "05", "achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": 5, "achievementId": "01"}, "achievementId"),
    ("POST", PROGRESS, {"userId": 5, "achievementId": 1, "extra": 1}, "extra"),
    ("POST", PROGRESS, {"achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": 5}, "achievementId"),
    ("POST", PROGRESS, {"userId": 0, "achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": -1, "achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": 2**63, "achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": 2**64 + 5, "achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": 1.0, "achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": True, "achievementId": 1}, "userId"),
    ("POST", PROGRESS, {"userId": 5, "achievementId": 1, "metadata": []}, "metadata"),
    ("PUT", f"{PROGRESS}/unlock", {"userId": "05", "achievementId": 1}, "userId"),
    ("PUT", f"{PROGRESS}/unlock", {"userId": 5}, "achievementId"),
    ("PUT", f"{PROGRESS}/unlock", {"userId": 5, "achievementId": 1, "x": 1}, "x"),
    ("POST", DEFINITIONS, {"name": 5}, "name"),
    ("POST", DEFINITIONS, {}, "name"),
    ("POST", DEFINITIONS, {"name": "x", "extra": True}, "extra"),
    ("POST", DEFINITIONS, {"name": ""}, "name"),
    ("PUT", f"{DEFINITIONS}/1", {"name": None}, "name"),
    ("PUT", f"{DEFINITIONS}/1", {"description": 5}, "description"),
    ("GET", f"{DEFINITIONS}/0", None, "id"),
    ("GET", f"{DEFINITIONS}/{2**63}", None, "id"),
    ("DELETE", f"{DEFINITIONS}/abc", None, "id"),
    ("DELETE", "/users/0", None, "userId"),
    ("GET", f"{PROGRESS}?userId=5", None, "achievementId"),
    ("GET", f"{PROGRESS}?userId=5&achievementId=x", None, "achievementId"),
    ("DELETE", f"{PROGRESS}?userId={2**63}&achievementId=1", None, "userId"),
    ("GET", f"{PROGRESS}/list", None, "userId"),
    ("GET", f"{PROGRESS}/list?userId=1&unlockedOnly=yes", None, "unlockedOnly"),
]


async def test_schema_violations_are_422_with_the_field(
    client: Any, achievement: int, sql: Any, subtests: Subtests
) -> None:
    assert achievement == 1
    before = untouched(sql)
    for method, path, body, field in SCHEMA_VIOLATIONS:
        with subtests.test(method=method, path=path, body=body):
            response = await client.request(method, path, json=body)
            problem = assert_problem(response, 422, "VALIDATION_FAILED")
            assert error_fields(response) == [field]
            for error in problem["errors"]:
                assert set(error) == {"field", "message"}
                assert isinstance(error["message"], str) and error["message"]
    assert untouched(sql) == before


# --- the order of the checks ----------------------------------------------------------------


async def test_host_is_checked_before_the_token(make_client: Any) -> None:
    async with make_client(token=TOKEN) as client:
        response = await client.get(DEFINITIONS, headers={"host": "evil.example"})
        assert_problem(response, 400, "INVALID_HOST")
        response = await client.get("/health", headers={"host": "evil.example"})
        assert_problem(response, 400, "INVALID_HOST")


async def test_token_is_checked_before_the_route(make_client: Any) -> None:
    async with make_client(token=TOKEN) as client:
        assert_problem(await client.get("/nope"), 401, "UNAUTHORIZED")
        assert_problem(await client.patch(DEFINITIONS), 401, "UNAUTHORIZED")
        response = await client.post(DEFINITIONS, content=b"{", headers={"content-type": "x/y"})
        assert_problem(response, 401, "UNAUTHORIZED")


async def test_route_is_checked_before_the_content_type(client: Any) -> None:
    plain = {"content-type": "text/plain"}
    assert_problem(await client.post("/nope", content=b"x", headers=plain), 404, "NOT_FOUND")
    response = await client.patch(DEFINITIONS, content=b"x", headers=plain)
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")


async def test_content_type_is_checked_before_the_size(client: Any) -> None:
    response = await client.post(
        DEFINITIONS, content=body_of_size(MIB + 1), headers={"content-type": "text/plain"}
    )
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_size_is_checked_before_the_json(client: Any) -> None:
    response = await client.post(DEFINITIONS, content=b"{" * (MIB + 1), headers=JSON)
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_json_is_checked_before_the_schema(client: Any) -> None:
    response = await client.post(DEFINITIONS, content=b'{"name": 5, "x": 1,}', headers=JSON)
    assert_problem(response, 400, "MALFORMED_JSON")


async def test_schema_is_checked_before_existence(client: Any) -> None:
    response = await client.put(f"{DEFINITIONS}/999", json={"name": ""})
    assert_problem(response, 422, "VALIDATION_FAILED")
    response = await client.post(PROGRESS, json={"userId": "01", "achievementId": 999})
    assert_problem(response, 422, "VALIDATION_FAILED")
    response = await client.put(f"{PROGRESS}/unlock", json={"userId": 1, "achievementId": 0})
    assert_problem(response, 422, "VALIDATION_FAILED")


# --- OpenAPI --------------------------------------------------------------------------------

SEED_PATHS = {
    "/users/achievements/definitions": {"get", "post"},
    "/users/achievements/definitions/{id}": {"get", "put", "delete"},
    "/users/achievements/progress": {"get", "post", "delete"},
    "/users/achievements/progress/list": {"get"},
    "/users/achievements/progress/unlock": {"put"},
    "/users/{userId}": {"delete"},
    "/health": {"get"},
}


async def test_openapi_document_lists_every_seed_route(client: Any) -> None:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200
    assert "json" in response.headers["content-type"]
    document = response.json()
    assert document["openapi"].startswith("3.1")
    assert isinstance(document["info"]["title"], str) and document["info"]["version"]
    paths = document["paths"]
    for path, methods in SEED_PATHS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    for path, method in [
        (DEFINITIONS, "post"),
        ("/users/achievements/definitions/{id}", "put"),
        (PROGRESS, "post"),
        ("/users/achievements/progress/unlock", "put"),
    ]:
        assert "requestBody" in paths[path][method], (path, method)
