"""Hostile callers: DNS rebinding, cross-site form posts, CORS, tokens, oversized requests, slow
clients and many idle connections — in-process, and against the real server where the network
matters (no Host header at all, chunked bodies, header sizes, slow and idle sockets).

Timeouts (sidecar/server.py): a connection is closed for idleness after a complete response
(`KEEP_ALIVE_SECONDS`, 5 s), and a request that has not arrived in full within the request timeout
(10 s by default) is dropped; connections are capped (1000 by default). Slow clients within those
bounds are served (tests/test_slow_clients.py tests the bounds themselves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import select
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.server import KEEP_ALIVE_SECONDS
from tests.helpers import DEFINITIONS, PROGRESS, assert_problem
from tests.realserver import RealServer, start_server

LIMIT = 1024 * 1024
TOKEN = "s3cret-token-0123456789"
# Right length, right prefix, wrong last character.
NEAR_MISS = TOKEN[:-1] + chr(ord(TOKEN[-1]) ^ 1)
OPENAPI = "/schema/openapi.json"
PARAMS = {"id": "1", "userId": "1", "key": "k1"}
# Never ends: the in-process client would wait for its end, so it is only called where the gate
# answers first, and looked at on the real server otherwise.
EVENT_STREAM = "GET /users/achievements/events/stream"

# A body each write route takes (with application/json), so a rejection is about the attack.
VALID_BODIES: dict[str, dict[str, Any]] = {
    f"POST {DEFINITIONS}": {"name": "Hostile"},
    f"PUT {DEFINITIONS}/{{id}}": {"name": "Renamed"},
    f"PUT {DEFINITIONS}/by-key/{{key}}": {"name": "By key"},
    f"POST {PROGRESS}": {"userId": 1, "achievementId": 1},
    f"PUT {PROGRESS}/unlock": {"userId": 1, "achievementId": 1},
    f"POST {PROGRESS}/apply": {
        "userId": 1,
        "achievementId": 1,
        "ops": [{"op": "inc", "path": "n", "value": 1}],
    },
    f"POST {PROGRESS}/batch": {"operations": [{"type": "upsert", "userId": 1, "achievementId": 2}]},
}
REBINDING_HOSTS = [
    "evil.example",
    "evil.example:8787",
    "EVIL.EXAMPLE",
    "127.0.0.1.evil.example",
    "127.0.0.1.evil.example:8787",
    "localhost.evil.example",
    "localhost.evil.example:8787",
    "",
]
# Loopback look-alikes that are not `name` or `name:port`.
MALFORMED_HOSTS = [
    "localhost:",
    "127.0.0.1:",
    "127.0.0.1:abc",
    "127.0.0.1:80:80",
    "127.0.0.1:8787@evil.example",
    "[::1",
    "[::1]evil",
    "127.0.0.1 evil.example",
]
UNKNOWN_PATHS = ["/nope", f"{DEFINITIONS}/1/extra", "/.env", "/admin", "/health/x", "/schema/x"]
FORM_TYPES = [
    "text/plain",
    "text/plain;charset=UTF-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=----hostile",
    None,  # no Content-Type at all
]


# --- helpers --------------------------------------------------------------------------------


def dump(db_path: Path) -> list[str]:
    connection = sqlite3.connect(db_path)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def fill(path: str) -> str:
    for name, value in PARAMS.items():
        path = path.replace(f"{{{name}}}", value)
    return path


async def document_operations(client: Any, headers: dict[str, str] | None = None) -> list[str]:
    """`METHOD path-template` of every operation in the service's OpenAPI document."""
    response = await client.get(OPENAPI, headers=headers or {})
    assert response.status_code == 200, response.text
    paths: dict[str, dict[str, Any]] = json.loads(response.content)["paths"]
    operations = [f"{method.upper()} {path}" for path, item in paths.items() for method in item]
    # Every write route of the contract is in the document, so none is skipped below.
    assert set(VALID_BODIES) <= set(operations)
    return operations


async def call(client: Any, operation: str, headers: dict[str, str]) -> httpx.Response:
    """One request for the operation; write routes get their valid JSON body."""
    method, path = operation.split(" ", 1)
    body = VALID_BODIES.get(operation)
    content = json.dumps(body).encode() if body is not None else None
    if content is not None:
        headers = {"content-type": "application/json", **headers}
    response: httpx.Response = await client.request(
        method, fill(path), content=content, headers=headers
    )
    return response


def check_refused(response: httpx.Response, method: str, status: int, code: str) -> None:
    if method == "HEAD":  # no body to look at
        assert response.status_code == status
        return
    assert_problem(response, status, code)


