"""A plain read that fails on the fast path with a 404 or DATABASE_UNAVAILABLE is answered there,
in the bytes Litestar's handler sends, after one read: the handler would only run the same read
again (on PostgreSQL a second round trip; with the server away, a second wait)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from sidecar import store
from sidecar.app import create_app
from sidecar.settings import Settings
from tests import pg
from tests.conftest import BASE_URL
from tests.helpers import PROGRESS, assert_problem, create_definition

pytestmark = pytest.mark.both_backends

LEADERBOARD = "/users/achievements/leaderboard"


def counted(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Count the runs of store.`name` (the fast path and the handlers both call it there)."""
    runs: list[int] = []
    original: Callable[..., Any] = getattr(store, name)

    def counting(*args: Any) -> Any:
        runs.append(1)
        return original(*args)

    monkeypatch.setattr(store, name, counting)
    return runs


async def test_a_404_read_runs_once_and_answers_litestars_bytes(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = counted(monkeypatch, "leaderboard_entry")
    answers = []
    for path in (f"{LEADERBOARD}/8", f"{LEADERBOARD}/08"):  # the fast path's form, Litestar's
        response = await client.get(path)
        assert_problem(response, 404, "USER_NOT_FOUND")
        headers = {k: v for k, v in response.headers.items() if k != "date"}
        answers.append((headers, response.content))
        assert len(runs) == 1, path
        runs.clear()
    assert answers[0] == answers[1]
    metrics = (await client.get("/metrics")).text
    label = f'method="GET",route="{LEADERBOARD}/{{userId}}",status="404"'
    assert f"sidecar_http_requests_total{{{label}}} 2.0" in metrics


# A server going away: PostgreSQL only (conftest's `cluster`, not parametrised by backend).
async def test_a_read_while_the_server_is_away_runs_once_and_answers_503(
    cluster: pg.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pg.fresh_database(cluster.url) as url:
        app = create_app(Settings(db_path=url))
        async with AsyncTestClient(app=app, base_url=BASE_URL) as client:
            achievement = (await create_definition(client, "Away"))["id"]
            runs = counted(monkeypatch, "get_progress")
            cluster.halt()
            try:
                query = {"userId": "1", "achievementId": str(achievement)}
                response = await client.get(PROGRESS, params=query)
                assert_problem(response, 503, "DATABASE_UNAVAILABLE")
                assert response.headers["Retry-After"]
                assert len(runs) == 1
            finally:
                cluster.restart()
