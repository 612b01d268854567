"""Encoded answers kept until the database changes: the list reads, which cost the most.

A user's list of 20 rows costs ~31 µs in-process, 25 µs of it SQLite's fetch of the rows; a
kept answer costs one `PRAGMA data_version` (~1 µs). That pragma, on the reader's connection,
changes whenever any other connection commits: this service's writer, or another process on the
same file (`sidecar definitions import`, a script). So any commit empties the whole cache; a bot
that writes between every two lists gets no hits and pays only the pragma.

A key names everything an answer depends on besides the data: the request's parameters and the
id form it asks for (`Prefer: ids=string`).

An answer is kept under the version read *before* its rows were read: if a commit lands in
between, the answer may be newer than its version says, never older, and the next read (seeing
a new version) drops it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable

# 128 answers of at most 32 KiB (a user with ~150 rows): at most 4 MiB.
ENTRIES = 128
LARGEST_BYTES = 32 * 1024


class AnswerCache:
    def __init__(self, entries: int = ENTRIES, largest_bytes: int = LARGEST_BYTES) -> None:
        self._entries = entries
        self._largest_bytes = largest_bytes
        self._version: int | None = None
        self._answers: OrderedDict[Hashable, bytes] = OrderedDict()

    async def answer(
        self, version: int, key: Hashable, compute: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        """The answer kept for `key` while the database is at `version`, else `compute()`'s
        (kept, least recently used dropped first, unless larger than the limit)."""
        if version != self._version:
            self._answers.clear()
            self._version = version
        kept = self._answers.get(key)
        if kept is not None:
            self._answers.move_to_end(key)
            return kept
        answer = await compute()
        # Kept only if no newer version was seen meanwhile (a compute that waits for a reader
        # thread, on PostgreSQL): else an answer older than its version would be kept.
        if self._version == version and len(answer) <= self._largest_bytes:
            self._answers[key] = answer
            if len(self._answers) > self._entries:
                self._answers.popitem(last=False)
        return answer
