"""The OpenAPI 3.1 document, built from the routes themselves and the msgspec wire types.

Handlers read their input by hand (strict decoding), so each declares what it takes and gives
in its `opt`: `body` and `answer` (the Structs), `query` (parameter names), `bounds` (each bounded
integer parameter's default, lowest and highest), `status` (the success status, or several),
`errors` (the codes of its own failures), `example` (a request body), `stream` (the type of each
Server-Sent Event's data), `text` (a media type), `database` (False for a route that does not
touch it). This module turns that into the document: JSON Schemas derived by msgspec from the
same Structs that decode and encode, refined where a Python type cannot say what the wire holds
(int64 ids, RFC 3339 timestamps, JSON-object metadata); every status an operation can answer,
with the problem codes it carries; the headers of idempotency and of ids as strings. Routes that
are not API operations (the HTML pages, the Swagger UI page and its assets) are left out with
`include_in_schema=False`.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from sidecar import __version__, idforms
from sidecar.errors import TITLES, Problem
from sidecar.models import ID_TEXT_PATTERN, KEY_PATTERN, MAX_ID
from sidecar.security import OPEN_PATHS

SNOWFLAKE = 80351110224678912
TIMESTAMP = "2026-11-24T08:25:23.123Z"
_ID = {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID}
_KEY = {"type": "string", "pattern": KEY_PATTERN, "examples": ["messages-100"]}


def _id_parameter(example: int) -> dict[str, Any]:
    """A path or query id: in the URL its digits either way; "or its decimal string" lets a
    generated JavaScript client send a snowflake as a string (a number cannot hold one)."""
    text = {"type": "string", "pattern": ID_TEXT_PATTERN, "examples": [str(example)]}
    return {"anyOf": [{**_ID, "examples": [example]}, text]}


PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "id": _id_parameter(1),
    "userId": _id_parameter(SNOWFLAKE),
    "achievementId": _id_parameter(1),
    "key": _KEY,
    "achievementKey": _KEY,
    "unlockedOnly": {"type": "boolean", "default": False},
}
_REQUIRED_QUERY = frozenset({"userId"})
_WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

# Every problem code: its status and when it is answered (API.md's table).
CODES: dict[str, tuple[int, str]] = {
    "MALFORMED_JSON": (400, "the body is not valid JSON"),
    "INVALID_HOST": (400, "the Host header is not an allowed host (DNS-rebinding guard)"),
    "UNAUTHORIZED": (401, "a token is configured and the request lacks it or has a wrong one"),
    "ACHIEVEMENT_NOT_FOUND": (404, "the achievement does not exist"),
    "PROGRESS_NOT_FOUND": (404, "the user has no progress row on the achievement"),
    "USER_NOT_FOUND": (404, "the user does not exist (or has no unlock, for a rank)"),
    "KEY_CONFLICT": (409, "the key is held by another definition"),
    "PAYLOAD_TOO_LARGE": (413, "the body is over the size limit (1 MiB by default)"),
    "UNSUPPORTED_MEDIA_TYPE": (415, "the body's Content-Type is not application/json"),
    "VALIDATION_FAILED": (
        422,
        "a parameter, header or body breaks the schema; `errors` names each field",
    ),
    "NOT_A_NUMBER": (422, "inc/max/min met a stored value that is not a number"),
    "INVALID_PATH": (422, "an ops path is empty, has an empty segment or runs through a value"),
    "NUMBER_OUT_OF_RANGE": (422, "a number outside the range that ops and conditions compute in"),
    "IDEMPOTENCY_KEY_REUSED": (422, "the Idempotency-Key was used for a different request"),
    "HEADERS_TOO_LARGE": (431, "the request headers are too large"),
    "TOO_MANY_STREAMS": (503, "too many open event streams; try again after Retry-After"),
    "DATABASE_BUSY": (503, "the database is locked by another process; retry after Retry-After"),
    "DATABASE_GONE": (503, "the database file was deleted or replaced under the service"),
    "STORAGE_ERROR": (503, "an I/O error other than a full disk"),
    "DATABASE_UNAVAILABLE": (503, "the PostgreSQL server cannot be reached"),
    "STORAGE_FULL": (507, "the disk (or the file-size limit) is full; reads keep working"),
}
_DATABASE_CODES = ("DATABASE_BUSY", "DATABASE_GONE", "STORAGE_ERROR", "DATABASE_UNAVAILABLE")
_BODY_CODES = ("MALFORMED_JSON", "PAYLOAD_TOO_LARGE", "UNSUPPORTED_MEDIA_TYPE", "VALIDATION_FAILED")
_WRITE_CODES = ("VALIDATION_FAILED", "IDEMPOTENCY_KEY_REUSED", "STORAGE_FULL")
# More than status, code and title in an example problem, where there is more to show.
_EXAMPLE_DETAILS: dict[str, dict[str, Any]] = {
    "VALIDATION_FAILED": {
        "detail": "userId: must be an integer from 1 to 9223372036854775807",
        "errors": [
            {"field": "userId", "message": "must be an integer from 1 to 9223372036854775807"}
        ],
    }
}
_STATUS_HEADERS = {
    401: {"WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}},
    503: {"Retry-After": {"$ref": "#/components/headers/Retry-After"}},
}

TAGS = [
    {"name": "definitions", "description": "Achievement definitions, by id and by key."},
    {"name": "progress", "description": "Each user's progress: atomic ops, unlocks, batches."},
    {"name": "users", "description": "Users, created by their first write."},
    {"name": "feed", "description": "The unlock feed: by cursor, and live (Server-Sent Events)."},
    {"name": "stats", "description": "Rarity per achievement and the leaderboard."},
    {"name": "operations", "description": "Health, metrics and this document."},
]

COMPONENT_PARAMETERS = {
    "Prefer": {
        "name": "Prefer",
        "in": "header",
        "description": "`ids=string` (RFC 7240) gives every `id`, `userId` and `achievementId` "
        "of the answer (the `format: int64` integers of its schema) as a decimal string: a "
        "JavaScript number cannot hold a Discord snowflake. Other preferences are ignored.",
        "schema": {"type": "string", "examples": ["ids=string"]},
    },
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "description": "Makes the write safe to retry: a repeat with the same key, method, path, "
        "query and body gets the stored answer (with `Idempotent-Replayed: true`) and applies "
        "nothing; the same key with another request is 422 IDEMPOTENCY_KEY_REUSED. Kept 24 "
        "hours by default.",
        "schema": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": "^[ -~]+$",
            "examples": ["3f1c2a9e-unlock-80351110224678912"],
        },
    },
}
COMPONENT_HEADERS = {
    "Idempotent-Replayed": {
        "description": "`true` on a stored answer replayed for a repeated Idempotency-Key; "
        "absent on every other answer.",
        "schema": {"type": "string", "enum": ["true"]},
    },
    "Preference-Applied": {
        "description": "`ids=string` when the answer's ids are strings (`Prefer: ids=string`).",
        "schema": {"type": "string", "enum": [idforms.STRING_FORM]},
    },
    "Vary": {
        "description": "`Prefer`: the answer's id form follows the Prefer header.",
        "schema": {"type": "string"},
    },
    "WWW-Authenticate": {"schema": {"type": "string", "examples": ["Bearer"]}},
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    },
}
SECURITY_SCHEMES = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <token>`, needed only when the service runs with "
        "SIDECAR_TOKEN; /health never needs it.",
    }
}


class _Schemas:
    """Collects the types to describe; fills each placeholder once msgspec has made them all."""

    def __init__(self) -> None:
        self._pending: list[tuple[dict[str, Any], Any]] = []

    def of(self, kind: Any) -> dict[str, Any]:
        placeholder: dict[str, Any] = {}
        self._pending.append((placeholder, kind))
        return placeholder

    def resolve(self) -> dict[str, Any]:
        kinds = [kind for _, kind in self._pending]
        schemas, components = msgspec.json.schema_components(
            kinds, ref_template="#/components/schemas/{name}"
        )
        for (placeholder, _), schema in zip(self._pending, schemas, strict=True):
            placeholder.update(_refined(schema))
        return {name: _refined(schema) for name, schema in components.items()}


def _refined(schema: dict[str, Any]) -> dict[str, Any]:
    """msgspec's schema with what the Python types cannot say: ids are int64 (and in a body
    also their decimal string, one of the two), `...At` members are RFC 3339 timestamps,
    `metadata` is a JSON object, an enum of strings is a string. An optional field says no
    `default: null` (generators would make it a required `T | null`)."""
    if schema.get("default", False) is None:
        del schema["default"]
    if "type" not in schema and all(isinstance(value, str) for value in schema.get("enum", [1])):
        schema["type"] = "string"
    for name, member in schema.get("properties", {}).items():
        _refine_property(name, member)
    for keyword in ("anyOf", "oneOf", "allOf"):
        for member in schema.get(keyword, ()):
            _refined(member)
    if isinstance(schema.get("items"), dict):
        _refined(schema["items"])
    return schema


def _refine_property(name: str, schema: dict[str, Any]) -> None:
    _refined(schema)
    choices = schema.get("anyOf", [schema])
    for choice in choices:
        if name in idforms.ID_NAMES and choice.get("type") == "integer":
            choice.update(format="int64", examples=[SNOWFLAKE if name == "userId" else 1])
        elif name in idforms.ID_NAMES and choice.get("pattern") == ID_TEXT_PATTERN:
            choice["examples"] = [str(SNOWFLAKE) if name == "userId" else "1"]
            # An integer or its string: exactly one of them holds, which generators want said.
            schema["oneOf"] = schema.pop("anyOf")
        elif name.endswith("At") and choice.get("type") == "string":
            choice.update(format="date-time", examples=[TIMESTAMP])
    if name == "metadata" and not schema:
        # Any members (openapi-typescript makes a bare object `Record<string, never>`).
        schema.update(
            type="object", additionalProperties=True, examples=[{"current": 42, "bestStreak": 7}]
        )


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _document_path(path: str) -> str:
    return "/".join(
        "{" + part[1:-1].split(":")[0] + "}" if part.startswith("{") else part
        for part in path.split("/")
    )


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _bounded(default: int | None, low: int, high: int) -> dict[str, Any]:
    """An integer parameter's schema; a default of None: leaving it out means "no bound"."""
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is None:
        return {**schema, "description": "Optional: left out, there is no bound (every item)."}
    return {**schema, "default": default}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _parameters(
    handler: HTTPRouteHandler, method: str, path: str, ids: bool
) -> list[dict[str, Any]]:
    bounds = handler.opt.get("bounds", {})
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": PARAMETER_SCHEMAS[name]}
        for name in _path_parameters(path)
    ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": name in _REQUIRED_QUERY,
            "schema": _bounded(*bounds[name]) if name in bounds else PARAMETER_SCHEMAS[name],
        }
        for name in handler.opt.get("query", ())
    ]
    if "stream" in handler.opt:
        parameters.append(
            {
                "name": "Last-Event-ID",
                "in": "header",
                "description": "Resume after this event id (wins over `after`); what a "
                "reconnecting EventSource sends.",
                "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
            }
        )
    if ids:
        parameters.append(_ref("parameters", "Prefer"))
    if method in _WRITE_METHODS:
        parameters.append(_ref("parameters", "Idempotency-Key"))
    return parameters


