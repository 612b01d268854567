"""Achievements as code: read and write definitions files (JSON or TOML), sync them by key.

A file is `{"achievements": [{key, name, description?, metadata?}, ...]}` in JSON, or the same as
`[[achievements]]` tables in TOML. Import creates or replaces by key in one transaction.
"""

from __future__ import annotations

import contextlib
import decimal
import json
import re
import sqlite3
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import msgspec
import tomli_w

from sidecar import db, postgres, readonly, store
from sidecar.errors import ApiError, validation_error
from sidecar.models import Achievement, ReplaceDefinition
from sidecar.validation import decode, metadata_text

Format = Literal["json", "toml"]
Outcome = Literal["created", "updated", "unchanged"]


class DefinitionsFileError(Exception):
    """A file that cannot be imported; the message names the file and the place."""


def format_of(path: Path) -> Format:
    return "toml" if path.suffix.lower() == ".toml" else "json"


@dataclass(frozen=True)
class Definition:
    """One entry of a file, checked as `PUT .../definitions/by-key/{key}` checks its body."""

    key: str
    name: str
    description: str | None
    metadata: str  # the JSON text to store


class _File(msgspec.Struct, forbid_unknown_fields=True):
    # Each entry kept as its JSON text, for the API's own decoder to check.
    achievements: list[msgspec.Raw]


class _KeyOnly(msgspec.Struct):
    key: Any = None


_file_decoder = msgspec.json.Decoder(_File)
_entry_decoder = msgspec.json.Decoder(ReplaceDefinition, strict=True)
_key_decoder = msgspec.json.Decoder(_KeyOnly)
_encode = msgspec.json.Encoder(decimal_format="number").encode
_BYTE = re.compile(r" \(byte (\d+)\)$")


def read_file(path: Path) -> list[Definition]:
    """Every entry of the file, each through the HTTP API's validators; the first problem is a
    DefinitionsFileError of one line naming the file, the entry and the field."""
    try:
        data = path.read_bytes()
        data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DefinitionsFileError(f"{path}: cannot read: {error}") from None
    entries = _toml_entries(path, data) if format_of(path) == "toml" else _json_entries(path, data)
    definitions: list[Definition] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        definition = _check(path, index, entry)
        if definition.key in seen:
            raise DefinitionsFileError(
                f"{path}: achievements.{index}.key: {definition.key!r} repeats"
            )
        seen.add(definition.key)
        definitions.append(definition)
    return definitions


def _json_entries(path: Path, data: bytes) -> list[bytes]:
    try:
        return [bytes(entry) for entry in _file_decoder.decode(data).achievements]
    except msgspec.DecodeError as error:  # not JSON (NaN is not): name the line
        message = str(error)
        where = _BYTE.search(message)
        if where is None:
            raise DefinitionsFileError(f"{path}: not valid JSON: {message}") from None
        offset = int(where.group(1))
        line = data.count(b"\n", 0, offset) + 1
        column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
        raise DefinitionsFileError(
            f"{path}:{line}:{column}: not valid JSON: {message[: where.start()]}"
        ) from None
    except msgspec.ValidationError as error:
        raise DefinitionsFileError(f"{path}: {error}") from None
    except RecursionError:  # deeper than any entry may be (32 levels), so refused all the same
        raise DefinitionsFileError(f"{path}: nested too deeply") from None


def _toml_entries(path: Path, data: bytes) -> list[bytes]:
    """The entries of a TOML file as JSON text, as a client would send them."""
    try:
        document = tomllib.loads(data.decode("utf-8"), parse_float=_toml_float)
    except ValueError as error:  # TOMLDecodeError, or an integer past int()'s 4,300 digits
        raise DefinitionsFileError(f"{path}: not valid TOML: {error}") from None
    except RecursionError:
        raise DefinitionsFileError(f"{path}: not valid TOML: nested too deeply") from None
    achievements = document.get("achievements")
    if set(document) != {"achievements"} or not isinstance(achievements, list):
        raise DefinitionsFileError(f"{path}: needs [[achievements]] tables and nothing else")
    entries = []
    for index, entry in enumerate(achievements):
        try:
            entries.append(_encode(entry))
        except ValueError:  # nan or inf: TOML has them, JSON and the API do not
            field = _not_finite(entry, f"achievements.{index}")
            raise DefinitionsFileError(
                f"{path}: {_entry_name(index, entry)}: {field}: is nan, inf or out of range"
            ) from None
    return entries


def _toml_float(text: str) -> Decimal:
    try:
        return Decimal(text)  # exact; reads TOML's 1_000.5, +1.5, inf and nan too
    except decimal.InvalidOperation:  # an exponent beyond any decimal
        return Decimal("-Infinity" if text.startswith("-") else "Infinity")


