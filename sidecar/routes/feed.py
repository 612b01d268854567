"""The unlock feed: by cursor, and live as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, get
from litestar.response import Stream
from litestar.response.base import ASGIResponse

from sidecar import idforms, store
from sidecar.errors import validation_error
from sidecar.models import Event
from sidecar.routes.common import answer, service_of
from sidecar.service import Service
from sidecar.validation import parse_bounded_int

MAX_CURSOR = 2**63 - 1
KEEP_ALIVE_SECONDS = 15.0
STREAM_PAGE = 500
# (default, lowest, highest) of the query parameters.
AFTER = (0, 0, MAX_CURSOR)
LIMIT = (100, 1, 1000)


@get(
    "/users/achievements/events",
    opt={
        "query": ("after", "limit"),
        "bounds": {"after": AFTER, "limit": LIMIT},
        "answer": list[Event],
    },
)
async def list_events(request: Request[Any, Any, Any]) -> ASGIResponse:
    """List unlock events after a cursor, oldest first.

    Every unlock appends one event in its own transaction; ids start at 1 and grow by one,
    none skipped or repeated. Keep the last id you handled and ask `after` it.
    """
    after = parse_bounded_int(request.query_params, "after", *AFTER)
    limit = parse_bounded_int(request.query_params, "limit", *LIMIT)
    return answer(request, await store.events_after(service_of(request).readers, after, limit))


def _resume_point(request: Request[Any, Any, Any]) -> int:
    """Last-Event-ID (what a reconnecting EventSource sends) wins over ?after=."""
    last = request.headers.get("last-event-id")
    if last is None:
        return parse_bounded_int(request.query_params, "after", 0, 0, MAX_CURSOR)
    if not last.isdigit() or int(last) > MAX_CURSOR:
        raise validation_error("Last-Event-ID", "must be an event id")
    return int(last)


async def _frames(service: Service, after: int, strings: bool) -> AsyncIterator[bytes]:
    cursor = after
    yield b": connected\n\n"
    while not service.feed.closing.is_set():
        signal = service.feed.signal()
        batch = await store.events_after(service.readers, cursor, STREAM_PAGE)
        for event in batch:
            yield b"id: %d\ndata: %s\n\n" % (event.id, idforms.encode(event, strings))
        if batch:
            cursor = batch[-1].id
            continue
        await service.feed.wait(signal, KEEP_ALIVE_SECONDS)
        if not signal.is_set():
            yield b": keep-alive\n\n"


# `stream`: the type of each event's `data:`.
@get(
    "/users/achievements/events/stream",
    opt={
        "query": ("after",),
        "bounds": {"after": AFTER},
        "stream": Event,
        "errors": ("TOO_MANY_STREAMS",),
    },
)
async def stream_events(request: Request[Any, Any, Any]) -> Stream:
    """Stream unlock events live (Server-Sent Events), resuming after a cursor.

    Each event's `id:` is its id; a reconnect with `Last-Event-ID` (or `after`) loses
    nothing in between.
    """
    after = _resume_point(request)
    strings, id_headers = idforms.id_form(request, Event)
    return Stream(
        _frames(service_of(request), after, strings),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(id_headers or {})},
    )


FEED_ROUTES = [list_events, stream_events]
