"""How much CPU other processes took while the bench ran: the machine is shared, and every
figure here is a share of two cores. Counted from /proc: all busy CPU time minus the time of
this process and everything below it (the servers, wrk)."""

from __future__ import annotations

import os
from pathlib import Path

from bench.servers import descendants

TICKS = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    """Busy time of all CPUs (everything but idle and iowait), in clock ticks."""
    ticks = [int(field) for field in Path("/proc/stat").read_text().split()[1:11]]
    return sum(ticks) - ticks[3] - ticks[4]


def _own_ticks() -> int:
    """CPU time of this process, of its reaped children, and of every live descendant."""
    total = 0
    for pid in descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime and stime; for this process also cutime and cstime (wrk runs that finished).
        total += int(fields[11]) + int(fields[12])
        if pid == os.getpid():
            total += int(fields[13]) + int(fields[14])
    return total


class CpuWatch:
    """`with CpuWatch() as watch: ...`, then `watch.foreign`: the share of all CPUs that
    other processes used meanwhile (0.0 on a quiet machine, 1.0 if they took everything)."""

    def __enter__(self) -> CpuWatch:
        self._busy, self._own = _busy_ticks(), _own_ticks()
        self._wall = os.times().elapsed
        self.foreign = 0.0
        return self

    def __exit__(self, *_: object) -> None:
        busy, own = _busy_ticks() - self._busy, _own_ticks() - self._own
        available = (os.times().elapsed - self._wall) * TICKS * (os.cpu_count() or 1)
        self.foreign = max(0.0, (busy - own) / available) if available else 0.0
