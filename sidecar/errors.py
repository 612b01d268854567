"""Error codes and RFC 9457 problem+json responses: every error the service gives has this shape."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException

from sidecar.db import DatabaseGone, DatabaseUnavailable, StorageFull

log = logging.getLogger("sidecar")

PROBLEM_JSON = "application/problem+json"

TITLES: dict[str, str] = {
    "MALFORMED_JSON": "Request body is not valid JSON",
    "UNAUTHORIZED": "Missing or wrong bearer token",
    "ACHIEVEMENT_NOT_FOUND": "Achievement not found",
    "PROGRESS_NOT_FOUND": "Progress not found",
    "USER_NOT_FOUND": "User not found",
    "NOT_FOUND": "No such path",
    "INVALID_HOST": "Host header not allowed",
    "METHOD_NOT_ALLOWED": "Method not allowed on this path",
    "HEADERS_TOO_LARGE": "Request headers too large",
    "PAYLOAD_TOO_LARGE": "Request body too large",
    "UNSUPPORTED_MEDIA_TYPE": "Request body must be application/json",
    "VALIDATION_FAILED": "Request failed validation",
    "KEY_CONFLICT": "Achievement key already in use",
    "NOT_A_NUMBER": "Stored value is not a number",
    "INVALID_PATH": "Invalid metadata path",
    "IDEMPOTENCY_KEY_REUSED": "Idempotency key reused for a different request",
    "TOO_MANY_STREAMS": "Too many open event streams",
    "TOO_MANY_CONNECTIONS": "Too many open connections",
    "NUMBER_OUT_OF_RANGE": "Number out of range",
    "STORAGE_FULL": "Storage is full",
    "STORAGE_ERROR": "Storage failed",
    "DATABASE_BUSY": "Database is locked by another process",
    "DATABASE_GONE": "Database file was deleted or replaced",
    "DATABASE_UNAVAILABLE": "Database server cannot be reached",
    "INTERNAL_ERROR": "Internal error",
}


class FieldError(msgspec.Struct):
    field: str
    message: str


class Problem(msgspec.Struct, omit_defaults=True):
    status: int
    code: str
    title: str
    detail: str | None = None
    errors: list[FieldError] | None = None
    index: int | None = None


class ApiError(Exception):
    """An expected failure of a request: becomes its problem+json answer."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        errors: list[FieldError] | None = None,
    ) -> None:
        super().__init__(detail or code)
        self.problem = Problem(status, code, TITLES[code], detail, errors)

    @property
    def status(self) -> int:
        return self.problem.status


def field_error(code: str, field: str, message: str) -> ApiError:
    """A 422 that names the offending field: VALIDATION_FAILED, NUMBER_OUT_OF_RANGE."""
    return ApiError(422, code, f"{field}: {message}", [FieldError(field, message)])


def validation_error(field: str, message: str) -> ApiError:
    return field_error("VALIDATION_FAILED", field, message)


def not_found(code: str, detail: str) -> ApiError:
    return ApiError(404, code, detail)


_encode = msgspec.json.Encoder().encode


def problem_body(problem: Problem) -> bytes:
    return _encode(problem)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(
        content=problem_body(problem),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


# A locked database clears up when the other process commits: the client may retry soon.
RETRY_AFTER_SECONDS = "1"


def _primary_code(error: BaseException) -> int | None:
    code = getattr(error, "sqlite_errorcode", None) if isinstance(error, sqlite3.Error) else None
    return None if code is None else int(code) & 0xFF


def is_storage_full(error: BaseException) -> bool:
    """A full disk or a hit file-size limit: SQLITE_FULL, or an I/O error the writer found to be
    for lack of room (db.StorageFull)."""
    return isinstance(error, StorageFull) or _primary_code(error) == sqlite3.SQLITE_FULL


_HTTP_CODES = {
    400: "MALFORMED_JSON",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def problem_of(error: Exception) -> tuple[Problem, dict[str, str] | None]:
    """The problem an exception is answered with, and the headers that go with it."""
    if isinstance(error, ApiError):
        return error.problem, None
    # Keep Litestar's headers such as `allow` on a 405.
    headers = dict(error.headers) if isinstance(error, HTTPException) and error.headers else None
    if isinstance(error, HTTPException) and error.status_code in _HTTP_CODES:
        code = _HTTP_CODES[error.status_code]
        return Problem(error.status_code, code, TITLES[code]), headers
    if isinstance(error, HTTPException) and error.status_code < 500:
        # Litestar's own parameter validation (e.g. a missing query parameter).
        return Problem(422, "VALIDATION_FAILED", TITLES["VALIDATION_FAILED"], error.detail), headers
    if is_storage_full(error):
        return Problem(507, "STORAGE_FULL", TITLES["STORAGE_FULL"], str(error)), None
    if isinstance(error, DatabaseGone):  # the writer logged it once, when it found out
        return Problem(503, "DATABASE_GONE", TITLES["DATABASE_GONE"], str(error)), None
    if isinstance(error, DatabaseUnavailable):  # PostgreSQL: the next request reconnects
        log.warning("database unavailable: %s", error)
        problem = Problem(503, "DATABASE_UNAVAILABLE", TITLES["DATABASE_UNAVAILABLE"], str(error))
        return problem, {"Retry-After": RETRY_AFTER_SECONDS}
    primary = _primary_code(error)
    if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        log.warning("database busy: %s", error)
        problem = Problem(503, "DATABASE_BUSY", TITLES["DATABASE_BUSY"], str(error))
        return problem, {"Retry-After": RETRY_AFTER_SECONDS}
    if primary == sqlite3.SQLITE_IOERR:
        log.error("storage error: %s", error)
        return Problem(503, "STORAGE_ERROR", TITLES["STORAGE_ERROR"], str(error)), None
    log.exception("unhandled error", exc_info=error)
    return Problem(500, "INTERNAL_ERROR", TITLES["INTERNAL_ERROR"]), None


def handle_exception(_: Request[Any, Any, Any], error: Exception) -> Response[bytes]:
    """Litestar's exception handler for everything: one shape for every error."""
    return problem_response(*problem_of(error))
