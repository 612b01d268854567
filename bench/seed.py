"""The data the workloads start from, written through the service's own API.

On a fresh file: achievements 1..20; the 10,000 spread rows; UNLOCKED_USERS unlocked on
achievement 1 (the repeated half of the unlock mix); LIST_USER with 20 rows. Returns the answers
of one progress GET and of the list GET, for the bare app to send the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bench import workloads as w
from bench.client import call_ok

BATCH = w.PROGRESS + "/batch"


@dataclass(frozen=True)
class Answers:
    get: bytes
    list: bytes


def _upsert_item(user: int, achievement: int) -> dict[str, Any]:
    body = w.UPSERT_BODY.replace("{{u}}", str(user)).replace("{{a}}", str(achievement))
    return {"type": "upsert", **json.loads(body)}


def _batches(base_url: str, items: list[dict[str, Any]]) -> None:
    for start in range(0, len(items), w.BATCH_ITEMS):
        call_ok(base_url, "POST", BATCH, {"operations": items[start : start + w.BATCH_ITEMS]})


def seed(base_url: str) -> Answers:
    for number in range(1, w.ACHIEVEMENTS + 1):
        created = json.loads(
            call_ok(base_url, "POST", "/users/achievements/definitions", {"name": f"A{number}"})
        )
        if created["id"] != number:
            raise RuntimeError(f"not a fresh file: achievement {number} got id {created['id']}")
    first_user, users = w.SPREAD_USERS
    first_achievement, achievements = w.SPREAD_ACHIEVEMENTS
    spread = [
        _upsert_item(user, achievement)
        for user in range(first_user, first_user + users)
        for achievement in range(first_achievement, first_achievement + achievements)
    ]
    first_unlocked, unlocked = w.UNLOCKED_USERS
    unlocks = [
        {"type": "unlock", "userId": user, "achievementId": 1}
        for user in range(first_unlocked, first_unlocked + unlocked)
    ]
    listed = [_upsert_item(w.LIST_USER, a) for a in range(1, w.ACHIEVEMENTS + 1)]
    _batches(base_url, spread + unlocks + listed)
    return Answers(
        get=call_ok(base_url, "GET", f"{w.PROGRESS}?userId=1&achievementId=1"),
        list=call_ok(base_url, "GET", f"{w.PROGRESS}/list?userId={w.LIST_USER}"),
    )
