"""The hottest requests, answered before Litestar's handler pipeline: get progress and list,
the leaderboard page and one user's rank, and the single writes upsert, unlock and apply.

A bot sends these far more often than anything else, and for them Litestar's per-request
machinery (the Request, its parsed query and headers, the handler's call chain) costs more than
the SQLite work itself. Only the plain, valid form of each request is answered here. A read needs
exactly the expected query parameters, each once, with ids written canonically. A write needs
`Content-Type: application/json` exactly, a `Content-Length` within the limit and at most one
valid Idempotency-Key; its body is decoded and checked by the very decoders and commands the
Litestar handlers use. A keyed write goes through the same `writes.write_with_key` as Litestar's
(the key claimed and the answer stored in the write's transaction, the same fingerprint), so its
replays and its IDEMPOTENCY_KEY_REUSED are Litestar's too; both client libraries key every write,
so this is most writes. Anything else (a malformed parameter or body, `achievementKey` in a query,
percent-escapes, another method) goes on to the Litestar app, which owns every validation
answer, so validation lives in one place; a write's body is replayed to it. A write that reached
the writer is never run again: its failure (a 404, a locked database) is answered here with the
problem Litestar's exception handler would send (`errors.problem_of`). So is a read's 404 or
DATABASE_UNAVAILABLE: the handler would run the same read and meet it again, a second round trip
to a PostgreSQL server (and, with the server away, a second wait); any other failure of a read
(SQLite busy for a moment) goes on to Litestar, which tries once more. The answers are the very
bytes the Litestar handlers send (`tests/test_fastpath.py` compares both ways), in the id form
the request asks for (`Prefer: ids=string`, sidecar/idforms.py). List answers are kept until the
database changes (`sidecar/answercache.py`).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Receive, ReceiveMessage, Scope, Send

from sidecar import commands, idforms, store
from sidecar.answercache import AnswerCache
from sidecar.db import DatabaseUnavailable, Readers
from sidecar.errors import PROBLEM_JSON, ApiError, problem_body, problem_of
from sidecar.models import MAX_ID
from sidecar.routes.common import JSON
from sidecar.routes.progress import BASE, COMMAND_ANSWERS, COMMAND_BODIES, job_of
from sidecar.routes.stats import LEADERBOARD, LIMIT, OFFSET, RANK_TEMPLATE
from sidecar.service import Service
from sidecar.validation import ascii_digits, decode, idempotency_key
from sidecar.writes import fingerprint, write_with_key, write_without_key

# A canonical integer: no sign, no leading zero, at most 19 digits (the range is checked after).
_INTEGER = re.compile(rb"0|[1-9][0-9]{0,18}")
_BOOLEANS = {b"true": True, b"false": False}
LIST = f"{BASE}/list"
# The parameter sets each route answers here, each parameter given once.
_GET_PARAMETERS = {frozenset((b"userId", b"achievementId"))}
_LIST_PARAMETERS = {frozenset((b"userId",)), frozenset((b"userId", b"unlockedOnly"))}
_LEADERBOARD_PARAMETERS = {
    frozenset(names) for names in ((), (b"limit",), (b"offset",), (b"limit", b"offset"))
}
_JSON_TYPE = (b"content-type", JSON.encode())
# Every answer given here holds ids: its headers in each id form, as the handlers send them.
_ID_HEADERS = {
    strings: [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    for strings, headers in ((False, idforms.headers(False)), (True, idforms.headers(True)))
}


def _query(raw: bytes, accepted: set[frozenset[bytes]]) -> dict[bytes, bytes] | None:
    """The parameters when their names are one of the `accepted` sets, each once; else None."""
    pairs = [part.split(b"=", 1) for part in raw.split(b"&")] if raw else []
    found = {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
    return found if len(found) == len(pairs) and frozenset(found) in accepted else None


def _integer(text: bytes, low: int, high: int) -> int | None:
    if not _INTEGER.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def _id(text: bytes) -> int | None:
    return _integer(text, 1, MAX_ID)


def _bounded(found: dict[bytes, bytes], name: bytes, bounds: tuple[int, int, int]) -> int | None:
    default, low, high = bounds
    text = found.get(name)
    return default if text is None else _integer(text, low, high)


def _prefers_string_ids(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    values = [value.decode("latin-1") for name, value in headers if name.lower() == b"prefer"]
    return bool(values) and idforms.prefers_string_ids(values)


async def _get(readers: Readers, query: bytes, strings: bool) -> bytes | None:
    found = _query(query, _GET_PARAMETERS)
    if found is None:
        return None
    user, achievement = _id(found[b"userId"]), _id(found[b"achievementId"])
    if user is None or achievement is None:
        return None
    return idforms.encode(await readers.read(store.get_progress, user, achievement), strings)


async def _list(readers: Readers, query: bytes, strings: bool, kept: AnswerCache) -> bytes | None:
    found = _query(query, _LIST_PARAMETERS)
    if found is None:
        return None
    user = _id(found[b"userId"])
    unlocked_only = _BOOLEANS.get(found.get(b"unlockedOnly", b"false"))
    if user is None or unlocked_only is None:
        return None

    async def compute() -> bytes:
        return idforms.encode(await readers.read(store.list_progress, user, unlocked_only), strings)

    return await kept.answer(readers.data_version(), (user, unlocked_only, strings), compute)


async def _leaderboard(readers: Readers, query: bytes, strings: bool) -> bytes | None:
    found = _query(query, _LEADERBOARD_PARAMETERS)
    if found is None:
        return None
    limit, offset = _bounded(found, b"limit", LIMIT), _bounded(found, b"offset", OFFSET)
    if limit is None or offset is None:
        return None
    return idforms.encode(await readers.read(store.leaderboard, limit, offset), strings)


async def _rank(readers: Readers, user_text: str, strings: bool) -> bytes | None:
    user = _id(user_text.encode())
    if user is None:
        return None
    return idforms.encode(await readers.read(store.leaderboard_entry, user), strings)


Headers = list[tuple[bytes, bytes]]
# An answer: status, body, and the headers beside Content-Length.
Answer = tuple[int, bytes, Headers]
_PROBLEM_TYPE = (b"content-type", PROBLEM_JSON.encode())


def _json_headers(strings: bool) -> Headers:
    """The headers of a JSON answer here (each holds ids), as the handlers send them."""
    return [*_ID_HEADERS[strings], _JSON_TYPE]


async def _send(send: Send, status: int, body: bytes, headers: Headers) -> None:
    """What the handlers' ASGIResponse sends, without building one."""
    length = (b"content-length", str(len(body)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*headers, length]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _error_answer(error: Exception) -> Answer:
    """The answer Litestar's exception handler gives to `error`, in the same bytes."""
    problem, extra = problem_of(error)
    headers = [_PROBLEM_TYPE]
    headers += [(name.lower().encode(), value.encode()) for name, value in (extra or {}).items()]
    return problem.status, problem_body(problem), headers


# What a replayed answer carries beside the headers of its id form.
_REPLAYED = (b"idempotent-replayed", b"true")


def _plain_body_length(headers: Iterable[tuple[bytes, bytes]], limit: int) -> int | None:
    """The Content-Length of a plain JSON write within `limit`; None for any other request."""
    content_type = length = None
    for raw_name, value in headers:
        name = raw_name.lower()
        if name == b"content-type":
            content_type = value if content_type is None else b""
        elif name == b"content-length":
            length = value if length is None else b""
        elif name == b"transfer-encoding":  # a chunked body: Litestar's
            return None
    size = None if length is None else ascii_digits(length.decode("latin-1"))
    if content_type != JSON.encode() or size is None:
        return None
    return size if size <= limit else None


def _idempotency_key(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The request's Idempotency-Key (None without one). Raises for one left to Litestar: a key
    its validator refuses (Litestar answers the 422), or two of them."""
    keys = [value for name, value in headers if name.lower() == b"idempotency-key"]
    if len(keys) > 1:
        raise ValueError("more than one Idempotency-Key")
    return idempotency_key({"idempotency-key": keys[0].decode("latin-1")}) if keys else None


def _replaying(messages: list[ReceiveMessage], receive: Receive) -> Receive:
    """`receive` that first gives back the messages already taken from it."""
    pending = deque(messages)

    async def replay() -> ReceiveMessage:
        return pending.popleft() if pending else await receive()

    return replay


class FastPath:
    """ASGI wrapper: answers the plain reads and writes itself, passes on the rest."""

    def __init__(self, app: ASGIApp, service: Service, max_body_bytes: int) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self._routes: dict[str, Callable[[Readers, bytes, bool], Awaitable[bytes | None]]] = {
            BASE: _get,
            LIST: partial(_list, kept=AnswerCache()),
            LEADERBOARD: _leaderboard,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP:
            template = scope["path"]
            strings = _prefers_string_ids(scope["headers"])
            answer: Answer | None
            if scope["method"] == "GET":
                answer, template = await self._read(scope, strings)
            else:
                answer, receive = await self._write(scope, receive, strings)
            if answer is not None:
                scope["path_template"] = template  # the metrics' route label, as Litestar's
                await _send(send, *answer)
                return
        await self.app(scope, receive, send)

    async def _read(self, scope: HTTPScope, strings: bool) -> tuple[Answer | None, str]:
        """The answer to a plain read (None for any other request) and its route's template."""
        path, query = scope["path"], scope["query_string"]
        route = self._routes.get(path)
        parent, _, user = path.rpartition("/")
        template = RANK_TEMPLATE if route is None and parent == LEADERBOARD else path
        try:
            if route is not None:
                body = await route(self.service.readers, query, strings)
            elif template == RANK_TEMPLATE and not query:
                body = await _rank(self.service.readers, user, strings)
            else:
                return None, path
        except (ApiError, DatabaseUnavailable) as error:  # see the module's docstring
            return _error_answer(error), template
        except Exception:
            return None, path  # the Litestar handler tries once more, and answers
        return (None if body is None else (200, body, _json_headers(strings))), template

    async def _write(
        self, scope: HTTPScope, receive: Receive, strings: bool
    ) -> tuple[Answer | None, Receive]:
        """The answer to a plain write, or None and a `receive` that replays what was read."""
        method = scope["method"]
        decoder = COMMAND_BODIES.get((method, scope["path"]))
        if decoder is None:
            return None, receive
        length = _plain_body_length(scope["headers"], self.max_body_bytes)
        if length is None:
            return None, receive
        scope["path_template"] = scope["path"]  # the metrics' label, also if the client hangs up
        messages = await _body_messages(receive)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        try:
            if len(body) != length or messages[-1]["type"] != "http.request":
                raise ValueError("the body was cut short")
            job = job_of(commands.command_of(decode(decoder, body)))
            key = _idempotency_key(scope["headers"])
            # The key, and the request's print from the parts Litestar's `request.url` gives.
            path, query = scope.get("root_path", "") + scope["path"], scope["query_string"]
            keyed = None if key is None else (key, fingerprint(method, path, query.decode(), body))
        except Exception:
            return None, _replaying(messages, receive)
        writer, replayed = self.service.writer, False
        try:
            if keyed is None:
                status, answer = await write_without_key(writer, job)
            else:
                status, answer, replayed = await write_with_key(
                    writer, job, *keyed, self.service.settings
                )
        except Exception as error:  # the write ran (or was refused): never run it twice
            return _error_answer(error), receive
        if strings:  # stored with integer ids: a replay, too, takes the form the retry asks for
            answer = idforms.restring(COMMAND_ANSWERS[(method, scope["path"])], answer)
        headers = _json_headers(strings)
        if replayed:  # where Litestar's response puts it: after the id headers
            headers = [*_ID_HEADERS[strings], _REPLAYED, _JSON_TYPE]
        return (status, answer, headers), receive


async def _body_messages(receive: Receive) -> list[ReceiveMessage]:
    """The messages that carry the request body, up to its last (or a disconnect)."""
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
        messages.append(await receive())
    return messages
