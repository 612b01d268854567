"""User progress: upsert, get, list, unlock, delete, and the race-free apply and batch."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, delete, get, post, put
from litestar.response.base import ASGIResponse

from sidecar import commands, store
from sidecar.models import (
    Apply,
    Batch,
    BatchAnswer,
    BatchOperations,
    Unlock,
    Upsert,
    UserAchievement,
    UserAchievementChange,
)
from sidecar.routes.common import achievement_param, answer, body_of, service_of, user_param
from sidecar.validation import parse_bool
from sidecar.writes import Job, write

BASE = "/users/achievements/progress"
ROW_QUERY = ("userId", "achievementId", "achievementKey")

UNLOCK = f"{BASE}/unlock"
APPLY = f"{BASE}/apply"

_upsert = msgspec.json.Decoder(Upsert, strict=True)
_unlock = msgspec.json.Decoder(Unlock, strict=True)
_apply = msgspec.json.Decoder(Apply, strict=True)
_batch = msgspec.json.Decoder(Batch, strict=True)


# The single writes whose body is one command, by method and path (the fast path uses it too).
COMMAND_BODIES: dict[tuple[str, str], msgspec.json.Decoder[Any]] = {
    ("POST", BASE): _upsert,
    ("PUT", UNLOCK): _unlock,
    ("POST", APPLY): _apply,
}


def job_of(command: commands.Command) -> Job:
    return lambda connection: (200, commands.execute(connection, command))


async def _run(request: Request[Any, Any, Any], command: commands.Command) -> ASGIResponse:
    return await write(request, service_of(request).writer, job_of(command))


_ACHIEVEMENT = ("ACHIEVEMENT_NOT_FOUND",)
# What a computation on the metadata can fail with.
_OPS = ("NOT_A_NUMBER", "INVALID_PATH", "NUMBER_OUT_OF_RANGE")
_APPLY_EXAMPLE = {
    "userId": "80351110224678912",
    "achievementKey": "messages-100",
    "ops": [
        {"op": "inc", "path": "current", "value": 1},
        {"op": "max", "path": "bestStreak", "value": 5},
        {"op": "set", "path": "lastActivityDate", "value": "2026-11-23"},
    ],
    "unlockWhen": [{"path": "current", "gte": 100}],
}


@post(
    BASE,
    opt={
        "body": Upsert,
        "answer": UserAchievement,
        "errors": _ACHIEVEMENT,
        "example": {"userId": "80351110224678912", "achievementId": 1, "metadata": {"current": 3}},
    },
)
async def upsert_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Create a progress row, or replace its metadata.

    An absent `metadata` is `{}`; `unlockedAt` is never touched.
    """
    body = await body_of(request, _upsert)
    return await _run(request, commands.command_of(body))


@get(BASE, opt={"query": ROW_QUERY, "answer": UserAchievement | None})
async def get_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Get one user's progress on one achievement (`null` when there is none)."""
    user, achievement = user_param(request), achievement_param(request)
    return answer(
        request, await service_of(request).readers.read(store.get_progress, user, achievement)
    )


@get(f"{BASE}/list", opt={"query": ("userId", "unlockedOnly"), "answer": list[UserAchievement]})
async def list_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    """List a user's progress: unlocked rows first (newest first), then locked ones."""
    user = user_param(request)
    unlocked_only = parse_bool(request.query_params, "unlockedOnly")
    readers = service_of(request).readers
    return answer(request, await readers.read(store.list_progress, user, unlocked_only))


@put(
    UNLOCK,
    opt={
        "body": Unlock,
        "answer": UserAchievementChange,
        "errors": _ACHIEVEMENT,
        "example": {"userId": "80351110224678912", "achievementKey": "messages-100"},
    },
)
async def unlock_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Unlock an achievement for a user; idempotent, `newlyUnlocked` says if this call did.

    Creates the row if there is none; a repeated unlock changes nothing.
    """
    body = await body_of(request, _unlock)
    return await _run(request, commands.command_of(body))


@delete(
    BASE,
    status_code=200,
    opt={"query": ROW_QUERY, "answer": UserAchievement, "errors": ("PROGRESS_NOT_FOUND",)},
)
async def delete_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Delete one progress row; answers what was deleted."""
    command = commands.DeleteCommand(user_param(request), achievement_param(request))
    return await _run(request, command)


@post(
    APPLY,
    opt={
        "body": Apply,
        "answer": UserAchievementChange,
        "errors": (*_ACHIEVEMENT, *_OPS),
        "example": _APPLY_EXAMPLE,
    },
)
async def apply_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Apply atomic ops to a row's metadata, unlocking it when every condition holds.

    Ops (`inc`, `max`, `min`, `set`, `remove`) apply in order, all or nothing; concurrent
    calls never lose an update, and exactly one of them answers `newlyUnlocked: true`.
    """
    body = await body_of(request, _apply)
    return await _run(request, commands.command_of(body))


@post(
    f"{BASE}/batch",
    opt={
        # Documented with its items' types; decoded item by item (Batch), to report a bad item
        # with its index after the good ones before it.
        "body": BatchOperations,
        "answer": BatchAnswer,
        "errors": (*_ACHIEVEMENT, "PROGRESS_NOT_FOUND", *_OPS),
        "example": {
            "operations": [
                {"type": "apply", **_APPLY_EXAMPLE},
                {"type": "unlock", "userId": "80351110224678912", "achievementId": 2},
            ]
        },
    },
)
async def batch_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    """Run 1 to 1000 upserts, unlocks, applies and deletes in one transaction.

    All or nothing: the results in order, or the error of the first failing item with its
    `index`.
    """
    batch = commands.batch_of(await body_of(request, _batch))
    return await write(
        request,
        service_of(request).writer,
        lambda connection: (200, commands.execute_batch(connection, batch)),
    )


# The type of each one's answer, for the fast path's ids as strings.
COMMAND_ANSWERS: dict[tuple[str, str], Any] = {
    (method, path): handler.opt["answer"]
    for handler in (upsert_progress, unlock_progress, apply_progress)
    for method in handler.http_methods
    for path in handler.paths
}

PROGRESS_ROUTES = [
    upsert_progress,
    get_progress,
    list_progress,
    unlock_progress,
    delete_progress,
    apply_progress,
    batch_progress,
]
