"""The Host policy beside a bot in containers (Revision 2): an IP-literal Host is always allowed
(DNS rebinding needs a name), a name needs SIDECAR_ALLOWED_HOSTS, and a refusal says which host
was refused and which setting allows it — in the answer and, once per host, in the log."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar import security
from tests.helpers import DEFINITIONS, assert_problem
from tests.realserver import start_server

# What a bot on a compose or user-defined network sends, by container IP.
IP_LITERAL_HOSTS = [
    "172.18.0.3:8787",
    "172.17.0.2",
    "10.0.0.1:1",
    "0.0.0.0:8787",
    "[fd00::2]",
    "[fd00::2]:8787",
    "[FD00::2]:8787",
    "[::ffff:172.18.0.3]:8787",
]
# Look like addresses, are not: each is a name (or garbage) and needs the setting.
NOT_IP_LITERALS = [
    "172.18.0.3.evil.example",
    "172.18.0.3:8787@evil.example",
    "172.18.0.3:",
    "172.18.0.3:80:80",
    "172.18.0.300",
    "172.18.3",
    "0x7f.0.0.1",
    "172.018.0.3",
    "fd00::2",
    "[fd00::2",
    "[fd00::2]evil",
    "[fe80::1%25eth0]",
    "[172.18.0.3]",
    "172.18.0.3 evil.example",
]


async def test_ip_literal_hosts_are_allowed_on_every_route(client: Any) -> None:
    for host in IP_LITERAL_HOSTS:
        created = await client.post(DEFINITIONS, json={"name": host}, headers={"host": host})
        assert created.status_code == 201, (host, created.text)
        listed = await client.get(DEFINITIONS, headers={"host": host})
        assert listed.status_code == 200, (host, listed.text)
        unknown = await client.get("/nope", headers={"host": host})
        assert_problem(unknown, 404, "NOT_FOUND")


async def test_ip_literal_hosts_still_need_the_token(make_client: Any) -> None:
    async with make_client(token="s3cret") as client:
        for host in IP_LITERAL_HOSTS:
            refused = await client.get(DEFINITIONS, headers={"host": host})
            assert_problem(refused, 401, "UNAUTHORIZED")
            allowed = await client.get(
                DEFINITIONS, headers={"host": host, "authorization": "Bearer s3cret"}
            )
            assert allowed.status_code == 200, (host, allowed.text)


async def test_look_alikes_of_ip_literals_are_names(client: Any) -> None:
    failures = [
        f"Host {host!r}: got {response.status_code}"
        for host in NOT_IP_LITERALS
        if (response := await client.get("/health", headers={"host": host})).status_code != 400
        or response.json()["code"] != "INVALID_HOST"
    ]
    assert not failures, failures


async def test_names_need_the_setting(make_client: Any) -> None:
    async with make_client() as client:
        refused = await client.get(DEFINITIONS, headers={"host": "achievements:8787"})
        assert_problem(refused, 400, "INVALID_HOST")
    async with make_client(allowed_hosts=("achievements",)) as client:
        for host in ("achievements", "achievements:8787", "ACHIEVEMENTS:1"):
            allowed = await client.get(DEFINITIONS, headers={"host": host})
            assert allowed.status_code == 200, (host, allowed.text)
    async with make_client(allowed_hosts=("achievements:8787",)) as client:
        assert (await client.get("/health", headers={"host": "achievements:8787"})).is_success
        other_port = await client.get("/health", headers={"host": "achievements:9000"})
        assert_problem(other_port, 400, "INVALID_HOST")


async def test_refusal_names_the_host_and_the_setting(client: Any) -> None:
    response = await client.get(DEFINITIONS, headers={"host": "achievements:8787"})
    problem = assert_problem(response, 400, "INVALID_HOST")
    assert problem["detail"] == (
        "Host 'achievements:8787' is not allowed; add it to SIDECAR_ALLOWED_HOSTS"
    )


async def test_refusal_detail_escapes_what_it_quotes(client: Any) -> None:
    """A hostile Host cannot forge text in the detail (or the log): it is quoted with repr."""
    response = await client.get("/health", headers={"host": "evil.example'\tx"})
    problem = assert_problem(response, 400, "INVALID_HOST")
    assert problem["detail"].startswith("Host 'evil.example\\'\\tx' is not allowed")


async def test_refusal_without_a_host_says_so(client: Any) -> None:
    response = await client.get("/health", headers={"host": ""})
    problem = assert_problem(response, 400, "INVALID_HOST")
    assert "SIDECAR_ALLOWED_HOSTS" in problem["detail"]


async def test_each_refused_host_is_logged_once(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sidecar")
    for _ in range(3):
        for host in ("achievements:8787", "bot.internal"):
            response = await client.get("/health", headers={"host": host})
            assert response.status_code == 400
    lines = [record.getMessage() for record in caplog.records if record.name == "sidecar"]
    assert lines == [
        "refused Host 'achievements:8787'; add it to SIDECAR_ALLOWED_HOSTS to allow it",
        "refused Host 'bot.internal'; add it to SIDECAR_ALLOWED_HOSTS to allow it",
    ]


async def test_refused_hosts_remembered_for_the_log_are_bounded(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A caller rotating names cannot grow memory or the log without end."""
    caplog.set_level(logging.WARNING, logger="sidecar")
    limit = security.MAX_LOGGED_HOSTS
    for number in range(limit + 20):
        response = await client.get("/health", headers={"host": f"name-{number}.example"})
        problem = assert_problem(response, 400, "INVALID_HOST")
        # The answer names every host, logged or not.
        assert f"'name-{number}.example'" in problem["detail"]
    lines = [record.getMessage() for record in caplog.records if record.name == "sidecar"]
    assert len(lines) == limit + 1
    assert lines[-1] == (
        f"refused {limit} distinct Host values; further ones are not logged (each answer "
        "still names its Host)"
    )


def test_real_server_logs_a_refused_host_once(tmp_path: Path) -> None:
    """As an operator sees it: the server's own log says what to set."""
    server = start_server(tmp_path / "achievements.db")
    try:
        for _ in range(3):
            response = httpx.get(
                f"{server.base_url}/health", headers={"host": "achievements:8787"}, timeout=5.0
            )
            assert response.status_code == 400
        by_ip = httpx.get(
            f"{server.base_url}/health", headers={"host": "172.18.0.3:8787"}, timeout=5.0
        )
        assert by_ip.status_code == 200
    finally:
        server.stop()
    log = server.log()
    assert log.count("refused Host 'achievements:8787'; add it to SIDECAR_ALLOWED_HOSTS") == 1, log