async def seed(client: Any) -> None:
    for number in (1, 2):
        created = await client.post(
            DEFINITIONS, json={"name": f"Seed {number}", "key": f"k{number}"}
        )
        assert created.status_code == 201, created.text


# --- DNS rebinding: the Host allowlist -------------------------------------------------------


async def test_rebinding_hosts_refused_on_every_route(client: Any, db_path: Path) -> None:
    await seed(client)
    operations = await document_operations(client)
    unknown = [f"{m} {p}" for p in UNKNOWN_PATHS for m in ("GET", "POST", "PUT", "DELETE", "HEAD")]
    before = dump(db_path)
    for operation in operations + unknown:
        for host in REBINDING_HOSTS:
            response = await call(client, operation, {"host": host})
            check_refused(response, operation.split()[0], 400, "INVALID_HOST")
    assert dump(db_path) == before


async def test_malformed_loopback_hosts_refused(client: Any) -> None:
    failures = [
        f"Host {host!r}: got {response.status_code}"
        for host in MALFORMED_HOSTS
        if (response := await client.get("/health", headers={"host": host})).status_code != 400
        or response.json()["code"] != "INVALID_HOST"
    ]
    assert not failures, failures


async def test_loopback_hosts_with_any_port_allowed(client: Any) -> None:
    for host in ["127.0.0.1", "127.0.0.1:9000", "localhost", "LOCALHOST:1", "[::1]", "[::1]:8787"]:
        response = await client.get("/health", headers={"host": host})
        assert response.status_code == 200, (host, response.text)


async def test_host_is_checked_before_the_token(make_client: Any) -> None:
    async with make_client(token=TOKEN) as client:
        for headers in ({}, {"authorization": f"Bearer {TOKEN}"}):
            response = await client.get(DEFINITIONS, headers={"host": "evil.example", **headers})
            assert_problem(response, 400, "INVALID_HOST")


# --- cross-site form posts and CORS ----------------------------------------------------------


async def test_cross_site_form_posts_are_415_and_write_nothing(client: Any, db_path: Path) -> None:
    await seed(client)
    before = dump(db_path)
    for operation, body in VALID_BODIES.items():
        method, path = operation.split(" ", 1)
        for content_type in FORM_TYPES:
            headers = {"origin": "https://evil.example"}
            if content_type is not None:
                headers["content-type"] = content_type
            response = await client.request(
                method, fill(path), content=json.dumps(body).encode(), headers=headers
            )
            assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")
            assert dump(db_path) == before, (operation, content_type)
    # The same bodies as application/json are taken: only the media type was refused.
    for operation in VALID_BODIES:
        response = await call(client, operation, {})
        assert response.status_code in (200, 201), (operation, response.text)


async def test_no_cors_headers_ever(client: Any) -> None:
    await seed(client)
    operations = await document_operations(client)
    paths = {operation.split(" ", 1)[1] for operation in operations} | set(UNKNOWN_PATHS)
    preflight = {
        "origin": "https://evil.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, authorization, idempotency-key",
    }
    for path in sorted(paths):
        response = await client.options(fill(path), headers=preflight)
        granted = [name for name in response.headers if name.lower().startswith("access-control")]
        assert not granted, (path, dict(response.headers))
    for operation in operations:
        if operation == EVENT_STREAM:
            continue  # see test_no_cors_headers_on_the_event_stream
        response = await call(client, operation, {"origin": "https://evil.example"})
        granted = [name for name in response.headers if name.lower().startswith("access-control")]
        assert not granted, (operation, dict(response.headers))


# --- the bearer token --------------------------------------------------------------------------


async def test_missing_or_wrong_token_is_401_on_every_route(
    make_client: Any, db_path: Path
) -> None:
    async with make_client(token=TOKEN) as client:
        good = {"authorization": f"Bearer {TOKEN}"}
        await seed_with(client, good)
        operations = await document_operations(client, good)
        unknown = [f"GET {path}" for path in UNKNOWN_PATHS]
        wrong_tokens: list[dict[str, str]] = [
            {},
            {"authorization": ""},
            {"authorization": "Bearer"},
            {"authorization": "Bearer "},
            {"authorization": f"Bearer {NEAR_MISS}"},
            {"authorization": f"Bearer {TOKEN[:-1]}"},
            {"authorization": f"Bearer {TOKEN}x"},
            {"authorization": f"Bearer {TOKEN.upper()}"},
            {"authorization": TOKEN},
            {"authorization": f"Basic {TOKEN}"},
            {"authorization": f"Token {TOKEN}"},
            {"x-api-key": TOKEN},
        ]
        before = dump(db_path)
        for operation in operations + unknown:
            method, path = operation.split(" ", 1)
            for headers in wrong_tokens:
                response = await call(client, operation, headers)
                if path == "/health":
                    assert response.status_code in (200, 204), (headers, response.text)
                    continue
                check_refused(response, method, 401, "UNAUTHORIZED")
                assert response.headers["www-authenticate"].lower().startswith("bearer")
        assert dump(db_path) == before
        # With the token every route answers (not 401), the writes included.
        for operation in operations:
            if operation == EVENT_STREAM:
                continue  # an endless answer; the gate is the same for it
            response = await call(client, operation, good)
            assert response.status_code != 401, (operation, response.text)


