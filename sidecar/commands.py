"""Progress commands: decoded request bodies checked into commands, and their execution.

The checking runs on the event loop before a command reaches the writer; `execute` runs on the
writer's thread inside the transaction. The single endpoints and batch items share both.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

import msgspec

from sidecar import store
from sidecar.errors import ApiError, validation_error
from sidecar.models import (
    MAX_ID,
    AchievementRef,
    Apply,
    ApplyItem,
    Batch,
    BatchAnswer,
    BatchItem,
    BatchResult,
    DeleteItem,
    Unlock,
    UnlockItem,
    Upsert,
    UpsertItem,
)
from sidecar.ops import (
    ParsedCondition,
    ParsedOp,
    apply_ops,
    conditions_hold,
    parse_conditions,
    parse_ops,
)
from sidecar.validation import MAX_DEPTH, check_metadata_size, decode, depth_of, metadata_text


@dataclass(frozen=True, slots=True)
class UpsertCommand:
    user_id: int
    achievement: store.AchievementRef
    metadata: str


@dataclass(frozen=True, slots=True)
class UnlockCommand:
    user_id: int
    achievement: store.AchievementRef


@dataclass(frozen=True, slots=True)
class ApplyCommand:
    user_id: int
    achievement: store.AchievementRef
    ops: list[ParsedOp]
    conditions: list[ParsedCondition]

    def change(self, metadata: dict[str, Any]) -> tuple[str, bool]:
        apply_ops(metadata, self.ops)
        text = store.dump_metadata(metadata)
        check_metadata_size(len(text.encode("utf-8")))
        if depth_of(metadata) > MAX_DEPTH:
            raise validation_error("metadata", f"the result is nested deeper than {MAX_DEPTH}")
        return text, conditions_hold(metadata, self.conditions)


@dataclass(frozen=True, slots=True)
class DeleteCommand:
    user_id: int
    achievement: store.AchievementRef


Command = UpsertCommand | UnlockCommand | ApplyCommand | DeleteCommand


_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")


def id_of(value: int | str, field: str) -> int:
    """A body id as an int: a JSON integer (its range checked by the decoder), or the canonical
    decimal string of one (Revision 2): ASCII digits, no sign, no leading zero, 1 .. 2^63-1."""
    if isinstance(value, int):
        return value
    if not _CANONICAL_ID.fullmatch(value) or int(value) > MAX_ID:
        raise validation_error(
            field, f"must be an integer from 1 to {MAX_ID}, or its canonical decimal string"
        )
    return int(value)


def achievement_of(body: AchievementRef) -> store.AchievementRef:
    """Exactly one of achievementId and achievementKey."""
    if (body.achievement_id is None) == (body.achievement_key is None):
        raise validation_error("achievementId", "give exactly one of achievementId, achievementKey")
    if body.achievement_id is not None:
        return id_of(body.achievement_id, "achievementId")
    assert body.achievement_key is not None
    return body.achievement_key


def command_of(body: Upsert | Unlock | Apply | DeleteItem) -> Command:
    user = id_of(body.user_id, "userId")
    achievement = achievement_of(body)
    match body:
        case Upsert():
            return UpsertCommand(user, achievement, metadata_text(body.metadata))
        case Apply():
            ops = parse_ops(body.ops)
            return ApplyCommand(user, achievement, ops, parse_conditions(body.unlock_when))
        case Unlock():
            return UnlockCommand(user, achievement)
        case DeleteItem():
            return DeleteCommand(user, achievement)


def execute(connection: sqlite3.Connection, command: Command) -> msgspec.Struct:
    match command:
        case UpsertCommand():
            return store.upsert_progress(
                connection, command.user_id, command.achievement, command.metadata
            )
        case UnlockCommand():
            return store.unlock_progress(connection, command.user_id, command.achievement)
        case ApplyCommand():
            return store.apply_progress(
                connection, command.user_id, command.achievement, command.change
            )
        case DeleteCommand():
            return store.delete_progress(connection, command.user_id, command.achievement)


# --- batches -----------------------------------------------------------------------------

_item_decoder = msgspec.json.Decoder(UpsertItem | UnlockItem | ApplyItem | DeleteItem, strict=True)


@dataclass(frozen=True, slots=True)
class BatchCommand:
    """The valid items up to the first invalid one, and that one's error (reported in order)."""

    commands: list[Command]
    invalid: ApiError | None


def _with_index(error: ApiError, index: int) -> ApiError:
    error.problem.index = index
    return error


def batch_of(batch: Batch) -> BatchCommand:
    commands: list[Command] = []
    for index, raw in enumerate(batch.operations):
        try:
            item: BatchItem = decode(_item_decoder, bytes(raw))
            commands.append(command_of(item))
        except ApiError as error:
            return BatchCommand(commands, _with_index(error, index))
    return BatchCommand(commands, None)


def execute_batch(connection: sqlite3.Connection, batch: BatchCommand) -> BatchAnswer:
    """All items in order, in the caller's transaction: the first failure undoes everything."""
    results = []
    for index, command in enumerate(batch.commands):
        try:
            # A UserAchievement, or a UserAchievementChange (the same fields and newlyUnlocked).
            row = execute(connection, command)
        except ApiError as error:
            raise _with_index(error, index) from None
        results.append(BatchResult(*msgspec.structs.astuple(row)))
    if batch.invalid is not None:
        raise batch.invalid
    return BatchAnswer(results)
