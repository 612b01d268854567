"""The OpenAPI 3.1 document, built from the routes themselves and the msgspec wire types.

Handlers read their input by hand (strict decoding), so each declares what it takes and gives
in its `opt`: `body`, `answer`, `query`, `status`, `stream`, `text`; this module turns that into
the document, with JSON Schemas derived by msgspec from the same Structs that decode and encode.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from sidecar import __version__
from sidecar.errors import Problem
from sidecar.models import KEY_PATTERN, MAX_ID

_ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_KEY = {"type": "string", "pattern": KEY_PATTERN}
PARAMETER_SCHEMAS: dict[str, dict[str, Any]] = {
    "id": _ID,
    "userId": _ID,
    "achievementId": _ID,
    "key": _KEY,
    "achievementKey": _KEY,
    "unlockedOnly": {"type": "boolean", "default": False},
    "after": {"type": "integer", "minimum": 0, "default": 0},
    "limit": {"type": "integer", "minimum": 1},
    "offset": {"type": "integer", "minimum": 0, "default": 0},
}
_REQUIRED_QUERY = frozenset({"userId"})
_WRITE_METHODS = frozenset({"POST", "PUT", "DELETE"})


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
            placeholder.update(schema)
        return dict(components)


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1].split(":")[0] for part in path.split("/") if part.startswith("{")]


def _document_path(path: str) -> str:
    return "/".join(
        "{" + part[1:-1].split(":")[0] + "}" if part.startswith("{") else part
        for part in path.split("/")
    )


def _parameters(handler: HTTPRouteHandler, method: str, path: str) -> list[dict[str, Any]]:
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": PARAMETER_SCHEMAS[name]}
        for name in _path_parameters(path)
    ]
    parameters += [
        {
            "name": name,
            "in": "query",
            "required": name in _REQUIRED_QUERY,
            "schema": PARAMETER_SCHEMAS[name],
        }
        for name in handler.opt.get("query", ())
    ]
    if method in _WRITE_METHODS:
        schema = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]+$"}
        parameters.append({"name": "Idempotency-Key", "in": "header", "schema": schema})
    return parameters


def _operation(
    handler: HTTPRouteHandler, method: str, path: str, schemas: _Schemas
) -> dict[str, Any]:
    opt = handler.opt
    if "answer" in opt:
        content = {"application/json": {"schema": schemas.of(opt["answer"])}}
    elif opt.get("stream"):
        content = {"text/event-stream": {"schema": {"type": "string"}}}
    else:
        content = {opt.get("text", "text/plain"): {"schema": {"type": "string"}}}
    problem = {"application/problem+json": {"schema": schemas.of(Problem)}}
    operation: dict[str, Any] = {
        "operationId": handler.handler_name,
        "summary": (handler.fn.__doc__ or handler.handler_name).strip().splitlines()[0],
        "parameters": _parameters(handler, method, path),
        "responses": {
            str(opt.get("status", 200)): {"description": "success", "content": content},
            "4XX": {"description": "problem details", "content": problem},
            "5XX": {"description": "problem details", "content": problem},
        },
    }
    if "body" in opt:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schemas.of(opt["body"])}},
        }
    return operation


def openapi_document(app: Litestar) -> bytes:
    """Every route of the app, with the JSON Schemas msgspec derives from the wire types."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if not isinstance(handler, HTTPRouteHandler):
                continue
            for path in handler.paths:
                # Litestar's automatic OPTIONS answers are not part of the API.
                for method in sorted(handler.http_methods - {"OPTIONS"}):
                    operations = paths.setdefault(_document_path(path), {})
                    operations[method.lower()] = _operation(handler, method, path, schemas)
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Achievements sidecar", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas.resolve()},
    }
    return msgspec.json.encode(document)