def _not_finite(value: Any, field: str) -> str:
    """The dotted path of the first nan or inf in `value`."""
    stack = [(value, field)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, Decimal) and not item.is_finite():
            return where
        members = (
            item.items()
            if isinstance(item, dict)
            else enumerate(item)
            if isinstance(item, list)
            else ()
        )
        stack.extend((member, f"{where}.{name}") for name, member in reversed(list(members)))
    return field


def _entry_name(index: int, entry: Any) -> str:
    key = entry.get("key") if isinstance(entry, dict) else None
    return f"achievements.{index}" + (f" (key {key!r})" if isinstance(key, str) else "")


def _check(path: Path, index: int, entry: bytes) -> Definition:
    field = f"achievements.{index}"
    try:
        body = decode(_entry_decoder, entry, prefix=field)
        if body.key is None:
            raise validation_error(f"{field}.key", "is required")
        metadata = metadata_text(body.metadata, f"{field}.metadata")
    except ApiError as error:
        try:
            key = _key_decoder.decode(entry).key
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            key = None
        name = _entry_name(index, {"key": key})
        raise DefinitionsFileError(f"{path}: {name}: {error.problem.detail}") from None
    return Definition(body.key, body.name, body.description, metadata)


@dataclass(frozen=True)
class Change:
    outcome: Outcome
    key: str


def _sync(connection: Any, path: Path, definitions: list[Definition]) -> list[Change]:
    changes = []
    for definition in definitions:
        try:
            changes.append(_sync_one(connection, definition))
        except ApiError as error:  # e.g. a name with U+0000, which PostgreSQL cannot store
            detail = error.problem.detail
            raise DefinitionsFileError(f"{path}: key {definition.key!r}: {detail}") from None
    return changes


def _sync_one(connection: Any, definition: Definition) -> Change:
    current = store.find_achievement(connection, definition.key)
    if current is None:
        store.create_achievement(
            connection,
            definition.name,
            definition.description,
            definition.key,
            definition.metadata,
        )
        outcome: Outcome = "created"
    elif (current.name, current.description) == (
        definition.name,
        definition.description,
    ) and json.loads(bytes(current.metadata)) == json.loads(definition.metadata):
        outcome = "unchanged"
    else:
        fields = {
            "name": definition.name,
            "description": definition.description,
            "metadata": definition.metadata,
        }
        store.update_achievement(connection, definition.key, fields)
        outcome = "updated"
    return Change(outcome, definition.key)


def import_file(db_path: str, path: Path, dry_run: bool, report: Any) -> dict[str, int]:
    """Create or replace every definition of the file by key, in one transaction.

    Calls `report(change)` for each definition once the transaction is over (a caller slow to
    take the output must not hold the database); with `dry_run` rolls everything back.
    """
    definitions = read_file(path)
    with _transaction(db_path, commit=not dry_run) as connection:
        changes = _sync(connection, path, definitions)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for change in changes:
        counts[change.outcome] += 1
        report(change)
    return counts


@contextlib.contextmanager
def _transaction(db_path: str, commit: bool) -> Iterator[Any]:
    """A write transaction on the database, created if need be (as the service would): a
    SQLite connection, or the PostgreSQL backend's, which runs the store's SQL as it is.
    Committed at the end when `commit`, else rolled back; rolled back on any error."""
    db.prepare(db_path)
    if postgres.is_url(db_path):
        with postgres.load_offline().connected(db_path) as pg:
            pg.execute("BEGIN")
            yield pg
            pg.execute("COMMIT" if commit else "ROLLBACK")  # an error: closing rolls back
        return
    connection = db.connect(db_path)
    try:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT" if commit else "ROLLBACK")
    finally:
        connection.close()


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
    if postgres.is_url(db_path):
        achievements = postgres.load_offline().read(db_path, store.keyed_achievements)
    else:
        achievements = readonly.read(db_path, lambda c: _keyed_achievements(c, db_path))
    # By key as SQLite orders text (code points), whatever collation a PostgreSQL database has.
    achievements.sort(key=lambda a: (a.key is None, a.key or "", a.id))
    keyed = [_entry(a) for a in achievements if a.key is not None]
    left_out = [a for a in achievements if a.key is None]
    if fmt == "toml":
        try:
            return tomli_w.dumps({"achievements": keyed}), left_out
        except TypeError as error:  # TOML has no null: metadata holding one cannot be written
            raise DefinitionsFileError(f"cannot write TOML: {error}; use --format json") from None
    text = msgspec.json.format(_encode({"achievements": keyed}), indent=2)
    return text.decode("utf-8") + "\n", left_out
