"""What a load run measured, whichever generator ran it (wrk, or the Python fallback)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from bench.workloads import Traffic


@dataclass(frozen=True)
class LoadResult:
    seconds: float
    answered: int  # responses received
    ok: int  # 2xx among them
    ok200: int
    in_flight: int  # requests sent whose answer had not come back when the run stopped
    p50_ms: float
    p99_ms: float
    # Everything that is not a 2xx answer: by status ("422"), or socket errors ("timeout").
    failures: dict[str, int] = field(default_factory=dict)
    # The share of all CPUs that processes outside the bench used during the run.
    foreign_cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def failure_text(self) -> str:
        return ", ".join(f"{count} x {what}" for what, count in sorted(self.failures.items()))

    def with_foreign_cpu(self, share: float) -> LoadResult:
        return replace(self, foreign_cpu=share)


def combined(rounds: Sequence[LoadResult]) -> LoadResult:
    """Several runs of one workload as one: counts and time add up; the p50 is the runs'
    mean, the p99 and the foreign CPU share the worst run's."""
    failures: Counter[str] = Counter()
    for result in rounds:
        failures.update(result.failures)
    return LoadResult(
        seconds=sum(r.seconds for r in rounds),
        answered=sum(r.answered for r in rounds),
        ok=sum(r.ok for r in rounds),
        ok200=sum(r.ok200 for r in rounds),
        in_flight=sum(r.in_flight for r in rounds),
        p50_ms=sum(r.p50_ms for r in rounds) / len(rounds),
        p99_ms=max(r.p99_ms for r in rounds),
        failures=dict(failures),
        foreign_cpu=max(r.foreign_cpu for r in rounds),
    )


class Loader(Protocol):
    name: str

    def run(self, base_url: str, traffic: Traffic, connections: int, seconds: float) -> LoadResult:
        """Load `base_url` with `traffic` on `connections` keep-alive connections."""
        ...
