"""A small load generator in Python, for when wrk is not installed (quick mode only).

Keep-alive HTTP/1.1 on raw asyncio streams, one task per connection, the same requests as the
wrk script (`Traffic.render`). It is much slower than wrk and shares the CPU with the server, so
its figures are a smoke check, not a measurement. Each connection finishes its last request, so
nothing is in flight when it stops.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from bench.load import LoadResult
from bench.workloads import Traffic, key, key_prefix

_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)


@dataclass
class _Tally:
    latencies: list[float] = field(default_factory=list)
    ok: int = 0
    ok200: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def answer(self, status: int, seconds: float) -> None:
        self.latencies.append(seconds)
        if 200 <= status < 300:
            self.ok += 1
            self.ok200 += status == 200
        else:
            self.failures[str(status)] = self.failures.get(str(status), 0) + 1

    def error(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


async def _read_status(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = _LENGTH.search(head)
    if length is None:
        raise ValueError("answer without Content-Length")
    await reader.readexactly(int(length.group(1)))
    return int(head[9:12])


async def _connection(
    host: str,
    port: int,
    traffic: Traffic,
    lane: int,
    lanes: int,
    deadline: float,
    tally: _Tally,
    prefix: str,
) -> None:
    rng = random.Random(1000 + lane)
    host_header = f"{host}:{port}"
    number = 0
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        tally.error("connect")
        return
    try:
        while time.perf_counter() < deadline:
            ids = traffic.ids(rng, lane, lanes, number)
            request = traffic.render(host_header, *ids, key(prefix, lane, number))
            number += 1
            started = time.perf_counter()
            writer.write(request)
            status = await _read_status(reader)
            tally.answer(status, time.perf_counter() - started)
    except (OSError, ValueError, asyncio.IncompleteReadError):
        tally.error("read")
    finally:
        writer.close()


def _percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class PythonLoad:
    name = "built-in Python load generator"

    def run(self, base_url: str, traffic: Traffic, connections: int, seconds: float) -> LoadResult:
        return asyncio.run(self._run(base_url, traffic, connections, seconds))

    async def _run(
        self, base_url: str, traffic: Traffic, connections: int, seconds: float
    ) -> LoadResult:
        url = urlsplit(base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        tally = _Tally()
        started = time.perf_counter()
        deadline = started + seconds
        prefix = key_prefix()
        await asyncio.gather(
            *(
                _connection(host, port, traffic, lane, connections, deadline, tally, prefix)
                for lane in range(connections)
            )
        )
        ordered = sorted(tally.latencies)
        return LoadResult(
            seconds=time.perf_counter() - started,
            answered=len(ordered),
            ok=tally.ok,
            ok200=tally.ok200,
            in_flight=0,
            p50_ms=_percentile(ordered, 0.50) * 1000,
            p99_ms=_percentile(ordered, 0.99) * 1000,
            failures=tally.failures,
        )
