"""What a running app holds: settings, the writer, the readers, the feed; started and stopped
by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field

from sidecar import db, store
from sidecar.feed import Feed
from sidecar.settings import Settings

log = logging.getLogger("sidecar")

# Idempotency keys are kept at least this long, then purged in small bites.
KEY_RETENTION_SECONDS = 24 * 3600
PURGE_EVERY_SECONDS = 600
PURGE_BITE = 500


@dataclass
class Service:
    settings: Settings
    feed: Feed = field(default_factory=Feed)
    _writer: db.Writer | None = None
    _readers: db.Readers | None = None
    _purger: asyncio.Task[None] | None = None

    @property
    def writer(self) -> db.Writer:
        assert self._writer is not None, "the service is not started"
        return self._writer

    @property
    def readers(self) -> db.Readers:
        assert self._readers is not None, "the service is not started"
        return self._readers

    async def start(self) -> None:
        db.prepare(self.settings.db_path)
        self._writer = db.Writer(self.settings.db_path, self.settings.synchronous)
        self._readers = await db.Readers.open(self.settings.db_path)
        await self.feed.start(self._writer, self._readers, self.settings.max_streams)
        self._purger = asyncio.create_task(self._purge_old_keys())

    async def stop(self) -> None:
        await self.feed.stop()
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        if self._readers is not None:
            await self._readers.close()
        if self._writer is not None:
            await self._writer.close()
        # Every other connection is closed: fold the WAL in, so the .db file alone is a backup.
        await asyncio.to_thread(db.checkpoint, self.settings.db_path)

    async def _purge_old_keys(self) -> None:
        while True:
            cutoff = time.strftime(
                "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() - KEY_RETENTION_SECONDS)
            )
            try:
                await self._purge_before(cutoff)
            except Exception:
                log.exception("purging old idempotency keys failed; will try again")
            await asyncio.sleep(PURGE_EVERY_SECONDS)

    async def _purge_before(self, cutoff: str) -> None:
        def bite(connection: sqlite3.Connection) -> int:
            return store.purge_responses(connection, cutoff, PURGE_BITE)

        while await self.writer.run(bite) == PURGE_BITE:
            pass
