"""A PostgreSQL host that vanishes (no RST: its packets dropped, as a host gone from the network
or a failover) under a running sidecar: requests waiting on its connections get 503
DATABASE_UNAVAILABLE with Retry-After within seconds, not after TCP's minutes; /health says so;
once the host answers again the same sidecar serves again (its connections replaced).

The server runs in a network namespace of this test's own, reachable only through a veth pair;
the host "vanishes" when the namespace's end of the pair goes down (the host's end then drops
every packet, silently). Needs root and iproute2 (CI has both)."""

from __future__ import annotations

import asyncio
import os
import pwd
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecar.postgres import backend
from tests import pg
from tests.helpers import DEFINITIONS, PROGRESS, assert_problem
from tests.realserver import start_server

APPLY = f"{PROGRESS}/apply"
# Every answer comes within this: generous for a noisy machine, and far below what the kernel's
# defaults would take (about 15 minutes of retransmissions, 2 hours before a keepalive probe).
ANSWER_SECONDS = 90.0


def _command(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


@dataclass
class Vanishing:
    """A server reachable at `url` through a veth pair that `vanish`/`reappear` cut and mend."""

    namespace: str
    inner: str  # the namespace's end of the pair
    url: str

    def vanish(self) -> None:
        _command("ip", "-n", self.namespace, "link", "set", self.inner, "down")

    def reappear(self) -> None:
        _command("ip", "-n", self.namespace, "link", "set", self.inner, "up")


@pytest.fixture
def vanishing() -> Iterator[Vanishing]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("setpriv") is None:
        pytest.skip("needs root, iproute2 and setpriv (a network namespace of the test's own)")
    tag = f"{os.getpid() % 10000}{random.randrange(100)}"
    namespace, outer, inner = f"sc-vanish-{tag}", f"scvo{tag}", f"scvi{tag}"
    subnet = f"10.{random.randrange(200, 250)}.{random.randrange(256)}"
    outer_address, inner_address = f"{subnet}.1", f"{subnet}.2"
    try:
        _command("ip", "netns", "add", namespace)
    except subprocess.CalledProcessError as error:
        pytest.skip(f"cannot create a network namespace: {error.stderr.decode().strip()}")
    cluster: pg.Cluster | None = None
    try:
        _command(
            "ip", "link", "add", outer, "type", "veth", "peer", "name", inner, "netns", namespace
        )
        _command("ip", "addr", "add", f"{outer_address}/30", "dev", outer)
        _command("ip", "link", "set", outer, "up")
        _command("ip", "-n", namespace, "addr", "add", f"{inner_address}/30", "dev", inner)
        _command("ip", "-n", namespace, "link", "set", inner, "up")
        cluster = pg.cluster_or_skip()
        cluster.halt()  # started again inside the namespace, listening on its address only
        with open(cluster.directory / "data" / "pg_hba.conf", "a") as hba:  # initdb: loopback
            hba.write(f"host all all {outer_address}/32 trust\n")
        # The command pg.start_cluster ran, on the namespace's address.
        command = [
            f"listen_addresses={inner_address}"
            if argument == "listen_addresses=127.0.0.1"
            else str(argument)
            for argument in list(cluster.process.args)
        ]
        owner = pwd.getpwnam(pg.CLUSTER_USER)
        directory = cluster.directory
        log_path = directory / "server.log"

        def launch() -> subprocess.Popen[bytes]:
            with open(log_path, "ab") as log:
                return subprocess.Popen(
                    [
                        *("ip", "netns", "exec", namespace, "setpriv"),
                        *(f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"),
                        *command,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=directory,
                    start_new_session=True,
                )

        cluster.launch = launch
        cluster.restart()
        yield Vanishing(
            namespace, inner, f"postgresql://postgres@{inner_address}:{cluster.port}/postgres"
        )
    finally:
        if cluster is not None:
            subprocess.run(
                ["ip", "-n", namespace, "link", "set", inner, "up"],
                check=False,
                capture_output=True,
            )
            cluster.stop()
        subprocess.run(["ip", "link", "del", outer], check=False, capture_output=True)
        subprocess.run(["ip", "netns", "del", namespace], check=False, capture_output=True)


async def test_a_vanished_host_gets_503_within_seconds_and_the_sidecar_recovers(
    vanishing: Vanishing, tmp_path: Path
) -> None:
    with pg.fresh_database(vanishing.url) as url:
        server = start_server(url, log_dir=tmp_path)
        try:
            async with httpx.AsyncClient(
                base_url=server.base_url, timeout=ANSWER_SECONDS
            ) as client:
                created = await client.post(DEFINITIONS, json={"name": "Kept"})
                assert created.status_code == 201, created.text
                body: dict[str, Any] = {"userId": 1, "achievementId": created.json()["id"]}
                inc = {**body, "ops": [{"op": "inc", "path": "n", "value": 1}]}
                assert (await client.post(APPLY, json=inc)).status_code == 200
                # Every connection open and used: the writer's, readers', the LISTEN one.
                for _ in range(8):
                    assert (await client.get(PROGRESS, params=body)).status_code == 200
                assert (await client.get(DEFINITIONS)).status_code == 200

                vanishing.vanish()
                try:
                    answers = await asyncio.gather(
                        client.post(APPLY, json=inc),  # on the writer's connection
                        client.get(PROGRESS, params=body),  # a reader's
                        client.get(DEFINITIONS),  # a round trip on the LISTEN connection first
                        client.get("/health"),
                    )
                    for answer in answers:
                        assert_problem(answer, 503, "DATABASE_UNAVAILABLE")
                        assert int(answer.headers["Retry-After"]) > 0
                    # Still away: a new connection attempt is given up on too.
                    assert_problem(await client.get("/health"), 503, "DATABASE_UNAVAILABLE")
                finally:
                    vanishing.reappear()
                deadline = time.monotonic() + ANSWER_SECONDS
                while (health := await client.get("/health")).status_code != 200:
                    assert time.monotonic() < deadline, health.text
                    await asyncio.sleep(0.2)
                assert (await client.post(APPLY, json=inc)).status_code == 200
                row = await client.get(PROGRESS, params=body)
                assert row.json()["metadata"] == {"n": 2}  # the one before, the one after
                assert (await client.get(DEFINITIONS)).status_code == 200
        finally:
            server.stop()


def test_the_urls_own_connection_settings_win() -> None:
    assert backend.connection_options("postgresql://u@h/db") == backend.CONNECTION_DEFAULTS
    options = backend.connection_options(
        "postgresql://u@h/db?keepalives_idle=60&tcp_user_timeout=0&connect_timeout=2"
    )
    assert "keepalives_idle" not in options and "tcp_user_timeout" not in options
    assert "connect_timeout" not in options and options["keepalives_count"] == 3
