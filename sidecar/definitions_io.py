"""Achievements as code: read and write definitions files (JSON or TOML), sync them by key.

A file is `{"achievements": [{key, name, description?, metadata?}, ...]}` in JSON, or the same as
`[[achievements]]` tables in TOML. Import creates or replaces by key in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec
import tomli_w

from sidecar import db, readonly, store
from sidecar.errors import ApiError
from sidecar.models import Achievement, DefinitionFile, DefinitionFileEntry
from sidecar.validation import check_metadata_size, field_of

Format = Literal["json", "toml"]
Outcome = Literal["created", "updated", "unchanged"]


class DefinitionsFileError(Exception):
    """A file that cannot be imported; the message names the file and the place."""


def format_of(path: Path) -> Format:
    return "toml" if path.suffix.lower() == ".toml" else "json"


def read_file(path: Path) -> list[DefinitionFileEntry]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DefinitionsFileError(f"{path}: cannot read: {error}") from None
    try:
        if format_of(path) == "toml":
            document: Any = tomllib.loads(text)
        else:
            document = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as error:
        raise DefinitionsFileError(
            f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise DefinitionsFileError(f"{path}: not valid TOML: {error}") from None
    try:
        parsed = msgspec.convert(document, DefinitionFile, strict=True)
    except msgspec.ValidationError as error:
        field, message = field_of(error)
        raise DefinitionsFileError(f"{path}: {field}: {message}") from None
    seen: set[str] = set()
    for index, entry in enumerate(parsed.achievements):
        if entry.key in seen:
            raise DefinitionsFileError(f"{path}: achievements.{index}.key: {entry.key!r} repeats")
        seen.add(entry.key)
    return parsed.achievements


_encode = msgspec.json.Encoder(decimal_format="number").encode


def _metadata_text(entry: DefinitionFileEntry, index: int) -> str:
    text = _encode(entry.metadata or {})
    try:
        check_metadata_size(len(text), f"achievements.{index}.metadata")
    except ApiError as error:
        raise DefinitionsFileError(str(error)) from None
    return text.decode("utf-8")


@dataclass(frozen=True)
class Change:
    outcome: Outcome
    key: str


def _sync(connection: sqlite3.Connection, entries: list[DefinitionFileEntry]) -> Iterator[Change]:
    for index, entry in enumerate(entries):
        metadata = _metadata_text(entry, index)
        current = store.find_achievement(connection, entry.key)
        if current is None:
            store.create_achievement(connection, entry.name, entry.description, entry.key, metadata)
            yield Change("created", entry.key)
        elif (current.name, current.description) == (entry.name, entry.description) and json.loads(
            bytes(current.metadata)
        ) == json.loads(metadata):
            yield Change("unchanged", entry.key)
        else:
            fields = {"name": entry.name, "description": entry.description, "metadata": metadata}
            store.update_achievement(connection, entry.key, fields)
            yield Change("updated", entry.key)


def import_file(db_path: str, path: Path, dry_run: bool, report: Any) -> dict[str, int]:
    """Create or replace every definition of the file by key, in one transaction.

    Calls `report(change)` for each definition as it goes; with `dry_run` rolls everything back.
    """
    entries = read_file(path)
    db.prepare(db_path)
    connection = db.connect(db_path)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            for change in _sync(connection, entries):
                counts[change.outcome] += 1
                report(change)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("ROLLBACK" if dry_run else "COMMIT")
    finally:
        connection.close()
    return counts


def _entry(achievement: Achievement) -> dict[str, Any]:
    entry: dict[str, Any] = {"key": achievement.key, "name": achievement.name}
    if achievement.description is not None:
        entry["description"] = achievement.description
    metadata = json.loads(bytes(achievement.metadata), parse_float=Decimal)
    if metadata:
        entry["metadata"] = metadata
    return entry


def _keyed_achievements(connection: sqlite3.Connection, db_path: str) -> list[Achievement]:
    readonly.require_current_schema(connection, db_path)
    return store.keyed_achievements(connection)


def export(db_path: str, fmt: Format) -> tuple[str, list[Achievement]]:
    """The file text for every definition with a key, and the definitions left out (no key)."""
    achievements = readonly.read(db_path, lambda c: _keyed_achievements(c, db_path))
    keyed = [_entry(a) for a in achievements if a.key is not None]
    left_out = [a for a in achievements if a.key is None]
    if fmt == "toml":
        try:
            return tomli_w.dumps({"achievements": keyed}), left_out
        except TypeError as error:  # TOML has no null: metadata holding one cannot be written
            raise DefinitionsFileError(f"cannot write TOML: {error}; use --format json") from None
    text = msgspec.json.format(_encode({"achievements": keyed}), indent=2)
    return text.decode("utf-8") + "\n", left_out
