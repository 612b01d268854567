"""What a request costs, counted rather than timed (the machine is shared: its speed decides
nothing here), and the bound every request must keep: a request of n body bytes holds the writer
for at most 1,000 + n function calls, and allocates at most 1 MiB + 8n bytes at once. A request
costs in proportion to what it weighs: 86 bytes buy at most 1,086 calls (well under a
millisecond) and 1 MiB of memory; the largest body (1 MiB, a batch of 1,000 items) about a
million calls.

- Writer calls: every Python and C function call made while one job holds the writer (its
  thread's profile hook), the SQL statements included as one call each. Deterministic for a
  given request and code.
- Peak bytes: the most memory allocated at once above the level before the request, while it
  is answered (tracemalloc, which also sees what libmpdec allocates for a Decimal). A computation
  that is cheap in calls but huge in digits (the inc of 1e-1000000000 of issue 14: one C call,
  3.7 GB) shows here.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import pytest

from sidecar.db import Writer

T = TypeVar("T")

BASE_CALLS = 1_000
BASE_BYTES = 1024 * 1024
BYTES_PER_BYTE = 8


@dataclass
class Work:
    writer_calls: list[int] = field(default_factory=list)  # one count per writer job
    peak_bytes: int = 0


def check_bound(work: Work, size: int, what: str) -> None:
    """The work of one request of `size` body bytes is within the bound."""
    calls = max(work.writer_calls, default=0)
    assert calls <= BASE_CALLS + size, f"held the writer for {calls} calls: {what}"
    peak = work.peak_bytes
    assert peak <= BASE_BYTES + BYTES_PER_BYTE * size, f"allocated {peak} bytes at once: {what}"


class WorkMeter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._current: Work | None = None
        original = Writer.run
        meter = self

        async def run(writer: Writer, function: Callable[[Any], T]) -> T:
            return await original(writer, meter._counted(function))

        run_method: Callable[[Writer, Callable[[Any], Any]], Awaitable[Any]] = run
        monkeypatch.setattr(Writer, "run", run_method)

    def _counted(self, function: Callable[[Any], T]) -> Callable[[Any], T]:
        def counted(connection: Any) -> T:
            calls = 0

            def profile(frame: FrameType, event: str, arg: Any) -> None:
                nonlocal calls
                if event in ("call", "c_call"):
                    calls += 1

            sys.setprofile(profile)  # this thread only: the writer's
            try:
                return function(connection)
            finally:
                sys.setprofile(None)
                if self._current is not None:
                    self._current.writer_calls.append(calls)

        return counted

    @contextmanager
    def measure(self) -> Iterator[Work]:
        """The work of what runs inside the block (one request)."""
        work = Work()
        self._current = work
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        try:
            yield work
        finally:
            work.peak_bytes = tracemalloc.get_traced_memory()[1] - before
            self._current = None


@contextmanager
def work_meter(monkeypatch: pytest.MonkeyPatch) -> Iterator[WorkMeter]:
    tracemalloc.start()
    try:
        yield WorkMeter(monkeypatch)
    finally:
        tracemalloc.stop()
