"""Small helpers shared by the HTTP tests."""

from __future__ import annotations

import re
from typing import Any

import httpx

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DEFINITIONS = "/users/achievements/definitions"
PROGRESS = "/users/achievements/progress"


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is a problem+json error with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["title"], str) and body["title"]
    return body


def error_fields(response: httpx.Response) -> list[str]:
    return [error["field"] for error in response.json().get("errors", [])]


async def create_definition(client: Any, name: str = "Worker I", **fields: Any) -> dict[str, Any]:
    response = await client.post(DEFINITIONS, json={"name": name, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def upsert(client: Any, user: int, achievement: int, metadata: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"userId": user, "achievementId": achievement}
    if metadata is not None:
        body["metadata"] = metadata
    response = await client.post(PROGRESS, json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def unlock(client: Any, user: int, achievement: int) -> dict[str, Any]:
    response = await client.put(
        f"{PROGRESS}/unlock", json={"userId": user, "achievementId": achievement}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result
