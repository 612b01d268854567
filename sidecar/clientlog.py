"""One log line per misbehaving client (a cut request, a timed-out one), and no flood.

A client's mistake is not the server's error: it is logged at INFO, one line, no traceback. A few
lines a second are written as they come; past that, the rest of the second is summed up in one
line ("and N more"), so a thousand half-open sockets cannot bury the log.
"""

from __future__ import annotations

import asyncio
import logging
import time

log = logging.getLogger("sidecar")

LINES_PER_SECOND = 10


class ClientLog:
    def __init__(self, lines_per_second: int = LINES_PER_SECOND) -> None:
        self._allowed = lines_per_second
        self._window = 0.0
        self._written = 0
        self._held: dict[str, int] = {}

    def note(self, kind: str, message: str, *args: object) -> None:
        """Log `message % args`, or count it under `kind` when this second's lines are used up."""
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._written = now, 0
        if self._written < self._allowed:
            self._written += 1
            log.info(message, *args)
            return
        if not self._held:
            asyncio.get_running_loop().call_later(1.0, self._summarise)
        self._held[kind] = self._held.get(kind, 0) + 1

    def _summarise(self) -> None:
        held, self._held = self._held, {}
        for kind, count in held.items():
            log.info("... and %d more %s in the last second", count, kind)


# One per process: uvicorn's protocols and the app's metrics wrapper write to the same log.
client_log = ClientLog()