async def seed_with(client: Any, headers: dict[str, str]) -> None:
    for number in (1, 2):
        created = await client.post(
            DEFINITIONS, json={"name": f"Seed {number}", "key": f"k{number}"}, headers=headers
        )
        assert created.status_code == 201, created.text


# --- oversized bodies, in-process --------------------------------------------------------------


async def test_bodies_over_one_mib_are_413_and_write_nothing(client: Any, db_path: Path) -> None:
    await seed(client)
    before = dump(db_path)
    for operation, body in VALID_BODIES.items():
        method, path = operation.split(" ", 1)
        text = json.dumps(body).encode()
        padded = text[:-1] + b', "pad": "' + b"x" * LIMIT + b'"}'
        response = await client.request(
            method, fill(path), content=padded, headers={"content-type": "application/json"}
        )
        assert_problem(response, 413, "PAYLOAD_TOO_LARGE")
        assert dump(db_path) == before, operation


# --- the real server: raw sockets --------------------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    server = start_server(tmp_path_factory.mktemp("hostile") / "achievements.db")
    try:
        created = httpx.post(f"{server.base_url}{DEFINITIONS}", json={"name": "Seed", "key": "k1"})
        assert created.status_code == 201, created.text
        yield server
    finally:
        server.stop()


Answer = tuple[int, dict[str, str], bytes]


