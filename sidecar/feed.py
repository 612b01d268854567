"""The live unlock feed: one shared reader hands new events to every open SSE stream.

The writer's connection notes when an event is inserted (a TEMP trigger, see
`store.watch_appended_events`, that only sets a flag on the writer's thread); the writer hands
that news to the event loop once per group, with the group's answers, after its commit. Then one
task reads the new events once and offers them to every stream's bounded queue. A commit without
events wakes nobody and costs no query, however many streams are open. A stream that falls more
than `STREAM_BACKLOG` events behind is ended; its client resumes with `Last-Event-ID`, from the
file.

Order: the reader reads by cursor (event id) what is committed when it runs, and is woken only
after the commit that appended: it never misses an event, and sees them in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from functools import partial

from sidecar import db, store
from sidecar.models import Event

log = logging.getLogger("sidecar")

# Events per read, for the shared reader and for a stream catching up from the file.
PAGE = 500
# Events waiting for one stream, at most; past it the stream is ended and its client resumes.
# The batches are shared by all streams, so this bounds memory for all of them together.
STREAM_BACKLOG = 10_000
# After a failed read, the shared reader tries again this much later.
RETRY_SECONDS = 1.0


class TooManyStreams(Exception):
    """Every stream slot is taken."""


class Subscription:
    """One stream's queue of event batches (the batches are shared by all streams)."""

    def __init__(self, feed: Feed) -> None:
        self._feed = feed
        self._batches: deque[list[Event]] = deque()
        self._waiting = 0
        self._ready = asyncio.Event()
        self.behind = False

    def offer(self, batch: list[Event]) -> None:
        if self.behind:
            return
        if self._waiting + len(batch) > STREAM_BACKLOG:
            self.behind = True  # what is queued is still sent, then the stream ends
        else:
            self._batches.append(batch)
            self._waiting += len(batch)
        self._ready.set()

    def wake(self) -> None:
        self._ready.set()

    async def next(self, timeout: float) -> list[Event] | None:
        """The next batch; [] when nothing came within `timeout`; None when the stream must end."""
        if not self._batches:
            if self.behind or self._feed.closing.is_set():
                return None
            self._ready.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout)
            if not self._batches:
                return None if self.behind or self._feed.closing.is_set() else []
        batch = self._batches.popleft()
        self._waiting -= len(batch)
        return batch


class Feed:
    def __init__(self) -> None:
        self.closing = asyncio.Event()
        self.max_streams = 0
        self._streams: set[Subscription] = set()
        self._wanted = asyncio.Event()  # committed events wait for the shared reader
        self._cursor = 0  # the last event id handed to the streams
        self._readers: db.Readers | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, writer: db.Writer, readers: db.Readers, max_streams: int) -> None:
        self.max_streams = max_streams
        self._readers = readers
        self._cursor = await readers.read(store.last_event_id)
        await writer.run(partial(store.watch_appended_events, appended=writer.note_appended))
        writer.on_commit(self._committed)
        readers.watch(self._committed)  # other sidecars' events (PostgreSQL)
        self._reader = asyncio.create_task(self._fan_out(readers))

    async def subscribe(self) -> Subscription:
        if len(self._streams) >= self.max_streams:
            raise TooManyStreams
        if not self._streams and self._readers is not None:
            # Nothing was read while no stream was open: start after what is committed now. The
            # new stream reads the file from its own cursor after subscribing, so an event
            # committed before this point reaches it from there, and a later one from here.
            last = await self._readers.read(store.last_event_id)
            if len(self._streams) >= self.max_streams:  # others subscribed meanwhile
                raise TooManyStreams
            if not self._streams:  # else the reader has run on from there for them
                self._cursor = last
        subscription = Subscription(self)
        self._streams.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._streams.discard(subscription)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def close(self) -> None:
        """The service is stopping: streams end so that a graceful shutdown can finish."""
        self.closing.set()
        for subscription in self._streams:
            subscription.wake()

    async def stop(self) -> None:
        self.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    def _committed(self, appended: bool) -> None:
        if appended and self._streams:  # with no stream open, a read would hand it to nobody
            self._wanted.set()

    async def _fan_out(self, readers: db.Readers) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self._read_new(readers)
            except Exception as error:  # e.g. the file is busy: try again, the streams wait
                log.warning("reading new events for the streams failed: %s", error)
                self._wanted.set()
                await asyncio.sleep(RETRY_SECONDS)

    async def _read_new(self, readers: db.Readers) -> None:
        while True:
            batch = await store.events_after(readers, self._cursor, PAGE)
            if not batch:
                return
            self._cursor = batch[-1].id
            for subscription in self._streams:
                subscription.offer(batch)
            if len(batch) < PAGE:
                return
            await asyncio.sleep(0)  # let the streams take this page before the next is read
