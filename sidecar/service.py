"""What a running app holds: settings, the writer, the readers, the feed; started and stopped
by the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from dataclasses import dataclass, field

from sidecar import db, postgres, store
from sidecar.feed import Feed
from sidecar.settings import Settings

log = logging.getLogger("sidecar")

# Idempotency keys past their TTL (settings.idempotency_ttl_seconds) are purged this often at
# most, in small bites; until then they are ignored (writes.py).
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
        database = self.settings.db_path
        if postgres.is_url(database):
            backend = postgres.load()
            await asyncio.to_thread(backend.prepare, database)
            self._writer = backend.Writer(database)
            self._readers = await backend.Readers.open(database)
        else:
            db.prepare(database)
            self._writer = db.Writer(database, self.settings.synchronous)
            self._readers = await db.Readers.open(database)
        await self._writer.run(store.seed_clock)
        await self.feed.start(self._writer, self._readers, self.settings.max_streams)
        self._purger = asyncio.create_task(self._purge_old_keys())

    async def stop(self) -> None:
        await self.feed.stop()
        if self._purger is not None:
            self._purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purger
        gone = self._writer is not None and self._writer.gone
        if self._readers is not None:
            await self._readers.close()
        if self._writer is not None:
            await self._writer.close()
        # Every other connection is closed: fold the WAL in, so the .db file alone is a backup.
        # Not when the file at the path is no longer ours: that would create an empty file, or
        # write into the operator's replacement.
        if not gone and not postgres.is_url(self.settings.db_path):
            await asyncio.to_thread(db.checkpoint, self.settings.db_path)

    async def _purge_old_keys(self) -> None:
        ttl = self.settings.idempotency_ttl_seconds

        def bite(connection: sqlite3.Connection) -> int:
            return store.purge_responses(connection, store.timestamp_before(ttl), PURGE_BITE)

        while True:
            try:
                while await self.writer.run(bite) == PURGE_BITE:
                    pass
            except Exception as error:
                log.warning("purging old idempotency keys failed (%s); will try again", error)
            await asyncio.sleep(min(PURGE_EVERY_SECONDS, ttl))
