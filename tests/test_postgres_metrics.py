"""GET /metrics on PostgreSQL: the database's size as PostgreSQL counts it (pg_database_size), no
SQLite WAL gauge, and an answer also while the server is away (the requests' counts, the 503s
among them, with sidecar_database_up 0)."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from sidecar.app import create_app
from sidecar.settings import Settings
from tests import pg
from tests.conftest import BASE_URL
from tests.helpers import DEFINITIONS, assert_problem, create_definition
from tests.test_metrics import gauge, request_count, scrape

SIZE = "SELECT pg_database_size(current_database())"


async def test_database_bytes_is_pg_database_size_and_there_is_no_wal_gauge(
    postgres_database: str,
) -> None:
    pg.reset(postgres_database)
    query = pg.query_function(postgres_database)
    app = create_app(Settings(db_path=postgres_database))
    async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
        await create_definition(client, "Sized")
        before = query(SIZE)[0][0]
        families = await scrape(client)
        after = query(SIZE)[0][0]
    assert 0 < before <= gauge(families, "sidecar_database_bytes") <= after
    assert gauge(families, "sidecar_database_up") == 1
    assert gauge(families, "sidecar_table_rows", table="achievements") == 1
    assert "sidecar_wal_bytes" not in families


async def test_metrics_answer_while_the_server_is_away(cluster: pg.Cluster) -> None:
    with pg.fresh_database(cluster.url) as url:
        app = create_app(Settings(db_path=url))
        async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
            await create_definition(client, "Counted")
            size = gauge(await scrape(client), "sidecar_database_bytes")

            cluster.halt()
            assert_problem(await client.get(DEFINITIONS), 503, "DATABASE_UNAVAILABLE")
            families = await scrape(client)
            assert request_count(families, "GET", DEFINITIONS, "503") == 1
            assert gauge(families, "sidecar_database_up") == 0
            assert gauge(families, "sidecar_database_bytes") == size  # the last value read
            assert gauge(families, "sidecar_table_rows", table="achievements") == 1

            cluster.restart()
            assert (await client.get("/health")).status_code == 200
            assert gauge(await scrape(client), "sidecar_database_up") == 1
