"""Progress commands: decoded request bodies checked into commands, and their execution.

The checking runs on the event loop before a command reaches the writer; `execute` runs on the
writer's thread inside the transaction. The single endpoints and batch items share both.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

import msgspec

from sidecar import store
from sidecar.errors import ApiError, validation_error
from sidecar.models import (
    AchievementRef,
    Apply,
    ApplyItem,
    Batch,
    BatchItem,
    BatchResults,
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


def achievement_of(body: AchievementRef) -> store.AchievementRef:
    """Exactly one of achievementId and achievementKey."""
    if (body.achievement_id is None) == (body.achievement_key is None):
        raise validation_error("achievementId", "give exactly one of achievementId, achievementKey")
    if body.achievement_id is not None:
        return body.achievement_id
    assert body.achievement_key is not None
    return body.achievement_key


def command_of(body: Upsert | Unlock | Apply | DeleteItem) -> Command:
    achievement = achievement_of(body)
    match body:
        case Upsert():
            return UpsertCommand(body.user_id, achievement, metadata_text(body.metadata))
        case Apply():
            ops = parse_ops(body.ops)
            return ApplyCommand(body.user_id, achievement, ops, parse_conditions(body.unlock_when))
        case Unlock():
            return UnlockCommand(body.user_id, achievement)
        case DeleteItem():
            return DeleteCommand(body.user_id, achievement)


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
_encode = msgspec.json.Encoder().encode


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


def execute_batch(connection: sqlite3.Connection, batch: BatchCommand) -> BatchResults:
    """All items in order, in the caller's transaction: the first failure undoes everything."""
    results = []
    for index, command in enumerate(batch.commands):
        try:
            results.append(msgspec.Raw(_encode(execute(connection, command))))
        except ApiError as error:
            raise _with_index(error, index) from None
    if batch.invalid is not None:
        raise batch.invalid
    return BatchResults(results)
