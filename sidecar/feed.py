"""Wakes unlock-feed readers (SSE streams) after each commit, and tells them when to close."""

from __future__ import annotations

import asyncio
import contextlib


class Feed:
    def __init__(self) -> None:
        self._changed = asyncio.Event()
        self.closing = asyncio.Event()

    def poke(self) -> None:
        """Something was committed: wake every current waiter (each then reads after its cursor)."""
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def close(self) -> None:
        """The service is stopping: streams end so that a graceful shutdown can finish."""
        self.closing.set()
        self.poke()

    def signal(self) -> asyncio.Event:
        """Take this before reading; waiting on it then cannot miss a commit made after the read."""
        return self._changed

    async def wait(self, signal: asyncio.Event, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(signal.wait(), timeout)
