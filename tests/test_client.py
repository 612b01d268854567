"""sidecar.client against the real server: every method, errors as exceptions, retries that
reuse one Idempotency-Key (so a write whose answer was lost counts once), the SSE stream with
resume, settings from SIDECAR_* variables."""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from sidecar.client import (
    ERRORS,
    AchievementNotFound,
    AchievementsClient,
    Answer,
    AsyncDetailed,
    Batch,
    IdempotencyKeyReused,
    InvalidPath,
    KeyConflict,
    NotANumber,
    Op,
    ProgressNotFound,
    SidecarError,
    SidecarUnavailable,
    SyncAchievementsClient,
    SyncDetailed,
    Unauthorized,
    UserNotFound,
    ValidationFailed,
    When,
    metadata_of,
)
from sidecar.errors import TITLES
from sidecar.models import (
    Achievement,
    AchievementStats,
    DeletedUser,
    Event,
    Health,
    LeaderboardEntry,
    UserAchievement,
    UserAchievementChange,
)
from tests.helpers import TIMESTAMP
from tests.realserver import RealServer, free_port, start_server


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealServer]:
    """One real server for the tests that only touch their own users and definitions."""
    real = start_server(tmp_path_factory.mktemp("client") / "achievements.db")
    try:
        yield real
    finally:
        real.stop()


@pytest.fixture
async def sidecar(shared: RealServer) -> AsyncIterator[AchievementsClient]:
    async with AchievementsClient(shared.base_url, backoff=0) as client:
        yield client


def unique(prefix: str = "k") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def fresh_user() -> int:
    return 10**17 + uuid.uuid4().int % 10**17


