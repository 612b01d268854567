"""docs/api.md, the user's reference, agrees with the running service: every route of the live
OpenAPI document is documented there with its method, every route it documents exists, and every
error code the service can give (and every code of the contract) is in its error table with its
status. Nothing in the repository's docs points outside the repository."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sidecar.errors import TITLES

ROOT = Path(__file__).resolve().parent.parent
API_DOC = ROOT / "docs" / "api.md"
# "GET /users/{userId}" in the text; the path ends where a path character cannot be.
ROUTE = re.compile(r"\b(GET|POST|PUT|DELETE|PATCH) (/[A-Za-z0-9_.{}/-]*)")
ERROR_ROW = re.compile(r"^\| (\d{3}) \| `([A-Z_]+)` \|", re.MULTILINE)
# The error table of the contract (every code a client may branch on), with its status.
CONTRACT_CODES = {
    "MALFORMED_JSON": 400,
    "INVALID_HOST": 400,
    "UNAUTHORIZED": 401,
    "ACHIEVEMENT_NOT_FOUND": 404,
    "PROGRESS_NOT_FOUND": 404,
    "USER_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "KEY_CONFLICT": 409,
    "PAYLOAD_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "VALIDATION_FAILED": 422,
    "NOT_A_NUMBER": 422,
    "INVALID_PATH": 422,
    "IDEMPOTENCY_KEY_REUSED": 422,
    "NUMBER_OUT_OF_RANGE": 422,
    "TOO_MANY_STREAMS": 503,
    "DATABASE_GONE": 503,
    "DATABASE_BUSY": 503,
    "STORAGE_ERROR": 503,
    "DATABASE_UNAVAILABLE": 503,
    "STORAGE_FULL": 507,
    "INTERNAL_ERROR": 500,
}


def documented_routes() -> set[tuple[str, str]]:
    return {(method, path.rstrip(".")) for method, path in ROUTE.findall(API_DOC.read_text())}


async def live_routes(client: Any) -> set[tuple[str, str]]:
    response = await client.get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    paths: dict[str, dict[str, Any]] = response.json()["paths"]
    # Litestar adds OPTIONS (and HEAD) to every path by itself: not routes of ours.
    return {
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method not in ("options", "head")
    }


async def test_every_route_of_the_service_is_documented(client: Any) -> None:
    missing = sorted(await live_routes(client) - documented_routes())
    assert not missing, f"routes not in docs/api.md: {missing}"


def app_routes(client: Any) -> set[tuple[str, str]]:
    """Every route the app serves, the pages (left out of the OpenAPI document) included."""
    found = set()
    for route in client.app.routes:
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # "{id:str}" → "{id}"
        found |= {(m, path) for m in getattr(route, "methods", ()) if m not in ("OPTIONS", "HEAD")}
    return found


async def test_every_documented_route_exists(client: Any) -> None:
    stale = sorted(documented_routes() - app_routes(client))
    assert not stale, f"docs/api.md names routes the service does not have: {stale}"


def test_every_error_code_is_in_the_error_table_with_its_status() -> None:
    table: dict[str, set[int]] = {}
    for status, code in ERROR_ROW.findall(API_DOC.read_text()):
        table.setdefault(code, set()).add(int(status))
    # Every code the service can produce goes through TITLES (errors.ApiError looks it up there).
    missing = sorted((set(TITLES) | set(CONTRACT_CODES)) - set(table))
    assert not missing, f"error codes not in the table of docs/api.md: {missing}"
    wrong = {
        code: table[code] for code, status in CONTRACT_CODES.items() if table[code] != {status}
    }
    assert not wrong, wrong


def test_docs_never_point_outside_the_repository() -> None:
    for document in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = document.read_text()
        assert "../shared" not in text, document
        for target in re.findall(r"\]\(([^)#\s]+)", text):
            if re.match(r"[a-z]+:", target):
                continue  # a URL, not a file
            assert (document.parent / target).resolve().is_relative_to(ROOT), (document, target)
            assert (document.parent / target).exists(), (document, target)
