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


@post(BASE, opt={"body": Upsert, "answer": UserAchievement})
async def upsert_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    body = await body_of(request, _upsert)
    return await _run(request, commands.command_of(body))


@get(BASE, opt={"query": ROW_QUERY, "answer": UserAchievement | None})
async def get_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    user, achievement = user_param(request), achievement_param(request)
    return answer(request, store.get_progress(service_of(request).readers, user, achievement))


@get(f"{BASE}/list", opt={"query": ("userId", "unlockedOnly"), "answer": list[UserAchievement]})
async def list_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    user = user_param(request)
    unlocked_only = parse_bool(request.query_params, "unlockedOnly")
    return answer(request, store.list_progress(service_of(request).readers, user, unlocked_only))


@put(UNLOCK, opt={"body": Unlock, "answer": UserAchievementChange})
async def unlock_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    body = await body_of(request, _unlock)
    return await _run(request, commands.command_of(body))


@delete(BASE, status_code=200, opt={"query": ROW_QUERY, "answer": UserAchievement})
async def delete_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    command = commands.DeleteCommand(user_param(request), achievement_param(request))
    return await _run(request, command)


@post(APPLY, opt={"body": Apply, "answer": UserAchievementChange})
async def apply_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
    body = await body_of(request, _apply)
    return await _run(request, commands.command_of(body))


@post(f"{BASE}/batch", opt={"body": Batch, "answer": BatchAnswer})
async def batch_progress(request: Request[Any, Any, Any]) -> ASGIResponse:
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
