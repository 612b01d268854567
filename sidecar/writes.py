"""The write path of every POST, PUT and DELETE: run on the writer, honour Idempotency-Key.

A successful answer is stored with its key in the same transaction as the write, so a replay
(same key, same method, path, query and body) gets the stored answer back and applies nothing,
also after a crash: the write runs first and the key is stored after it (one statement for a new
key); a key found taken rolls the write back. Keys are kept `idempotency_ttl_seconds` (an older
one is a new key, whether the purge has removed it yet or not); past
`idempotency_budget_bytes` of stored answers the oldest go first. A repeat that arrives while
the first is in flight queues behind it on the single writer, and so finds the stored answer.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.response.base import ASGIResponse

from sidecar import idforms, store
from sidecar.db import Writer
from sidecar.errors import ApiError
from sidecar.settings import Settings
from sidecar.validation import idempotency_key

JSON = "application/json"

# A write: runs on the writer's connection, returns the status and the answer to encode.
Job = Callable[[sqlite3.Connection], tuple[int, msgspec.Struct]]
Run = Callable[[sqlite3.Connection], tuple[int, bytes, bool]]

_encode = msgspec.json.Encoder().encode


def fingerprint(method: str, path: str, query: str, body: bytes) -> bytes:
    """What a replay must repeat: the method, path, query and body (the fast path computes it
    from the ASGI scope, Litestar from its Request: the same parts, so the same bytes)."""
    digest = hashlib.sha256()
    for part in (method, path, query):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    digest.update(body)
    return digest.digest()


def _plain(job: Job) -> Run:
    def run(connection: sqlite3.Connection) -> tuple[int, bytes, bool]:
        status, answer = job(connection)
        return status, _encode(answer), False

    return run


class _Stored(Exception):
    """The answer stored under the key, raised on the writer so that the write it ran is rolled
    back with its savepoint; `write_with_key` gives it back as the replay."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(status)
        self.status, self.body = status, body


def _idempotent(job: Job, key: str, request_print: bytes, settings: Settings) -> Run:
    """The write, then its answer stored under `key`: beside the write, a new key (nearly every
    one) costs the one statement that stores it. Only a key found taken is read, and then the
    write already run is undone by raising (the stored answer, or IDEMPOTENCY_KEY_REUSED)."""
    budget, ttl = settings.idempotency_budget_bytes, settings.idempotency_ttl_seconds

    def raise_stored(connection: sqlite3.Connection) -> None:
        """Raise the answer stored under the key; return if there is none (or it expired)."""
        stored = store.stored_response(connection, key, store.timestamp_before(ttl))
        if stored is None:
            return
        if stored[0] != request_print:
            raise ApiError(
                422,
                "IDEMPOTENCY_KEY_REUSED",
                f"Idempotency-Key {key!r} was used for a different request",
            )
        raise _Stored(int(stored[1]), bytes(stored[2]))

    def run(connection: sqlite3.Connection) -> tuple[int, bytes, bool]:
        store.claim_key(connection, key)
        try:
            status, answer = job(connection)
        except ApiError:
            raise_stored(connection)  # a repeat gets its first answer, whatever it meets now
            raise
        body = _encode(answer)
        if not store.store_response(connection, key, request_print, (status, body), budget, ttl):
            raise_stored(connection)  # returns only for a key past its TTL, deleted now
            store.store_response(connection, key, request_print, (status, body), budget, ttl)
        return status, body, False

    return run


def _response(
    request: Request[Any, Any, Any], status: int, body: bytes, replayed: bool
) -> ASGIResponse:
    """The answer, encoded (and stored) with integer ids, in the id form this request asks for:
    a replay comes back in the form of the retry, whatever the first request asked."""
    kind = request.route_handler.opt["answer"]
    strings, id_headers = idforms.id_form(request, kind)
    headers = dict(id_headers or {})
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if strings:
        body = idforms.restring(kind, body)
    return ASGIResponse(body=body, status_code=status, media_type=JSON, headers=headers or None)


async def write(request: Request[Any, Any, Any], writer: Writer, job: Job) -> ASGIResponse:
    """Run `job` on the writer and answer with its encoded result (or the stored replay)."""
    key = idempotency_key(request.headers)
    if key is None:
        return _response(request, *await write_without_key(writer, job), replayed=False)
    settings = request.app.state.service.settings
    url = request.url
    request_print = fingerprint(request.method, url.path, url.query or "", await request.body())
    return _response(request, *await write_with_key(writer, job, key, request_print, settings))


async def write_with_key(
    writer: Writer, job: Job, key: str, request_print: bytes, settings: Settings
) -> tuple[int, bytes, bool]:
    """The status, encoded answer and whether it is a replay, of `job` under `key`: the key
    claimed and the answer stored in the write's own transaction (or the stored one given
    back). Both the Litestar handlers and the fast path write through here."""
    try:
        return await writer.run(_idempotent(job, key, request_print, settings))
    except _Stored as stored:
        return stored.status, stored.body, True


async def write_without_key(writer: Writer, job: Job) -> tuple[int, bytes]:
    """The status and encoded answer of `job`, for a request that carries no Idempotency-Key."""
    status, body, _ = await writer.run(_plain(job))
    return status, body