def rows(db: Path, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return connection.execute(statement, params).fetchall()


# --- every method ---------------------------------------------------------------------------


async def test_definitions_crud_by_id_and_key(sidecar: AchievementsClient) -> None:
    key = unique()
    created = await sidecar.create_definition(
        "Chatterbox", description="Send messages", key=key, metadata={"target": 10, "icon": "x"}
    )
    assert isinstance(created, Achievement)
    assert (created.name, created.description, created.key) == ("Chatterbox", "Send messages", key)
    assert metadata_of(created) == {"target": 10, "icon": "x"}
    assert TIMESTAMP.match(created.created_at) and created.updated_at == created.created_at

    assert await sidecar.get_definition(created.id) == created
    assert await sidecar.get_definition(key) == created
    assert created in await sidecar.list_definitions()

    renamed = await sidecar.update_definition(created.id, name="Chatterbox II")
    assert (renamed.name, renamed.description, renamed.key) == (
        "Chatterbox II",
        "Send messages",
        key,
    )
    assert renamed.updated_at > created.updated_at
    cleared = await sidecar.update_definition(created.id, description=None, key=None, metadata={})
    assert (cleared.name, cleared.description, cleared.key) == ("Chatterbox II", None, None)
    assert metadata_of(cleared) == {}

    other = unique()
    first = await sidecar.put_definition(other, "Synced", metadata={"points": 5})
    again = await sidecar.put_definition(other, "Synced again", description="replaced")
    assert again.id == first.id
    assert (again.name, again.description, metadata_of(again)) == ("Synced again", "replaced", {})

    assert await sidecar.delete_definition(other) == again
    assert await sidecar.delete_definition(created.id) == cleared
    with pytest.raises(AchievementNotFound):
        await sidecar.get_definition(created.id)
    with pytest.raises(AchievementNotFound):
        await sidecar.get_definition(other)


async def test_progress_methods(sidecar: AchievementsClient) -> None:
    user, key = fresh_user(), unique()
    messages = await sidecar.put_definition(key, "Messages", metadata={"target": 3})
    badge = await sidecar.create_definition("Badge")

    upserted = await sidecar.upsert_progress(user, messages.id, {"current": 1, "note": "hi"})
    assert isinstance(upserted, UserAchievement)
    assert (upserted.user_id, upserted.achievement_id, upserted.unlocked_at) == (
        user,
        messages.id,
        None,
    )
    assert metadata_of(upserted) == {"current": 1, "note": "hi"}
    assert await sidecar.get_progress(user, key) == upserted
    assert await sidecar.get_progress(user, badge.id) is None
    assert await sidecar.get_progress(fresh_user(), key) is None

    applied = await sidecar.apply(
        user,
        key,
        [
            Op.inc("current"),
            Op.max("best", 7),
            Op.min("low", 2),
            Op.set("a.b", [1]),
            Op.remove("note"),
        ],
        unlock_when=[When.gte("current", 3)],
    )
    assert isinstance(applied, UserAchievementChange)
    assert applied.newly_unlocked is False and applied.unlocked_at is None
    assert metadata_of(applied) == {"current": 2, "best": 7, "low": 2, "a": {"b": [1]}}
    applied = await sidecar.apply(
        user, messages.id, [Op.inc("current")], unlock_when=[When.eq("current", 3)]
    )
    assert applied.newly_unlocked is True and TIMESTAMP.match(applied.unlocked_at or "")

    unlocked = await sidecar.unlock(user, badge.id)
    assert unlocked.newly_unlocked is True
    repeated = await sidecar.unlock(user, badge.id)
    assert repeated.newly_unlocked is False and repeated.unlocked_at == unlocked.unlocked_at

    listed = await sidecar.list_progress(user)
    assert [row.achievement_id for row in listed] == [badge.id, messages.id]
    assert [row.id for row in await sidecar.list_progress(user, unlocked_only=True)] == [
        row.id for row in listed
    ]
    assert await sidecar.list_progress(fresh_user()) == []

    deleted = await sidecar.delete_progress(user, key)
    assert deleted.id == applied.id and metadata_of(deleted) == metadata_of(applied)
    with pytest.raises(ProgressNotFound):
        await sidecar.delete_progress(user, key)

    assert await sidecar.delete_user(user) == DeletedUser(user, 1)
    with pytest.raises(UserNotFound):
        await sidecar.delete_user(user)


async def test_batch_results_are_typed_per_item(sidecar: AchievementsClient) -> None:
    user, key = fresh_user(), unique()
    achievement = await sidecar.put_definition(key, "Batched")
    results = await sidecar.batch(
        [
            Batch.upsert(user, key, {"current": 5}),
            Batch.apply(user, achievement.id, [Op.inc("current", 5)], [When.gte("current", 10)]),
            Batch.unlock(user, key),
            Batch.delete(user, key),
        ]
    )
    upsert, apply, unlock, delete = results
    assert type(upsert) is UserAchievement and metadata_of(upsert) == {"current": 5}
    assert isinstance(apply, UserAchievementChange) and apply.newly_unlocked is True
    assert isinstance(unlock, UserAchievementChange) and unlock.newly_unlocked is False
    assert type(delete) is UserAchievement and delete.unlocked_at == apply.unlocked_at
    assert await sidecar.get_progress(user, key) is None

    with pytest.raises(ValidationFailed) as failed:
        await sidecar.batch(
            [Batch.upsert(user, key), Batch.apply(user, key, [Op.inc("current", "x")])]  # type: ignore[arg-type]
        )
    problem = failed.value.problem
    assert (problem.status, problem.code, problem.index) == (422, "VALIDATION_FAILED", 1)
    assert [error.field for error in problem.errors or []] == ["ops.0.value"]
    assert await sidecar.get_progress(user, key) is None  # all or nothing


async def test_feed_stats_leaderboard_and_operations(server: RealServer) -> None:
    async with AchievementsClient(server.base_url, backoff=0) as sidecar:
        first = await sidecar.create_definition("First")
        second = await sidecar.create_definition("Second")
        await sidecar.upsert_progress(3, first.id)
        await sidecar.unlock(1, first.id)
        await sidecar.unlock(2, first.id)
        await sidecar.unlock(2, second.id)

        events = await sidecar.events()
        assert [(e.id, e.user_id, e.achievement_id) for e in events] == [
            (1, 1, first.id),
            (2, 2, first.id),
            (3, 2, second.id),
        ]
        assert all(isinstance(e, Event) and e.type == "achievement.unlocked" for e in events)
        assert [e.id for e in await sidecar.events(after=1, limit=1)] == [2]

        assert await sidecar.stats() == [
            AchievementStats(first.id, "First", 2, 1, 2 / 3),
            AchievementStats(second.id, "Second", 1, 0, 1 / 3),
        ]
        board = await sidecar.leaderboard()
        assert [(e.rank, e.user_id, e.unlocked_count) for e in board] == [(1, 2, 2), (2, 1, 1)]
        assert [e.user_id for e in await sidecar.leaderboard(limit=1, offset=1)] == [1]
        entry = await sidecar.leaderboard_entry(1)
        assert entry == LeaderboardEntry(2, 1, 1, events[0].unlocked_at)
        with pytest.raises(UserNotFound):
            await sidecar.leaderboard_entry(3)

        health = await sidecar.health()
        assert isinstance(health, Health) and health.status == "ok"
        assert "sidecar_http_requests_total" in await sidecar.metrics()
        document = await sidecar.openapi()
        assert "/users/achievements/progress/apply" in document["paths"]


async def test_stream_live_and_resumed(server: RealServer) -> None:
    async with AchievementsClient(server.base_url, backoff=0) as sidecar:
        badge = await sidecar.create_definition("Streamed")
        await sidecar.unlock(1, badge.id)
        await sidecar.unlock(2, badge.id)

        stream = sidecar.stream(after=1)
        try:
            replayed = await asyncio.wait_for(anext(stream), 10)
            assert (replayed.id, replayed.user_id) == (2, 2)
            await sidecar.unlock(3, badge.id)  # arrives live
            live = await asyncio.wait_for(anext(stream), 10)
            assert (live.id, live.user_id, live.achievement_id) == (3, 3, badge.id)
        finally:
            await stream.aclose()


class DropAfterFirstEvent(httpx.AsyncByteStream):
    """Passes the server's bytes on until the first complete event, then breaks the connection."""

    def __init__(self, inner: httpx.AsyncByteStream) -> None:
        self.inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            yield chunk
            if b"data:" in chunk:
                raise httpx.ReadError("simulated: the connection dropped")

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_stream_reconnects_with_last_event_id(server: RealServer) -> None:
    inner = httpx.AsyncHTTPTransport()
    resumed_from: list[str | None] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        resumed_from.append(request.headers.get("last-event-id"))
        response = await inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=DropAfterFirstEvent(response.stream),
        )

    async with AchievementsClient(server.base_url, backoff=0) as writer:
        badge = await writer.create_definition("Dropped")
        for user in (1, 2, 3):
            await writer.unlock(user, badge.id)

    transport = httpx.MockTransport(handler)
    async with AchievementsClient(server.base_url, backoff=0, transport=transport) as sidecar:
        stream = sidecar.stream()
        try:
            got = [await asyncio.wait_for(anext(stream), 10) for _ in range(3)]
        finally:
            await stream.aclose()
    await inner.aclose()
    assert [event.id for event in got] == [1, 2, 3]  # nothing lost, nothing repeated
    assert resumed_from == ["0", "1", "2"]


