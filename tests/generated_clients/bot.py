"""A bot's calls through the client that openapi-python-client generates from the live document
(run by tests/test_generated_clients.py, next to the generated package `sidecar_api`, after
`mypy --strict` on both): create by key (201), upsert, apply `inc` with `unlockWhen`, get, list,
unlock twice, the events feed, stats, the leaderboard, delete a user, a 404 read as a problem.
The users are Discord-sized ids that must come back exactly. Any failure is an AssertionError.

Usage: SIDECAR_URL=http://127.0.0.1:8787 python bot.py
"""

from __future__ import annotations

import os
import uuid

from sidecar_api import Client
from sidecar_api.api.definitions import get_definition, upsert_definition_by_key
from sidecar_api.api.feed import list_events
from sidecar_api.api.progress import (
    apply_progress,
    get_progress,
    list_progress,
    unlock_progress,
    upsert_progress,
)
from sidecar_api.api.stats import get_leaderboard, list_achievement_stats
from sidecar_api.api.users import delete_user
from sidecar_api.models import (
    Achievement,
    AchievementStats,
    Apply,
    Condition,
    DeletedUser,
    Event,
    LeaderboardEntry,
    Problem,
    ProgressOp,
    ProgressOpOp,
    ReplaceDefinition,
    ReplaceDefinitionMetadata,
    Unlock,
    Upsert,
    UpsertMetadata,
    UserAchievement,
    UserAchievementChange,
)

USERS = (80351110224678912, 9223372036854775807)  # above 2^53; 2^63 - 1


def main() -> None:
    client = Client(base_url=os.environ["SIDECAR_URL"], raise_on_unexpected_status=True)
    key = f"worker-{uuid.uuid4().hex[:8]}"
    body = ReplaceDefinition(
        name="Worker I", metadata=ReplaceDefinitionMetadata.from_dict({"target": 2})
    )
    created = upsert_definition_by_key.sync_detailed(key, client=client, body=body)
    assert created.status_code == 201, created
    assert isinstance(created.parsed, Achievement) and created.parsed.key == key
    replaced = upsert_definition_by_key.sync_detailed(key, client=client, body=body)
    assert replaced.status_code == 200 and isinstance(replaced.parsed, Achievement)
    achievement_id = created.parsed.id

    for user in USERS:
        current = UpsertMetadata.from_dict({"current": 1})
        upsert = Upsert(user_id=user, achievement_key=key, metadata=current)
        row = upsert_progress.sync(client=client, body=upsert)
        assert isinstance(row, UserAchievement) and row.user_id == user, row

        ops = [ProgressOp(op=ProgressOpOp.INC, path="current", value=1)]
        when = [Condition(path="current", gte=2)]
        change = apply_progress.sync(
            client=client,
            body=Apply(user_id=user, achievement_id=achievement_id, ops=ops, unlock_when=when),
        )
        assert isinstance(change, UserAchievementChange) and change.newly_unlocked, change
        assert change.user_id == user

        got = get_progress.sync(client=client, user_id=user, achievement_id=achievement_id)
        assert isinstance(got, UserAchievement) and got.user_id == user, got
        listed = list_progress.sync(client=client, user_id=user)
        assert isinstance(listed, list) and [r.user_id for r in listed] == [user], listed

        again = unlock_progress.sync(
            client=client, body=Unlock(user_id=user, achievement_id=achievement_id)
        )
        assert isinstance(again, UserAchievementChange) and not again.newly_unlocked, again

    feed = list_events.sync(client=client, after=0, limit=1000)
    assert isinstance(feed, list)
    mine = [e for e in feed if isinstance(e, Event) and e.achievement_id == achievement_id]
    assert [e.user_id for e in mine] == list(USERS), mine

    rows = list_achievement_stats.sync(client=client)
    assert isinstance(rows, list)
    counts = [
        s.unlocked_count
        for s in rows
        if isinstance(s, AchievementStats) and s.achievement_id == achievement_id
    ]
    assert counts == [2], rows
    board = get_leaderboard.sync(client=client, limit=100)
    assert isinstance(board, list)
    assert set(USERS) <= {e.user_id for e in board if isinstance(e, LeaderboardEntry)}, board

    for user in USERS:
        deleted = delete_user.sync(user, client=client)
        assert isinstance(deleted, DeletedUser) and deleted.user_id == user, deleted

    missing = get_definition.sync_detailed(2**62, client=client)
    assert missing.status_code == 404 and isinstance(missing.parsed, Problem), missing
    assert missing.parsed.code == "ACHIEVEMENT_NOT_FOUND", missing.parsed


if __name__ == "__main__":
    main()