def read_answer(sock: socket.socket, timeout: float = 5.0) -> Answer | None:
    """One HTTP response from the socket; None when the server closed without one."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    except ConnectionResetError:
        return None
    return int(lines[0].split()[1]), headers, rest[:length]


def exchange(server: RealServer, request: bytes, timeout: float = 5.0) -> Answer | None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        # The server may answer (or close) before taking everything.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_answer(sock, timeout)


def problem_of(answer: Answer | None, status: int, code: str) -> None:
    assert answer is not None, "connection closed without an answer"
    got, headers, body = answer
    assert got == status, body
    assert headers["content-type"].startswith("application/problem+json")
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["title"]


def healthy(server: RealServer) -> None:
    response = httpx.get(f"{server.base_url}/health", timeout=5.0)
    assert response.status_code == 200, response.text


def test_no_cors_headers_on_the_event_stream(real: RealServer) -> None:
    path = EVENT_STREAM.split(" ", 1)[1]
    headers = {"origin": "https://evil.example"}
    with httpx.stream("GET", f"{real.base_url}{path}", headers=headers, timeout=5.0) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        granted = [name for name in response.headers if name.lower().startswith("access-control")]
        assert not granted, dict(response.headers)


def test_no_host_header_is_refused(real: RealServer) -> None:
    before = dump(real.db_path)
    body = b'{"name": "No host"}'
    for request in (
        b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.0\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"POST " + DEFINITIONS.encode() + b" HTTP/1.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body,
    ):
        problem_of(exchange(real, request), 400, "INVALID_HOST")
    assert dump(real.db_path) == before


def test_two_host_headers_are_refused(real: RealServer) -> None:
    """RFC 9112 §3.2: a request with more than one Host field gets 400."""
    for first, second in (("evil.example", "127.0.0.1"), ("127.0.0.1", "evil.example")):
        request = (
            f"GET /health HTTP/1.1\r\nHost: {first}\r\nHost: {second}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = exchange(real, request)
        assert answer is not None and answer[0] == 400, (first, second, answer)


def test_chunked_body_over_one_mib_is_413(real: RealServer) -> None:
    """No Content-Length: the limit holds while the body streams in."""
    before = dump(real.db_path)
    head = (
        f"POST {DEFINITIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    piece = b'{"name": "' + b"x" * 65_536
    sent = 0
    with socket.create_connection(("127.0.0.1", real.port), timeout=5.0) as sock:
        sock.sendall(head)
        try:
            # Up to 4 MiB; stop as soon as the server has answered.
            while sent < 4 * LIMIT and not select.select([sock], [], [], 0)[0]:
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
                sent += len(piece)
                piece = b"x" * 65_536
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_answer(sock)
    assert sent > LIMIT or answer is not None
    problem_of(answer, 413, "PAYLOAD_TOO_LARGE")
    assert dump(real.db_path) == before
    healthy(real)


def test_chunked_body_under_the_limit_is_taken(real: RealServer) -> None:
    body = json.dumps({"name": "Chunked", "description": "d" * 5000}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:]))
    request = (
        (
            f"POST {DEFINITIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ).encode()
        + chunks
        + b"0\r\n\r\n"
    )
    answer = exchange(real, request)
    assert answer is not None and answer[0] == 201, answer


def test_huge_content_length_is_413_without_reading_the_body(real: RealServer) -> None:
    request = (
        f"POST {DEFINITIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1073741824\r\n\r\n"
    ).encode()
    # No byte of the body is sent: the answer comes from the header alone.
    problem_of(exchange(real, request), 413, "PAYLOAD_TOO_LARGE")
    healthy(real)


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"x" * 100_000 + b"\r\n",
        b"".join(b"X-Many-%d: %s\r\n" % (n, b"y" * 90) for n in range(10_000)),
    ],
    ids=["one 100 KB header", "10,000 headers (1 MB)"],
)
def test_oversized_headers_refused_and_service_goes_on(real: RealServer, headers: bytes) -> None:
    """Refused with a 4xx (431 fits) or a closed connection; never a 5xx, never served."""
    request = (
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"Connection: close\r\n\r\n"
    )
    answer = exchange(real, request)
    assert answer is None or 400 <= answer[0] < 500, answer
    healthy(real)


# --- slow and idle clients ----------------------------------------------------------------------


async def trickle(port: int, request: bytes, delay: float, halfway: asyncio.Event) -> int:
    """Send the request one byte at a time, stopping halfway until `halfway` is set; return the
    status of its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for index in range(len(request)):
            if index == len(request) // 2:
                await halfway.wait()
            writer.write(request[index : index + 1])
            await writer.drain()
            await asyncio.sleep(delay)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
        return int(head.split(b" ", 2)[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_tricklers_do_not_slow_other_clients(real: RealServer) -> None:
    """20 clients trickle their request a byte at a time (headers, or a body after its
    Content-Length) and stall halfway; meanwhile a normal client gets reads and writes answered."""
    get = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    body = b'{"name": "Slow body"}'
    post = (
        f"POST {DEFINITIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    requests = [post if n % 4 == 0 else get for n in range(20)]
    halfway = asyncio.Event()
    slow = [asyncio.create_task(trickle(real.port, request, 0.01, halfway)) for request in requests]
    await asyncio.sleep(0.2)  # the tricklers are connected and sending
    async with httpx.AsyncClient(base_url=real.base_url, timeout=5.0) as normal:
        for round_ in range(10):
            assert (await normal.get("/health")).status_code == 200
            created = await normal.post(DEFINITIONS, json={"name": f"Normal {round_}"})
            assert created.status_code == 201, created.text
            assert (await normal.get(f"{DEFINITIONS}/{created.json()['id']}")).status_code == 200
    # Answered while every trickler still had half its request to send.
    assert not any(task.done() for task in slow)
    halfway.set()
    # And the tricklers were served in the end, not dropped.
    statuses = await asyncio.gather(*slow)
    assert statuses == [201 if request is post else 200 for request in requests]


def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(
    real: RealServer,
) -> None:
    with socket.create_connection(("127.0.0.1", real.port), timeout=5.0) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = read_answer(sock)
        assert answer is not None and answer[0] == 200
        # Then silence: the server hangs up (recv gives b"") — well within a generous bound.
        sock.settimeout(KEEP_ALIVE_SECONDS + 10)
        try:
            closed = sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        assert closed


def _socket_count(pid: int) -> int:
    count = 0
    for entry in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{entry}").startswith("socket:")
    return count


def test_a_thousand_idle_connections_do_not_stop_service(real: RealServer) -> None:
    wanted = 900  # below the connection cap (1000 by default)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted + 256:
        top = wanted + 256 if hard == resource.RLIM_INFINITY else min(wanted + 256, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (top, hard))
    idle: list[socket.socket] = []
    try:
        for number in range(wanted):
            sock = socket.create_connection(("127.0.0.1", real.port), timeout=5.0)
            idle.append(sock)
            if number % 2:  # half of them stop in the middle of their headers
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # The server holds them all (accepted, not just queued in the kernel's backlog).
        deadline = time.monotonic() + 10.0
        while _socket_count(real.process.pid) < wanted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _socket_count(real.process.pid) >= wanted
        healthy(real)
        created = httpx.post(
            f"{real.base_url}{DEFINITIONS}", json={"name": "After 1000"}, timeout=5.0
        )
        assert created.status_code == 201, created.text
    finally:
        for sock in idle:
            sock.close()
    healthy(real)
