"""Idle Server-Sent Event streams: connected, subscribed, never sent an event."""

from __future__ import annotations

import socket
from types import TracebackType

STREAM = "/users/achievements/events/stream"
CONNECTED = b": connected"
CONNECT_SECONDS = 30.0


class IdleStreams:
    def __init__(self, port: int) -> None:
        self.port = port
        self._sockets: list[socket.socket] = []

    def open(self, count: int) -> None:
        """Open `count` streams and wait until the service has subscribed each one (it says
        ": connected" after subscribing)."""
        request = f"GET {STREAM} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=CONNECT_SECONDS)
            self._sockets.append(sock)
            sock.sendall(request)
        for sock in self._sockets:
            seen = b""
            while CONNECTED not in seen:
                chunk = sock.recv(4096)
                if not chunk:
                    raise RuntimeError(f"an event stream was closed at once: {seen[:200]!r}")
                seen += chunk
                if b" 200 " not in seen.split(b"\r\n", 1)[0] and b"\r\n" in seen:
                    raise RuntimeError(f"an event stream was refused: {seen[:200]!r}")

    def close(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()

    def __enter__(self) -> IdleStreams:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
