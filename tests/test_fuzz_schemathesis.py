"""Schemathesis against the service's own OpenAPI document, in-process, with a bounded budget.

Each operation of `/schema/openapi.json` is one test: schemathesis generates requests from the
document, valid ones (positive mode) and invalid ones (negative mode), and sends them to the ASGI
app on a real SQLite file that holds definitions 1..3 (keys `k1`..`k3`), progress rows and unlock
events. Every response must not be a 5xx, must have a Content-Type that the document declares for
its status, and a body that matches the document's schema for that status.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
)
from schemathesis.python.asgi import shutdown_lifespans

from sidecar.app import create_app
from sidecar.settings import Settings

# An allowed Host (the gate refuses schemathesis' default `testserver`).
BASE_URL = "http://127.0.0.1:8787"
OPENAPI = "/schema/openapi.json"
EVENT_STREAM = "/users/achievements/events/stream"
# Per operation, half valid and half invalid on average; ~40 operations stay well under a minute.
MAX_EXAMPLES = 20
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _document_operations() -> list[str]:
    """`METHOD path` of every operation the document lists (read at collection time; the
    document is built with the app, so no database is opened for it)."""
    app = create_app(Settings(db_path="never-opened.db"))
    response = TestClient(app, base_url=BASE_URL).get(OPENAPI)
    assert response.status_code == 200, response.text
    paths: dict[str, dict[str, Any]] = json.loads(response.content)["paths"]
    return [f"{method.upper()} {path}" for path, item in paths.items() for method in item]


OPERATIONS = _document_operations()


def _seed(settings_: Settings) -> None:
    """Definitions 1..3 with keys, progress for users 1 and 2, and two unlock events."""
    with TestClient(create_app(settings_), base_url=BASE_URL) as client:
        for number in (1, 2, 3):
            created = client.post(
                "/users/achievements/definitions",
                json={"name": f"Achievement {number}", "key": f"k{number}"},
            )
            assert created.status_code == 201, created.text
            assert created.json()["id"] == number
        for user in (1, 2):
            upserted = client.post(
                "/users/achievements/progress",
                json={"userId": user, "achievementId": 1, "metadata": {"current": user}},
            )
            assert upserted.status_code == 200, upserted.text
            unlocked = client.put(
                "/users/achievements/progress/unlock", json={"userId": user, "achievementId": 2}
            )
            assert unlocked.status_code == 200, unlocked.text


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    settings_ = Settings(db_path=str(tmp_path_factory.mktemp("fuzz") / "achievements.db"))
    _seed(settings_)
    # A second app on the same file; schemathesis runs its lifespan (opens the database) itself.
    app = create_app(settings_)
    try:
        yield schemathesis.openapi.from_asgi(OPENAPI, app, headers={"Host": "127.0.0.1:8787"})
    finally:
        shutdown_lifespans()


def test_document_lists_every_route() -> None:
    """The budget below covers the whole contract, not a document that lost its routes."""
    listed = set(OPERATIONS)
    for operation in (
        "POST /users/achievements/definitions",
        "PUT /users/achievements/definitions/by-key/{key}",
        "POST /users/achievements/progress/apply",
        "POST /users/achievements/progress/batch",
        "DELETE /users/{userId}",
        "GET /users/achievements/events/stream",
        "GET /users/achievements/leaderboard/{userId}",
        "GET /health",
        "GET /schema/openapi.json",
    ):
        assert operation in listed


@pytest.mark.parametrize("operation", OPERATIONS)
def test_operation(api_schema: Any, operation: str) -> None:
    method, path = operation.split(" ", 1)
    api_operation = api_schema[path][method]
    cases = st.one_of(
        api_operation.as_strategy(GenerationMode.POSITIVE),
        api_operation.as_strategy(GenerationMode.NEGATIVE),
    )
    extra: dict[str, Any] = {}
    checks = CHECKS
    if path == EVENT_STREAM:
        # An endless stream: keep what arrives in a moment, and check that.
        extra["timeout"] = 0.3
        # Its 200 is documented as `type: string` (an object per event would make
        # openapi-python-client's generated code fail mypy --strict), which schemathesis' SSE
        # check reads as a schema for each parsed event; the events' JSON is held to the Event
        # schema by tests/test_events.py and tests/test_streams.py instead.
        checks = [not_a_server_error, content_type_conformance]

    @given(case=cases)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        # The answer schemas describe ids in their integer form; `Prefer: ids=string` turns them
        # into strings (tests/test_ids_as_strings.py), which these checks would take for a fault.
        if case.headers:
            case.headers.pop("Prefer", None)
        case.call_and_validate(base_url=BASE_URL, checks=checks, **extra)

    run()