def error_codes(handler: HTTPRouteHandler, method: str, path: str) -> list[str]:
    """Every problem code the operation can answer."""
    opt = handler.opt
    codes = ["INVALID_HOST", "HEADERS_TOO_LARGE"]
    if path not in OPEN_PATHS:
        codes.append("UNAUTHORIZED")
    if "body" in opt:
        codes += _BODY_CODES
    if _path_parameters(path) or opt.get("query") or "stream" in opt:
        codes.append("VALIDATION_FAILED")
    if method in _WRITE_METHODS:
        codes += _WRITE_CODES
    codes += opt.get("errors", ())
    if opt.get("database", True):
        codes += _DATABASE_CODES
    return list(dict.fromkeys(codes))


def _error_responses(codes: list[str]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = defaultdict(list)
    for code in codes:
        by_status[CODES[code][0]].append(code)
    responses: dict[str, Any] = {}
    for status, status_codes in sorted(by_status.items()):
        examples = {
            code: {
                "summary": CODES[code][1],
                "value": {
                    "status": status,
                    "code": code,
                    "title": TITLES.get(code, code),
                    **_EXAMPLE_DETAILS.get(code, {}),
                },
            }
            for code in status_codes
        }
        response: dict[str, Any] = {
            "description": "; ".join(f"`{code}`: {CODES[code][1]}" for code in status_codes),
            "content": {"application/problem+json": {"schema": _PROBLEM_REF, "examples": examples}},
        }
        if status in _STATUS_HEADERS:
            response["headers"] = _STATUS_HEADERS[status]
        responses[str(status)] = response
    return responses


def _success_responses(
    handler: HTTPRouteHandler, method: str, ids: bool, schemas: _Schemas
) -> dict[str, Any]:
    opt = handler.opt
    if "answer" in opt:
        content = {"application/json": {"schema": schemas.of(opt["answer"])}}
    elif "stream" in opt:
        schemas.of(opt["stream"])  # listed among the components, for the description
        description = (
            f"Server-Sent Events: each has `id:` the event's id and `data:` one "
            f"{opt['stream'].__name__} (JSON); `:` lines are comments (keep-alive)."
        )
        content = {"text/event-stream": {"schema": {"type": "string", "description": description}}}
    else:
        content = {opt.get("text", "text/plain"): {"schema": {"type": "string"}}}
    headers: dict[str, Any] = {}
    if ids:
        headers["Preference-Applied"] = _ref("headers", "Preference-Applied")
        headers["Vary"] = _ref("headers", "Vary")
    if method in _WRITE_METHODS:
        headers["Idempotent-Replayed"] = _ref("headers", "Idempotent-Replayed")
    statuses = opt.get("status", {200: "Success."})
    responses: dict[str, Any] = {}
    for status, description in statuses.items():
        responses[str(status)] = {"description": description, "content": content}
        if headers:
            responses[str(status)]["headers"] = headers
    return responses


def _operation(
    handler: HTTPRouteHandler, method: str, path: str, schemas: _Schemas
) -> dict[str, Any]:
    opt = handler.opt
    ids = idforms.carries_ids(opt.get("answer", opt.get("stream")))
    doc = (handler.fn.__doc__ or "").strip()
    summary, _, description = doc.partition("\n")
    if not summary:
        raise ValueError(f"the handler {handler.handler_name} needs a docstring: its summary")
    operation: dict[str, Any] = {
        "operationId": _camel(handler.handler_name),
        "summary": summary.strip(),
        "tags": [handler.fn.__module__.rpartition(".")[2]],
        "parameters": _parameters(handler, method, path, ids),
        "responses": {
            **_success_responses(handler, method, ids, schemas),
            **_error_responses(error_codes(handler, method, path)),
        },
    }
    if description.strip():
        operation["description"] = " ".join(description.split())
    if path in OPEN_PATHS:
        operation["security"] = []
    if "body" in opt:
        media: dict[str, Any] = {"schema": schemas.of(opt["body"])}
        if "example" in opt:
            media["example"] = opt["example"]
        operation["requestBody"] = {"required": True, "content": {"application/json": media}}
    return operation


def openapi_document(app: Litestar) -> bytes:
    """Every API route of the app, with the JSON Schemas msgspec derives from the wire types."""
    schemas = _Schemas()
    schemas.of(Problem)  # every error answer's, named by reference
    paths: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler) or not handler.include_in_schema:
                continue
            for path in handler.paths:
                # Litestar's automatic OPTIONS answers are not part of the API.
                for method in sorted(handler.http_methods - {"OPTIONS"}):
                    operations = paths.setdefault(_document_path(path), {})
                    operations[method.lower()] = _operation(handler, method, path, schemas)
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "Achievements sidecar",
            "version": __version__,
            "description": "Achievements for chat bots: definitions, per-user progress with "
            "atomic ops, an unlock feed, rarity and a leaderboard, in one SQLite file. Errors "
            "are RFC 9457 problem details with a stable `code`. Ids are integers up to 2^63-1; "
            "send `Prefer: ids=string` to get them as strings, and send them as strings in "
            "bodies, where JavaScript numbers cannot hold them.",
        },
        "tags": TAGS,
        "security": [{"bearerAuth": []}, {}],
        "paths": paths,
        "components": {
            "schemas": schemas.resolve(),
            "parameters": COMPONENT_PARAMETERS,
            "headers": COMPONENT_HEADERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
    return msgspec.json.encode(document)
