"""Single HTTP calls for seeding and checking (http.client: no dependency beyond the stdlib)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit


def call(
    base_url: str, method: str, path: str, body: bytes | None = None, timeout: float = 30.0
) -> tuple[int, bytes]:
    url = urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def call_ok(base_url: str, method: str, path: str, value: Any = None) -> bytes:
    """The answer's bytes; anything but a 2xx is an error."""
    body = None if value is None else json.dumps(value, separators=(",", ":")).encode()
    status, answer = call(base_url, method, path, body)
    if not 200 <= status < 300:
        raise RuntimeError(f"{method} {path} answered {status}: {answer[:500]!r}")
    return answer


def healthy(base_url: str) -> bool:
    try:
        return call(base_url, "GET", "/health", timeout=1.0)[0] == 200
    except OSError:
        return False
