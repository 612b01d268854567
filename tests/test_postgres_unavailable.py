"""PostgreSQL going away under a running service: requests meanwhile are 503
DATABASE_UNAVAILABLE (problem+json), /health says so, and once the server is back the same
service answers again, without a restart, with everything acknowledged before."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar.testing import AsyncTestClient

from sidecar.app import create_app
from sidecar.settings import Settings
from tests import pg
from tests.conftest import BASE_URL
from tests.helpers import DEFINITIONS, PROGRESS, assert_problem

APPLY = f"{PROGRESS}/apply"


async def test_requests_get_503_while_the_server_is_down_and_the_service_recovers(
    cluster: pg.Cluster,
) -> None:
    with pg.fresh_database(cluster.url) as url:
        settings = Settings(db_path=url)
        async with AsyncTestClient(app=create_app(settings), base_url=BASE_URL) as client:
            created = await client.post(DEFINITIONS, json={"name": "Kept"})
            assert created.status_code == 201, created.text
            body: dict[str, Any] = {"userId": 1, "achievementId": created.json()["id"]}
            inc = {**body, "ops": [{"op": "inc", "path": "n", "value": 1}]}
            assert (await client.post(APPLY, json=inc)).status_code == 200

            cluster.halt()
            for attempt in range(3):
                problem = assert_problem(
                    await client.post(APPLY, json=inc), 503, "DATABASE_UNAVAILABLE"
                )
                assert "Retry-After" in (await client.post(APPLY, json=inc)).headers
                assert_problem(await client.get(PROGRESS, params=body), 503, "DATABASE_UNAVAILABLE")
                assert_problem(await client.get("/health"), 503, "DATABASE_UNAVAILABLE")
                assert "127.0.0.1" in problem["detail"], attempt

            cluster.restart()
            assert (await client.get("/health")).status_code == 200
            assert (await client.post(APPLY, json=inc)).status_code == 200
            row = await client.get(PROGRESS, params=body)
            assert row.json()["metadata"] == {"n": 2}  # the one before, the one after


async def test_after_a_restart_of_the_server_no_read_fails_on_a_connection_it_closed(
    cluster: pg.Cluster,
) -> None:
    """Each reader thread keeps its connection. The server restarted while no request came:
    the first read on each kept connection finds it closed, and reconnects rather than
    answering 503 for a server that is up."""
    with pg.fresh_database(cluster.url) as url:
        async with AsyncTestClient(
            app=create_app(Settings(db_path=url)), base_url=BASE_URL
        ) as client:
            # Enough reads at once that every reader thread opens its connection.
            answers = await asyncio.gather(*(client.get("/health") for _ in range(32)))
            assert {answer.status_code for answer in answers} == {200}

            cluster.halt()
            cluster.restart()
            for _ in range(16):
                health = await client.get("/health")
                assert health.status_code == 200, health.text
