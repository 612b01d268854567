"""The definitions list in pages (Revision 2: optional `limit` 1-1000 and `offset` >= 0; without
them, every definition as before), and what clients that never read the list can pin."""

from __future__ import annotations

import socket
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sidecar import db
from tests.helpers import DEFINITIONS, assert_problem, create_definition, error_fields
from tests.realserver import start_server

NAMES = ["b", "A", "c", "a", "B", "é", "E", "d", "a"]


async def test_pages_are_slices_of_the_whole_list(client: Any) -> None:
    for name in NAMES:
        await create_definition(client, name)
    whole = (await client.get(DEFINITIONS)).json()
    assert [d["name"] for d in whole] == ["A", "a", "a", "b", "B", "c", "d", "E", "é"]
    for limit in (1, 2, 4, 9, 10, 1000):
        for offset in (0, 1, 3, 8, 9, 50):
            response = await client.get(DEFINITIONS, params={"limit": limit, "offset": offset})
            assert response.status_code == 200, response.text
            assert response.json() == whole[offset : offset + limit], (limit, offset)
    assert (await client.get(DEFINITIONS, params={"offset": 7})).json() == whole[7:]
    assert (await client.get(DEFINITIONS, params={"limit": 3})).json() == whole[:3]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"limit": ""}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": "1.0"}, "offset"),
        ({"offset": "9" * 20}, "offset"),
    ],
)
async def test_bad_page_parameters_are_422(client: Any, params: dict[str, Any], field: str) -> None:
    response = await client.get(DEFINITIONS, params=params)
    assert_problem(response, 422, "VALIDATION_FAILED")
    assert error_fields(response) == [field]


async def test_the_list_follows_writes(client: Any) -> None:
    first = await create_definition(client, "m")
    assert [d["id"] for d in (await client.get(DEFINITIONS)).json()] == [first["id"]]
    renamed = await client.put(f"{DEFINITIONS}/{first['id']}", json={"name": "z"})
    assert renamed.status_code == 200
    second = await create_definition(client, "n")
    listed = (await client.get(DEFINITIONS)).json()
    assert [(d["id"], d["name"]) for d in listed] == [(second["id"], "n"), (first["id"], "z")]
    assert (await client.delete(f"{DEFINITIONS}/{second['id']}")).status_code == 200
    assert [d["name"] for d in (await client.get(DEFINITIONS, params={"limit": 5})).json()] == ["z"]


# --- clients that never read, against the real server -----------------------------------------

DEFINITION_COUNT = 10_000
DESCRIPTION = "x" * 2000  # with the rest, a list of about 21 MiB
CLIENTS = 100
RSS_LIMIT_BYTES = 200 * 1024 * 1024


def fill(path: Path) -> None:
    db.prepare(str(path))
    now = "2026-12-06T00:00:00.000Z"
    rows = [(f"Definition {n:05d}", DESCRIPTION, now, now) for n in range(DEFINITION_COUNT)]
    with closing(sqlite3.connect(path)) as connection, connection:
        connection.executemany(
            "INSERT INTO achievements (name, description, created_at, updated_at) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def answered(base_url: str) -> float:
    try:
        text = httpx.get(f"{base_url}/metrics", timeout=30.0).text
    except httpx.TimeoutException:  # busy answering the list: ask again
        return 0.0
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "sidecar_http_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels.get("route") == DEFINITIONS
    )


def test_clients_that_do_not_read_the_list_do_not_multiply_memory(tmp_path: Path) -> None:
    path = tmp_path / "achievements.db"
    fill(path)
    server = start_server(path)
    silent: list[socket.socket] = []
    try:
        request = f"GET {DEFINITIONS} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        for _ in range(CLIENTS):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(request)
            silent.append(sock)
        # Every request has been answered (its status and first bytes sent), none read.
        deadline = time.monotonic() + 120.0
        while answered(server.base_url) < CLIENTS and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answered(server.base_url) >= CLIENTS
        time.sleep(1.0)  # what the server would still build or buffer for them, it has by now
        rss = resident_bytes(server.process.pid)
        assert rss < RSS_LIMIT_BYTES, f"{rss / 2**20:.0f} MiB resident"
        # A client that reads gets the whole list.
        listed = httpx.get(f"{server.base_url}{DEFINITIONS}", timeout=60.0).json()
        assert [d["name"] for d in listed] == [f"Definition {n:05d}" for n in range(10_000)]
    finally:
        for sock in silent:
            sock.close()
        server.stop()