# --- errors ---------------------------------------------------------------------------------


async def test_error_answers_raise_their_exception(sidecar: AchievementsClient) -> None:
    user, key = fresh_user(), unique()
    achievement = await sidecar.put_definition(key, "Errors")

    with pytest.raises(AchievementNotFound) as missing:
        await sidecar.unlock(user, unique())
    assert missing.value.problem.status == 404
    assert missing.value.problem.code == "ACHIEVEMENT_NOT_FOUND"
    assert missing.value.problem.title
    assert isinstance(missing.value, SidecarError) and missing.value.status == 404

    with pytest.raises(ValidationFailed) as invalid:
        await sidecar.create_definition("")
    assert [(e.field, bool(e.message)) for e in invalid.value.problem.errors or []] == [
        ("name", True)
    ]
    with pytest.raises(ValidationFailed) as bad_id:
        await sidecar.get_definition(0)
    assert [e.field for e in bad_id.value.problem.errors or []] == ["id"]

    with pytest.raises(KeyConflict):
        await sidecar.create_definition("Twin", key=key)
    await sidecar.upsert_progress(user, key, {"current": "three", "list": []})
    with pytest.raises(NotANumber):
        await sidecar.apply(user, key, [Op.inc("current")])
    with pytest.raises(InvalidPath):
        await sidecar.apply(user, key, [Op.set("list.x", 1)])
    with pytest.raises(InvalidPath):
        await sidecar.apply(user, key, [Op.set("", 1)])

    reused = unique("key")
    await sidecar.unlock(user, achievement.id, idempotency_key=reused)
    with pytest.raises(IdempotencyKeyReused) as twice:
        await sidecar.unlock(fresh_user(), achievement.id, idempotency_key=reused)
    assert twice.value.problem.status == 422
    # Nothing of the refused requests was applied.
    row = await sidecar.get_progress(user, key)
    assert row is not None and metadata_of(row) == {"current": "three", "list": []}


