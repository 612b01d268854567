"""Achievement definitions: CRUD by id, and create-or-replace by key."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.response.base import ASGIResponse
from litestar.response.streaming import ASGIStreamingResponse

from sidecar import idforms, store
from sidecar.db import Readers
from sidecar.errors import validation_error
from sidecar.models import (
    ABSENT,
    Achievement,
    CreateDefinition,
    ReplaceDefinition,
    UpdateDefinition,
)
from sidecar.routes.common import JSON, answer, body_of, key_param, service_of
from sidecar.validation import metadata_text, parse_bounded_int, parse_id
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


# A list answer larger than this is sent in pieces of about this size, each once the client has
# taken the previous one (the server's write buffer is full until then).
PIECE_BYTES = 64 * 1024
# (default, lowest, highest) of the paging parameters; without `limit`, every definition.
LIMIT = (None, 1, 1000)
OFFSET = (0, 0, 2**63 - 1)


class _ListOrder:
    """Every definition in list order, each encoded once, kept until the database changes.

    Shared by all requests of one database version, and sent from here in pieces: 100 clients of
    a 27 MiB list that never read it hold one copy and 100 small write buffers, not 100 copies.
    """

    def __init__(self, strings: bool) -> None:
        self._strings = strings  # the id form of the answers it keeps
        self._version: int | None = None
        self._items: list[bytes] = []
        self._lock = asyncio.Lock()  # concurrent requests after a change wait for one build

    async def items(self, readers: Readers) -> list[bytes]:
        async with self._lock:
            # Taken before the read: a commit during the build only makes the next one rebuild.
            version = await readers.definitions_version()
            if version != self._version:
                definitions = await store.list_achievements(readers)
                self._items = [idforms.encode(d, self._strings) for d in definitions]
                self._version = version
            return self._items


def _list_order(request: Request[Any, Any, Any], strings: bool) -> _ListOrder:
    """The kept list of the app, one per id form."""
    kept: dict[bool, _ListOrder] | None = getattr(request.app.state, "definition_lists", None)
    if kept is None:
        kept = request.app.state.definition_lists = {}
    if strings not in kept:
        kept[strings] = _ListOrder(strings)
    return kept[strings]


async def _pieces(items: list[bytes]) -> AsyncIterator[bytes]:
    """The JSON array of `items`, in pieces of about PIECE_BYTES."""
    piece = bytearray(b"[")
    for index, item in enumerate(items):
        if index:
            piece += b","
        piece += item
        if len(piece) >= PIECE_BYTES:
            yield bytes(piece)
            piece.clear()
    piece += b"]"
    yield bytes(piece)


@get(
    BASE,
    opt={
        "query": ("limit", "offset"),
        "bounds": {"limit": LIMIT, "offset": OFFSET},
        "answer": list[Achievement],
    },
)
async def list_definitions(request: Request[Any, Any, Any]) -> ASGIResponse:
    """List every definition, by name (case-insensitive), then id; `limit` and `offset` page it."""
    query = request.query_params
    limit = parse_bounded_int(query, "limit", 0, *LIMIT[1:]) if "limit" in query else None
    offset = parse_bounded_int(query, "offset", *OFFSET)
    strings, headers = idforms.id_form(request, list[Achievement])
    items = await _list_order(request, strings).items(service_of(request).readers)
    if offset or limit is not None:
        items = items[offset : None if limit is None else offset + limit]
    length = sum(map(len, items)) + max(len(items) - 1, 0) + 2  # the items, commas, brackets
    if length <= PIECE_BYTES:
        body = b"[" + b",".join(items) + b"]"
        return ASGIResponse(body=body, media_type=JSON, headers=headers)
    return ASGIStreamingResponse(
        iterator=_pieces(items), content_length=length, media_type=JSON, headers=headers
    )


@get(f"{BASE}/{{id:str}}", opt={"answer": Achievement, "errors": _NOT_FOUND})
async def get_definition(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Get a definition by id."""
    achievement = parse_id(request.path_params["id"], "id")
    return answer(
        request, await service_of(request).readers.read(store.get_achievement, achievement)
    )


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
    return answer(request, await service_of(request).readers.read(store.get_achievement, key))


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
