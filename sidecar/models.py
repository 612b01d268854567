"""The wire types: msgspec Structs for every answer and every request body (camelCase on the wire).

Stored JSON (metadata) travels as `msgspec.Raw`, so it is never decoded and re-encoded on the way
out: key order and big integers stay exactly as stored. Request bodies are decoded strictly
(`"5"` is not 5) and refuse unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Raw, UnsetType

MAX_ID = 2**63 - 1
Id = Annotated[int, Meta(ge=1, le=MAX_ID)]
# In a body an id may also be its canonical decimal string (Revision 2: a JavaScript number
# cannot hold a snowflake). The pattern also lets through 19 digits above MAX_ID, and msgspec
# matches with re.search (a trailing newline passes `$`): commands.id_of checks it in full.
ID_TEXT_PATTERN = "^[1-9][0-9]{0,18}$"
BodyId = Id | Annotated[str, Meta(pattern=ID_TEXT_PATTERN)]
Name = Annotated[str, Meta(min_length=1, max_length=255)]
Description = Annotated[str, Meta(max_length=10_000)]
# msgspec checks a pattern with re.search, where `$` also matches before a final "\n" ("abc\n"
# passed); `(?!\n)` refuses that, and the pattern means the same in JSON Schema (ECMA-262).
KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$(?!\n)"
Key = Annotated[str, Meta(pattern=KEY_PATTERN)]

# A Raw of no bytes marks a JSON value that was left out (Raw cannot be combined with UNSET).
# Given through default_factory so that the JSON Schema has no (unencodable) Raw default.
ABSENT = Raw(b"")
OPTIONAL_JSON: Raw = msgspec.field(default_factory=lambda: ABSENT)


class Wire(msgspec.Struct, rename="camel"):
    """Answers: camelCase field names."""


class Body(msgspec.Struct, rename="camel", forbid_unknown_fields=True, kw_only=True):
    """Request bodies: camelCase, and an unknown field is an error."""


# --- answers -------------------------------------------------------------------------------


class Achievement(Wire):
    id: int
    key: str | None
    name: str
    description: str | None
    metadata: Raw
    created_at: str
    updated_at: str


class UserAchievement(Wire):
    id: int
    user_id: int
    achievement_id: int
    unlocked_at: str | None
    metadata: Raw
    created_at: str
    updated_at: str


class UserAchievementChange(UserAchievement):
    """Answer of unlock and apply: the row as the request left it, and whether it unlocked it."""

    newly_unlocked: bool


class DeletedUser(Wire):
    user_id: int
    deleted_progress: int


class Event(Wire):
    id: int
    type: str
    user_id: int
    achievement_id: int
    achievement_key: str | None
    unlocked_at: str


class AchievementStats(Wire):
    achievement_id: int
    name: str
    unlocked_count: int
    in_progress_count: int
    unlock_rate: float


class LeaderboardEntry(Wire):
    rank: int
    user_id: int
    unlocked_count: int
    last_unlocked_at: str


class Health(Wire, kw_only=True):
    """By backend: `sqliteVersion`, or `postgresqlVersion` and `databaseUrl` (no password)."""

    status: str
    database: str
    schema_version: int
    sqlite_version: str | UnsetType = UNSET
    postgresql_version: str | UnsetType = UNSET
    database_url: str | UnsetType = UNSET
    version: str


class BatchResult(UserAchievement):
    """One batch item's answer: what its single endpoint answers (`newlyUnlocked` for unlock and
    apply items only)."""

    newly_unlocked: bool | UnsetType = UNSET


class BatchAnswer(Wire):
    results: list[BatchResult]


class BatchResults(Wire):
    """The client's view of a BatchAnswer: each result decoded by its item's type."""

    results: list[Raw]


# --- request bodies ------------------------------------------------------------------------


class CreateDefinition(Body):
    name: Name
    description: Description | None = None
    key: Key | None = None
    metadata: Raw = OPTIONAL_JSON


class UpdateDefinition(Body):
    """PUT by id: a field left out stays as it is."""

    name: Name | UnsetType = UNSET
    description: Description | UnsetType | None = UNSET
    key: Key | UnsetType | None = UNSET
    metadata: Raw = OPTIONAL_JSON


class ReplaceDefinition(Body):
    """PUT by key: declarative sync, a field left out takes its default."""

    name: Name
    description: Description | None = None
    metadata: Raw = OPTIONAL_JSON
    # Optional, so that a whole definition can be sent back as it was read; must match the path.
    key: Key | None = None


class AchievementRef(Body):
    """`achievementId` or `achievementKey`: exactly one of them (checked after decoding)."""

    user_id: BodyId
    achievement_id: BodyId | None = None
    achievement_key: Key | None = None


class Upsert(AchievementRef):
    metadata: Raw = OPTIONAL_JSON


class Unlock(AchievementRef):
    pass


class ProgressOp(Body):
    op: Literal["inc", "max", "min", "set", "remove"]
    path: str
    value: Raw = OPTIONAL_JSON


class Condition(Body):
    path: str
    gte: Raw = OPTIONAL_JSON
    gt: Raw = OPTIONAL_JSON
    lte: Raw = OPTIONAL_JSON
    lt: Raw = OPTIONAL_JSON
    eq: Raw = OPTIONAL_JSON


class Apply(AchievementRef, kw_only=True):
    ops: Annotated[list[ProgressOp], Meta(max_length=100)]
    unlock_when: list[Condition] | None = None


class Batch(Body):
    operations: Annotated[list[Raw], Meta(min_length=1, max_length=1000)]


class UpsertItem(Upsert, tag="upsert", tag_field="type"):
    pass


class UnlockItem(Unlock, tag="unlock", tag_field="type"):
    pass


class ApplyItem(Apply, tag="apply", tag_field="type"):
    pass


class DeleteItem(AchievementRef, tag="delete", tag_field="type"):
    pass


BatchItem = UpsertItem | UnlockItem | ApplyItem | DeleteItem


class BatchOperations(Body):
    """A Batch as the OpenAPI document describes it: each item one of the four, by `type`."""

    operations: Annotated[list[BatchItem], Meta(min_length=1, max_length=1000)]
