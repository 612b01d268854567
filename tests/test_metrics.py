"""GET /metrics (API.md "Metrics"): Prometheus text with requests by route and status, a latency
histogram, file sizes and rows per table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import DEFINITIONS, PROGRESS, create_definition, unlock, upsert

REQUESTS = "sidecar_http_requests"
LATENCY = "sidecar_http_request_duration_seconds"
TABLES = ("users", "achievements", "user_achievements", "events")


async def scrape(client: Any) -> dict[str, Metric]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def request_count(families: dict[str, Metric], method: str, route: str, status: str) -> float:
    family = families.get(REQUESTS)
    if family is None:
        return 0.0
    return sum(
        sample.value
        for sample in family.samples
        if sample.name == f"{REQUESTS}_total"
        and sample.labels == {"method": method, "route": route, "status": status}
    )


def latency_count(families: dict[str, Metric], route: str) -> float:
    family = families.get(LATENCY)
    if family is None:
        return 0.0
    return sum(
        sample.value
        for sample in family.samples
        if sample.name == f"{LATENCY}_count" and sample.labels.get("route") == route
    )


def gauge(families: dict[str, Metric], name: str, **labels: str) -> float:
    values = [sample.value for sample in families[name].samples if sample.labels == labels]
    assert len(values) == 1, (name, labels, families[name].samples)
    return values[0]


def size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


async def test_metrics_is_prometheus_text_with_the_named_metrics(client: Any) -> None:
    await client.get(DEFINITIONS)
    families = await scrape(client)
    assert families[REQUESTS].type == "counter"
    assert families[LATENCY].type == "histogram"
    assert families["sidecar_database_bytes"].type == "gauge"
    assert families["sidecar_wal_bytes"].type == "gauge"
    assert families["sidecar_table_rows"].type == "gauge"
    request_samples = [s for s in families[REQUESTS].samples if s.name == f"{REQUESTS}_total"]
    assert request_samples
    assert all(set(s.labels) == {"method", "route", "status"} for s in request_samples)
    latency_names = {sample.name for sample in families[LATENCY].samples}
    assert {f"{LATENCY}_bucket", f"{LATENCY}_count", f"{LATENCY}_sum"} <= latency_names
    buckets = [s for s in families[LATENCY].samples if s.name == f"{LATENCY}_bucket"]
    assert any(s.labels.get("le") == "+Inf" for s in buckets)


async def test_request_counter_moves_by_route_and_status(client: Any) -> None:
    before = await scrape(client)
    ok_before = request_count(before, "GET", DEFINITIONS, "200")
    created_before = request_count(before, "POST", DEFINITIONS, "201")
    refused_before = request_count(before, "POST", DEFINITIONS, "422")
    latency_before = latency_count(before, DEFINITIONS)

    for _ in range(3):
        assert (await client.get(DEFINITIONS)).status_code == 200
    await create_definition(client, "Counted")
    for _ in range(2):
        assert (await client.post(DEFINITIONS, json={"name": ""})).status_code == 422

    after = await scrape(client)
    assert request_count(after, "GET", DEFINITIONS, "200") == ok_before + 3
    assert request_count(after, "POST", DEFINITIONS, "201") == created_before + 1
    assert request_count(after, "POST", DEFINITIONS, "422") == refused_before + 2
    assert latency_count(after, DEFINITIONS) == latency_before + 6


async def test_health_requests_are_counted(client: Any) -> None:
    before = request_count(await scrape(client), "GET", "/health", "200")
    for _ in range(4):
        assert (await client.get("/health")).status_code == 200
    assert request_count(await scrape(client), "GET", "/health", "200") == before + 4


async def test_table_rows_match_counts(client: Any, sql: Any) -> None:
    first = (await create_definition(client, "First"))["id"]
    second = (await create_definition(client, "Second"))["id"]
    await create_definition(client, "Third")
    for user in (1, 2, 3):
        await unlock(client, user, first)
    await upsert(client, 4, second, {"n": 1})
    await upsert(client, 5, second)
    assert (await client.delete(PROGRESS, params={"userId": 5, "achievementId": second})).is_success

    families = await scrape(client)
    labelled = {
        sample.labels["table"]: sample.value for sample in families["sidecar_table_rows"].samples
    }
    assert set(TABLES) <= set(labelled)
    for table, value in labelled.items():
        assert value == sql(f'SELECT count(*) FROM "{table}"')[0][0], table
    assert labelled["users"] == 5
    assert labelled["achievements"] == 3
    assert labelled["user_achievements"] == 4
    assert labelled["events"] == 3

    # They follow writes.
    await unlock(client, 6, second)
    families = await scrape(client)
    assert gauge(families, "sidecar_table_rows", table="users") == 6
    assert gauge(families, "sidecar_table_rows", table="user_achievements") == 5
    assert gauge(families, "sidecar_table_rows", table="events") == 4


async def test_file_sizes(client: Any, db_path: Path) -> None:
    await create_definition(client, "Sized")
    families = await scrape(client)
    database = gauge(families, "sidecar_database_bytes")
    wal = gauge(families, "sidecar_wal_bytes")
    assert database == size(str(db_path)) > 0
    assert wal == size(f"{db_path}-wal")
