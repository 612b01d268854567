"""HTML pages for people: a user's profile and the overview. Read-only, behind the same gate."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response.base import ASGIResponse

from sidecar import pages, store
from sidecar.errors import ApiError
from sidecar.routes.common import service_of
from sidecar.validation import parse_id

HTML = "text/html"  # ASGIResponse adds "; charset=utf-8"
LEADERBOARD_SIZE = 10


def _html(body: bytes) -> ASGIResponse:
    return ASGIResponse(body=body, media_type=HTML, headers=pages.HEADERS)


# The pages are for people, not API operations: left out of the OpenAPI document.
@get("/", include_in_schema=False)
async def index_page(request: Request[Any, Any, Any]) -> ASGIResponse:
    """HTML overview: every achievement with its rarity, and the leaderboard."""
    readers = service_of(request).readers
    definitions = await store.list_achievements(readers)
    stats = await store.achievement_stats(readers)
    board = await readers.read(store.leaderboard, LEADERBOARD_SIZE, 0)
    return _html(pages.render_index(definitions, stats, board))


@get("/users/{userId:str}/profile", include_in_schema=False)
async def profile_page(request: Request[Any, Any, Any]) -> ASGIResponse:
    """HTML profile of a user: unlocked badges with dates, progress bars, rarity."""
    user = parse_id(request.path_params["userId"], "userId")
    readers = service_of(request).readers
    definitions = await store.list_achievements(readers)
    progress = await readers.read(store.list_progress, user, False)
    stats = await store.achievement_stats(readers)
    try:
        entry = await readers.read(store.leaderboard_entry, user)
    except ApiError:  # no unlock yet: not on the leaderboard
        entry = None
    return _html(pages.render_profile(user, definitions, progress, stats, entry))


PAGE_ROUTES = [index_page, profile_page]
