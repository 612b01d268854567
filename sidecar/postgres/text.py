"""Text with U+0000 on PostgreSQL: stored escaped, given back exactly.

SQLite stores any string; PostgreSQL's `text` cannot hold U+0000 (NUL), and a client may put
one in a definition's name or description (JSON's `\\u0000`). So the backend's connections
escape every string they send and unescape every `text` they receive, in psycopg's adaptation
layer: one place, which no statement of the store can bypass, and SQLite never runs it.

The escape is U+0001: U+0001 is stored as U+0001 U+0001 and U+0000 as U+0001 U+0002; any other
string (every key, timestamp and metadata text: JSON text holds control characters only as
escapes) is stored as it is. The mapping is one-to-one, so equality (`WHERE key = ?`, unique
keys) means on stored strings what it means on the originals. A name of 255 NULs takes 510
bytes, within the schema's 4-bytes-per-character bound.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg.abc import Buffer
from psycopg.types.string import StrDumperUnknown, TextLoader

ESCAPE = "\x01"
_ESCAPED = re.compile("\x01[\x01\x02]")
_ORIGINAL = {"\x01\x01": "\x01", "\x01\x02": "\x00"}


def encode(text: str) -> str:
    """`text` as stored: without U+0000."""
    if "\x00" not in text and ESCAPE not in text:
        return text
    return text.replace(ESCAPE, "\x01\x01").replace("\x00", "\x01\x02")


def decode(stored: str) -> str:
    """The string that `encode` stored as `stored`."""
    if ESCAPE not in stored:
        return stored
    return _ESCAPED.sub(lambda match: _ORIGINAL[match.group(0)], stored)


class _Dumper(StrDumperUnknown):
    """psycopg's default dumper of `str` (text format, type left to the server), escaped."""

    def dump(self, obj: str) -> Buffer | None:
        return super().dump(encode(obj))


class _Loader(TextLoader):
    def load(self, data: Buffer) -> Any:
        loaded = super().load(data)  # bytes: a SQL_ASCII database
        return decode(loaded) if isinstance(loaded, str) else loaded


def adapt(connection: Any) -> None:
    """Make a psycopg connection send and receive strings through the escape."""
    connection.adapters.register_dumper(str, _Dumper)
    connection.adapters.register_loader("text", _Loader)
