"""The two hottest reads, answered before Litestar's handler pipeline: get progress and list.

A bot reads progress far more often than anything else, and for these small reads Litestar's
per-request machinery (the Request, its parsed query, the handler's call chain) costs more than
the SQLite read itself. Only the plain, valid form of each request is answered here: exactly the
expected query parameters, each once, with ids written canonically. Anything else (a missing or
malformed parameter, `achievementKey`, percent-escapes, another method) goes on to the Litestar
app, which owns every error answer, so validation lives in one place. The answers are the very
bytes the Litestar handlers send (`tests/test_fastpath.py` compares both ways).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from litestar.enums import ScopeType
from litestar.response.base import ASGIResponse
from litestar.types import ASGIApp, Receive, Scope, Send

from sidecar import store
from sidecar.db import Readers
from sidecar.models import MAX_ID
from sidecar.routes.common import answer
from sidecar.routes.progress import BASE

# A canonical id: no sign, no leading zero, at most 19 digits (the range is checked after).
_ID = re.compile(rb"[1-9][0-9]{0,18}")
_BOOLEANS = {b"true": True, b"false": False}
LIST = f"{BASE}/list"
# The parameter sets each route answers here, each parameter given once.
_GET_PARAMETERS = {frozenset((b"userId", b"achievementId"))}
_LIST_PARAMETERS = {frozenset((b"userId",)), frozenset((b"userId", b"unlockedOnly"))}


def _query(raw: bytes, accepted: set[frozenset[bytes]]) -> dict[bytes, bytes] | None:
    """The parameters when their names are one of the `accepted` sets, each once; else None."""
    pairs = [part.split(b"=", 1) for part in raw.split(b"&")] if raw else []
    found = {pair[0]: pair[1] for pair in pairs if len(pair) == 2}
    return found if len(found) == len(pairs) and frozenset(found) in accepted else None


def _id(text: bytes) -> int | None:
    if not _ID.fullmatch(text):
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def _get(readers: Readers, query: bytes) -> ASGIResponse | None:
    found = _query(query, _GET_PARAMETERS)
    if found is None:
        return None
    user, achievement = _id(found[b"userId"]), _id(found[b"achievementId"])
    if user is None or achievement is None:
        return None
    return answer(store.get_progress(readers, user, achievement))


def _list(readers: Readers, query: bytes) -> ASGIResponse | None:
    found = _query(query, _LIST_PARAMETERS)
    if found is None:
        return None
    user = _id(found[b"userId"])
    unlocked_only = _BOOLEANS.get(found.get(b"unlockedOnly", b"false"))
    if user is None or unlocked_only is None:
        return None
    return answer(store.list_progress(readers, user, unlocked_only))


_ROUTES: dict[str, Callable[[Readers, bytes], ASGIResponse | None]] = {BASE: _get, LIST: _list}


class FastReads:
    """ASGI wrapper: answers the plain get and list requests itself, passes on the rest."""

    def __init__(self, app: ASGIApp, readers: Callable[[], Readers]) -> None:
        self.app = app
        self.readers = readers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] == "GET":
            route = _ROUTES.get(scope["path"])
            try:
                response = route(self.readers(), scope["query_string"]) if route else None
            except Exception:
                response = None  # the Litestar handler answers it, with its error if it fails too
            if response is not None:
                scope["path_template"] = scope["path"]  # the metrics' route label, as Litestar's
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
