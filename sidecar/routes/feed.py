"""The unlock feed: by cursor, and live as Server-Sent Events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from litestar import Request, Response, get
from litestar.response import Stream
from litestar.response.base import ASGIResponse

from sidecar import idforms, store
from sidecar.errors import TITLES, Problem, problem_response, validation_error
from sidecar.feed import PAGE, TooManyStreams
from sidecar.models import Event
from sidecar.routes.common import answer, service_of
from sidecar.service import Service
from sidecar.validation import ascii_digits, parse_bounded_int

MAX_CURSOR = 2**63 - 1
KEEP_ALIVE_SECONDS = 15.0
# What a client refused for the stream cap is asked to wait before it tries again.
RETRY_AFTER_SECONDS = 5
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
    cursor = ascii_digits(last)
    if cursor is None or cursor > MAX_CURSOR:
        raise validation_error("Last-Event-ID", "must be an event id")
    return cursor


def _frame(event: Event, strings: bool) -> bytes:
    return b"id: %d\ndata: %s\n\n" % (event.id, idforms.encode(event, strings))


async def _frames(service: Service, after: int, strings: bool) -> AsyncIterator[bytes]:
    """What is in the file after `after`, then the events the shared reader hands over."""
    feed = service.feed
    try:
        subscription = await feed.subscribe()
    except TooManyStreams:
        return  # others got in since the handler's check; the client retries
    try:
        yield b": connected\n\n"
        # Subscribed first, then read: an event committed meanwhile comes from the file, from the
        # subscription, or from both (the cursor drops the second copy), never from neither.
        cursor = after
        while True:
            page = await store.events_after(service.readers, cursor, PAGE)
            for event in page:
                yield _frame(event, strings)
            cursor = page[-1].id if page else cursor
            if len(page) < PAGE:
                break
        while (batch := await subscription.next(KEEP_ALIVE_SECONDS)) is not None:
            if not batch:
                yield b": keep-alive\n\n"
            for event in batch:
                if event.id > cursor:
                    yield _frame(event, strings)
                    cursor = event.id
    finally:
        feed.unsubscribe(subscription)


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
async def stream_events(request: Request[Any, Any, Any]) -> Stream | Response[bytes]:
    """Stream unlock events live (Server-Sent Events), resuming after a cursor.

    Each event's `id:` is its id; a reconnect with `Last-Event-ID` (or `after`) loses
    nothing in between. Open streams are capped (SIDECAR_MAX_STREAMS).
    """
    after = _resume_point(request)
    service = service_of(request)
    if service.feed.open_streams >= service.feed.max_streams:
        detail = f"{service.feed.max_streams} event streams are open (SIDECAR_MAX_STREAMS)"
        problem = Problem(503, "TOO_MANY_STREAMS", TITLES["TOO_MANY_STREAMS"], detail)
        return problem_response(problem, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    strings, id_headers = idforms.id_form(request, Event)
    return Stream(
        _frames(service, after, strings),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(id_headers or {})},
    )


FEED_ROUTES = [list_events, stream_events]
