"""Achievement definitions: CRUD by id, and create-or-replace by key."""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.response.base import ASGIResponse

from sidecar import store
from sidecar.errors import validation_error
from sidecar.models import (
    ABSENT,
    Achievement,
    CreateDefinition,
    ReplaceDefinition,
    UpdateDefinition,
)
from sidecar.routes.common import answer, body_of, key_param, service_of
from sidecar.validation import metadata_text, parse_id
from sidecar.writes import write

BASE = "/users/achievements/definitions"

_create = msgspec.json.Decoder(CreateDefinition, strict=True)
_update = msgspec.json.Decoder(UpdateDefinition, strict=True)
_replace = msgspec.json.Decoder(ReplaceDefinition, strict=True)
_NOT_FOUND = ("ACHIEVEMENT_NOT_FOUND",)


@post(
    BASE,
    opt={
        "body": CreateDefinition,
        "answer": Achievement,
        "status": {201: "Created."},
        "errors": ("KEY_CONFLICT",),
        "example": {
            "name": "Chatterbox",
            "description": "Send 100 messages",
            "key": "messages-100",
            "metadata": {"points": 10, "target": 100},
        },
    },
)
async def create_definition(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Create an achievement definition."""
    body = await body_of(request, _create)
    metadata = metadata_text(body.metadata)
    return await write(
        request,
        service_of(request).writer,
        lambda connection: (
            201,
            store.create_achievement(connection, body.name, body.description, body.key, metadata),
        ),
    )


@get(BASE, opt={"answer": list[Achievement]})
async def list_definitions(request: Request[Any, Any, Any]) -> ASGIResponse:
    """List every definition, by name (case-insensitive), then id."""
    return answer(request, await store.list_achievements(service_of(request).readers))


@get(f"{BASE}/{{id:str}}", opt={"answer": Achievement, "errors": _NOT_FOUND})
async def get_definition(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Get a definition by id."""
    achievement = parse_id(request.path_params["id"], "id")
    return answer(request, store.get_achievement(service_of(request).readers, achievement))


@put(
    f"{BASE}/{{id:str}}",
    opt={
        "body": UpdateDefinition,
        "answer": Achievement,
        "errors": (*_NOT_FOUND, "KEY_CONFLICT"),
        "example": {"description": "Send 100 messages in the server"},
    },
)
async def update_definition(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Update a definition by id: fields left out stay as they are.

    `description: null` clears the description; `updatedAt` moves on every update.
    """
    achievement = parse_id(request.path_params["id"], "id")
    body = await body_of(request, _update)
    changes: dict[str, Any] = {
        name: getattr(body, name)
        for name in ("name", "description", "key")
        if getattr(body, name) is not msgspec.UNSET
    }
    if body.metadata is not ABSENT:
        changes["metadata"] = metadata_text(body.metadata)
    return await write(
        request,
        service_of(request).writer,
        lambda connection: (200, store.update_achievement(connection, achievement, changes)),
    )


@delete(f"{BASE}/{{id:str}}", status_code=200, opt={"answer": Achievement, "errors": _NOT_FOUND})
async def delete_definition(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Delete a definition by id, with every progress row of it; answers what was deleted."""
    achievement = parse_id(request.path_params["id"], "id")
    return await write(
        request,
        service_of(request).writer,
        lambda connection: (200, store.delete_achievement(connection, achievement)),
    )


@put(
    f"{BASE}/by-key/{{key:str}}",
    opt={
        "body": ReplaceDefinition,
        "answer": Achievement,
        "status": {
            201: "Created: no definition held the key.",
            200: "Replaced: the definition holding the key, its id kept.",
        },
        "errors": ("KEY_CONFLICT",),
        "example": {"name": "Chatterbox", "metadata": {"points": 10, "target": 100}},
    },
)
async def upsert_definition_by_key(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Create (201) or replace (200) the definition holding a key.

    Declarative sync: an absent `description` becomes null, an absent `metadata` `{}`.
    """
    key = key_param(request.path_params["key"])
    body = await body_of(request, _replace)
    if body.key is not None and body.key != key:
        raise validation_error("key", f"must be the key of the path, {key!r}")
    metadata = metadata_text(body.metadata)

    def replace(connection: sqlite3.Connection) -> tuple[int, Achievement]:
        if store.find_achievement(connection, key) is None:
            created = store.create_achievement(
                connection, body.name, body.description, key, metadata
            )
            return 201, created
        fields = {"name": body.name, "description": body.description, "metadata": metadata}
        return 200, store.update_achievement(connection, key, fields)

    return await write(request, service_of(request).writer, replace)


@get(f"{BASE}/by-key/{{key:str}}", opt={"answer": Achievement, "errors": _NOT_FOUND})
async def get_definition_by_key(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Get a definition by key."""
    key = key_param(request.path_params["key"])
    return answer(request, store.get_achievement(service_of(request).readers, key))


@delete(
    f"{BASE}/by-key/{{key:str}}", status_code=200, opt={"answer": Achievement, "errors": _NOT_FOUND}
)
async def delete_definition_by_key(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Delete a definition by key, with every progress row of it; answers what was deleted."""
    key = key_param(request.path_params["key"])
    return await write(
        request,
        service_of(request).writer,
        lambda connection: (200, store.delete_achievement(connection, key)),
    )


DEFINITION_ROUTES = [
    create_definition,
    list_definitions,
    get_definition,
    update_definition,
    delete_definition,
    upsert_definition_by_key,
    get_definition_by_key,
    delete_definition_by_key,
]