def test_every_code_of_the_service_has_its_exception() -> None:
    assert set(ERRORS) == set(TITLES)
    for code, kind in ERRORS.items():
        problem = {"status": 400, "code": code, "title": TITLES[code], "detail": "d", "index": 4}

        def answer(request: httpx.Request, body: dict[str, Any] = problem) -> httpx.Response:
            return httpx.Response(
                400, json=body, headers={"content-type": "application/problem+json"}
            )

        with (
            SyncAchievementsClient(
                "http://127.0.0.1:9", transport=httpx.MockTransport(answer)
            ) as sidecar,
            pytest.raises(kind) as raised,
        ):
            sidecar.health()
        assert type(raised.value) is kind and kind.__name__ != "SidecarError"
        assert (raised.value.problem.code, raised.value.problem.index) == (code, 4)
        assert raised.value.problem.detail == "d"


def test_an_answer_that_is_no_problem_body_is_still_a_sidecar_error() -> None:
    def proxy(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    transport = httpx.MockTransport(proxy)
    with (
        SyncAchievementsClient("http://127.0.0.1:9", transport=transport) as sidecar,
        pytest.raises(SidecarError) as raised,
    ):
        sidecar.stats()
    assert type(raised.value) is SidecarError
    assert (raised.value.problem.status, raised.value.problem.code) == (502, "HTTP_502")
    assert raised.value.problem.detail == "<html>Bad Gateway</html>"


async def test_token_from_argument_or_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guarded = start_server(tmp_path / "guarded.db", {"SIDECAR_TOKEN": "s3cret"})
    try:
        async with AchievementsClient(guarded.base_url) as anonymous:
            assert (await anonymous.health()).status == "ok"  # /health needs no token
            with pytest.raises(Unauthorized) as refused:
                await anonymous.list_definitions()
            assert refused.value.problem.status == 401
        async with AchievementsClient(guarded.base_url, token="s3cret") as allowed:
            assert await allowed.list_definitions() == []
        monkeypatch.setenv("SIDECAR_URL", guarded.base_url + "/")
        monkeypatch.setenv("SIDECAR_TOKEN", "s3cret")
        monkeypatch.setenv("SIDECAR_TIMEOUT", "2.5")
        async with AchievementsClient() as from_env:
            assert (from_env.base_url, from_env.config.timeout) == (guarded.base_url, 2.5)
            assert (await from_env.create_definition("Env")).name == "Env"
        with SyncAchievementsClient() as from_env_sync:
            assert [a.name for a in from_env_sync.list_definitions()] == ["Env"]
    finally:
        guarded.stop()


def test_defaults_without_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SIDECAR_URL", "SIDECAR_TOKEN", "SIDECAR_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    with SyncAchievementsClient() as sidecar:
        assert sidecar.base_url == "http://127.0.0.1:8787"
        assert (sidecar.config.token, sidecar.config.timeout, sidecar.config.retries) == (
            None,
            10.0,
            3,
        )


# --- retries and idempotency keys -----------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    key: str | None
    body: bytes
    replayed: str | None


class AnswerLost:
    """A MockTransport handler in front of the real server: every request reaches the server,
    but the first `losses` answers are thrown away and the client gets a ReadTimeout, as when the
    sidecar did the write and the answer came too late."""

    def __init__(self, losses: int) -> None:
        self.losses = losses
        self.seen: list[Seen] = []
        self.inner = httpx.AsyncHTTPTransport()
        self.inner_sync = httpx.HTTPTransport()

    def _after(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        self.seen.append(
            Seen(
                request.method,
                request.url.path,
                request.headers.get("idempotency-key"),
                request.content,
                response.headers.get("idempotent-replayed"),
            )
        )
        if self.losses > 0:
            self.losses -= 1
            raise httpx.ReadTimeout("simulated: the answer was lost", request=request)
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    async def handle(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        return self._after(request, response)

    def handle_sync(self, request: httpx.Request) -> httpx.Response:
        response = self.inner_sync.handle_request(request)
        response.read()
        return self._after(request, response)


async def test_write_retried_after_a_lost_answer_counts_once(shared: RealServer) -> None:
    user, key = fresh_user(), unique()
    async with AchievementsClient(shared.base_url, backoff=0) as setup:
        await setup.put_definition(key, "Retried", metadata={"target": 1})
        cursor = max([e.id for e in await setup.events(limit=1000)], default=0)

    lost = AnswerLost(losses=2)
    transport = httpx.MockTransport(lost.handle)
    async with AchievementsClient(shared.base_url, backoff=0, transport=transport) as sidecar:
        change = await sidecar.apply(
            user, key, [Op.inc("current")], unlock_when=[When.gte("current", 1)]
        )
        # The answer is the first (stored) one: this request unlocked it.
        assert change.newly_unlocked is True
        assert metadata_of(change) == {"current": 1}

        assert len(lost.seen) == 3
        assert len({(s.method, s.path, s.key, s.body) for s in lost.seen}) == 1
        assert lost.seen[0].key is not None and uuid.UUID(lost.seen[0].key).version == 4
        assert [s.replayed for s in lost.seen] == [None, "true", "true"]

        row = await sidecar.get_progress(user, key)
        assert row is not None and metadata_of(row) == {"current": 1}
        events = await sidecar.events(after=cursor, limit=1000)
        assert [e.user_id for e in events if e.user_id == user] == [user]
    assert rows(shared.db_path, "SELECT count(*) FROM events WHERE user_id = ?", user) == [(1,)]
    await lost.inner.aclose()


def test_sync_write_retried_after_a_lost_answer_counts_once(shared: RealServer) -> None:
    user = fresh_user()
    lost = AnswerLost(losses=1)
    transport = httpx.MockTransport(lost.handle_sync)
    with SyncAchievementsClient(shared.base_url, backoff=0, transport=transport) as sidecar:
        achievement = sidecar.create_definition(unique("Sync"))
        assert [s.replayed for s in lost.seen] == [None, "true"]
        assert lost.seen[0].key == lost.seen[1].key
        named = rows(shared.db_path, "SELECT id FROM achievements WHERE name = ?", achievement.name)
        assert named == [(achievement.id,)]  # created once
        assert [a.id for a in sidecar.list_definitions() if a.name == achievement.name] == [
            achievement.id
        ]
        lost.losses = 1
        sidecar.upsert_progress(user, achievement.id, {"n": 1})
        assert rows(shared.db_path, "SELECT count(*) FROM users WHERE id = ?", user) == [(1,)]
    lost.inner_sync.close()


async def test_detailed_answers_say_whether_they_were_replays(shared: RealServer) -> None:
    user, key = fresh_user(), unique()
    async with AchievementsClient(shared.base_url, backoff=0) as sidecar:
        created = await sidecar.detailed.put_definition(key, "Replays")
        assert isinstance(created, Answer) and isinstance(created.value, Achievement)
        assert (created.status, created.replayed) == (201, False)
        assert created.idempotency_key is not None
        assert (await sidecar.detailed.put_definition(key, "Replays")).status == 200

        first = await sidecar.detailed.unlock(user, key, idempotency_key="msg-" + key)
        again = await sidecar.detailed.unlock(user, key, idempotency_key="msg-" + key)
        assert (first.replayed, first.value.newly_unlocked) == (False, True)
        # The stored answer, newly_unlocked and all: only `replayed` tells it was done before.
        assert (again.replayed, again.value) == (True, first.value)
        assert again.idempotency_key == "msg-" + key
        fresh = await sidecar.detailed.unlock(user, key)
        assert (fresh.replayed, fresh.value.newly_unlocked) == (False, False)

        read = await sidecar.detailed.get_progress(user, key)
        assert (read.status, read.replayed, read.idempotency_key) == (200, False, None)
        assert read.value is not None and read.value.unlocked_at == first.value.unlocked_at

    # A retry after a lost answer gets the stored answer: replayed, and counted once.
    lost = AnswerLost(losses=1)
    transport = httpx.MockTransport(lost.handle_sync)
    with SyncAchievementsClient(shared.base_url, backoff=0, transport=transport) as blocking:
        applied = blocking.detailed.apply(user, key, [Op.inc("current")])
        assert (applied.replayed, metadata_of(applied.value)) == (True, {"current": 1})
        assert [s.replayed for s in lost.seen] == [None, "true"]
    lost.inner_sync.close()


async def test_each_write_has_its_own_key_unless_one_is_given(shared: RealServer) -> None:
    lost = AnswerLost(losses=0)
    transport = httpx.MockTransport(lost.handle)
    async with AchievementsClient(shared.base_url, transport=transport) as sidecar:
        achievement = await sidecar.create_definition(unique("Keys"))
        await sidecar.unlock(fresh_user(), achievement.id)
        await sidecar.unlock(fresh_user(), achievement.id, idempotency_key="my-key-" + unique())
        await sidecar.get_definition(achievement.id)
    keys = [s.key for s in lost.seen]
    assert keys[0] and keys[1] and keys[0] != keys[1]
    assert keys[2] is not None and keys[2].startswith("my-key-")
    assert keys[3] is None  # reads carry none
    await lost.inner.aclose()


async def test_unreachable_sidecar_gives_up_after_bounded_retries() -> None:
    attempts: list[str | None] = []
    inner = httpx.AsyncHTTPTransport()

    async def count(request: httpx.Request) -> httpx.Response:
        attempts.append(request.headers.get("idempotency-key"))
        return await inner.handle_async_request(request)

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    transport = httpx.MockTransport(count)
    async with AchievementsClient(url, retries=2, backoff=0, transport=transport) as sidecar:
        with pytest.raises(SidecarUnavailable) as raised:
            await sidecar.unlock(1, 1)
    assert len(attempts) == 3 and len(set(attempts)) == 1
    assert raised.value.problem.status == 0
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    await inner.aclose()


# --- the sync client ------------------------------------------------------------------------


def test_sync_client_every_method(server: RealServer) -> None:
    with SyncAchievementsClient(server.base_url, backoff=0) as sidecar:
        created = sidecar.create_definition("Sync", key="sync", metadata={"target": 2})
        assert sidecar.get_definition("sync") == created == sidecar.get_definition(created.id)
        assert sidecar.list_definitions() == [created]
        assert sidecar.update_definition(created.id, name="Sync!").name == "Sync!"
        assert sidecar.put_definition("other", "Other").key == "other"
        assert sidecar.upsert_progress(1, "sync", {"current": 1}).user_id == 1
        change = sidecar.apply(1, "sync", [Op.inc("current")], unlock_when=[When.gte("current", 2)])
        assert change.newly_unlocked is True
        assert sidecar.unlock(2, "other").newly_unlocked is True
        row = sidecar.get_progress(1, created.id)
        assert row is not None and metadata_of(row) == {"current": 2}
        assert [r.user_id for r in sidecar.list_progress(1, unlocked_only=True)] == [1]
        results = sidecar.batch([Batch.unlock(3, "sync"), Batch.upsert(3, "other")])
        assert [type(r) for r in results] == [UserAchievementChange, UserAchievement]
        assert [e.id for e in sidecar.events(after=0, limit=10)] == [1, 2, 3]
        stream = sidecar.stream(after=2)
        assert next(stream).id == 3
        stream.close()
        assert [s.unlocked_count for s in sidecar.stats()] == [2, 1]
        assert [e.user_id for e in sidecar.leaderboard()] == [1, 2, 3]
        assert sidecar.leaderboard_entry(3).rank == 3
        assert sidecar.delete_progress(3, "other").user_id == 3
        assert sidecar.delete_user(3) == DeletedUser(3, 1)
        assert sidecar.delete_definition("other").key == "other"
        assert sidecar.health().status == "ok"
        assert "sidecar_table_rows" in sidecar.metrics()
        assert sidecar.openapi()["openapi"].startswith("3.1")
        with pytest.raises(AchievementNotFound):
            sidecar.delete_definition(created.id + 100)


def test_both_clients_offer_the_same_methods() -> None:
    def public(kind: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in inspect.getmembers(kind, inspect.isfunction)
            if not name.startswith("_") and name not in ("close", "aclose", "__init__")
        }

    async_methods, sync_methods = public(AchievementsClient), public(SyncAchievementsClient)
    assert set(async_methods) == set(sync_methods)
    assert len(async_methods) == 22  # every route of API.md
    for name, signature in async_methods.items():
        assert list(signature.parameters) == list(sync_methods[name].parameters), name
    # `detailed` has them all but the stream, with the same parameters.
    for detailed in (public(AsyncDetailed), public(SyncDetailed)):
        assert set(detailed) == set(async_methods) - {"stream"}
        for name, signature in detailed.items():
            assert signature.parameters == async_methods[name].parameters, name


def test_request_bodies_are_plain_json() -> None:
    """Numbers as JSON numbers (Decimal too), metadata passed through as given."""
    bodies: list[Any] = []

    def capture(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.headers["content-type"] == "application/json"
        change = {
            "id": 1,
            "userId": 5,
            "achievementId": 7,
            "unlockedAt": None,
            "metadata": {},
            "createdAt": "2026-01-01T00:00:00.000Z",
            "updatedAt": "2026-01-01T00:00:00.000Z",
            "newlyUnlocked": False,
        }
        return httpx.Response(200, content=msgspec.json.encode(change))

    from decimal import Decimal

    transport = httpx.MockTransport(capture)
    with SyncAchievementsClient("http://127.0.0.1:9", transport=transport) as sidecar:
        sidecar.apply(
            5, 7, [Op.inc("score", Decimal("0.1")), Op.remove("x")], unlock_when=[When.lt("y", 2)]
        )
        sidecar.apply(5, "seven", [])
    assert bodies == [
        {
            "userId": 5,
            "achievementId": 7,
            "ops": [{"op": "inc", "path": "score", "value": 0.1}, {"op": "remove", "path": "x"}],
            "unlockWhen": [{"path": "y", "lt": 2}],
        },
        {"userId": 5, "achievementKey": "seven", "ops": []},
    ]
