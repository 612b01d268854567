"""Rarity per achievement and the leaderboard, from trigger-kept counters (no scans)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response.base import ASGIResponse

from sidecar import store
from sidecar.models import AchievementStats, LeaderboardEntry
from sidecar.routes.common import answer, service_of
from sidecar.validation import parse_bounded_int, parse_id

LEADERBOARD = "/users/achievements/leaderboard"
RANK_TEMPLATE = f"{LEADERBOARD}/{{userId}}"
# (default, lowest, highest) of the leaderboard's query parameters.
LIMIT = (10, 1, 100)
OFFSET = (0, 0, 2**62)


@get("/users/achievements/stats", opt={"answer": list[AchievementStats]})
async def list_achievement_stats(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Rarity of each achievement: unlocks, rows in progress, and the unlock rate, by id."""
    return answer(request, await store.achievement_stats(service_of(request).readers))


@get(
    LEADERBOARD,
    opt={
        "query": ("limit", "offset"),
        "bounds": {"limit": LIMIT, "offset": OFFSET},
        "answer": list[LeaderboardEntry],
    },
)
async def get_leaderboard(request: Request[Any, Any, Any]) -> ASGIResponse:
    """A page of the leaderboard: most unlocks first, then who reached that count first.

    Users with no unlock are not listed.
    """
    limit = parse_bounded_int(request.query_params, "limit", *LIMIT)
    offset = parse_bounded_int(request.query_params, "offset", *OFFSET)
    return answer(request, await service_of(request).readers.read(store.leaderboard, limit, offset))


@get(
    f"{LEADERBOARD}/{{userId:str}}",
    opt={"answer": LeaderboardEntry, "errors": ("USER_NOT_FOUND",)},
)
async def get_leaderboard_entry(request: Request[Any, Any, Any]) -> ASGIResponse:
    """One user's rank on the leaderboard."""
    user = parse_id(request.path_params["userId"], "userId")
    return answer(request, await service_of(request).readers.read(store.leaderboard_entry, user))


STATS_ROUTES = [list_achievement_stats, get_leaderboard, get_leaderboard_entry]
