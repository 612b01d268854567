"""Crash torture against the real server: mixed concurrent writes, SIGKILL at a random moment,
restart on the same file, retry every unanswered request with its Idempotency-Key; the database
must then equal a model built from the requests, exactly.

Each task owns its users' rows and sends its requests one after another, so the model does not
depend on how the tasks interleave nor on which requests landed before the kill: an unanswered
request was either committed (its retry is a replay) or not (its retry applies it), and either way
it counts once, in its place. Every answer is held to the model too, replays included.

SIDECAR_TORTURE_ROUNDS sets the number of rounds (one kill each; default 20),
SIDECAR_TORTURE_SEED the workload's random seed (printed, to replay a failure's workload).
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import random
import signal
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults import sidecar
from tests.realserver import start_server

ROUNDS = int(os.environ.get("SIDECAR_TORTURE_ROUNDS", "20"))
SEED = int(os.environ.get("SIDECAR_TORTURE_SEED", str(random.randrange(2**32))))
TASKS = 12
USERS_PER_TASK = 2
ACHIEVEMENTS = 3
# An apply unlocks its row once `count` reaches this.
THRESHOLD = 4
# Snowflake-sized user ids: they must come back exact.
BASE_USER = 80351110224678912
KILL_AFTER = (0.05, 0.6)
# A request that fails without a kill (should not happen) is tried this often before giving up.
MAX_ATTEMPTS = 50

PROGRESS = "/users/achievements/progress"
JSON_HEADERS = {"Content-Type": "application/json"}
ROUTES = {
    "upsert": ("POST", PROGRESS),
    "apply": ("POST", f"{PROGRESS}/apply"),
    "unlock": ("PUT", f"{PROGRESS}/unlock"),
}

Pair = tuple[int, int]


class Failure(Exception):
    """The error the model expects for a request (nothing of it applied)."""

    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.index: int | None = None


@dataclass(eq=False)
class Row:
    metadata: dict[str, Any]
    unlocked: bool = False
    # Learned from the first answer that shows the row unlocked; every later one must agree.
    unlocked_at: str | None = None


@dataclass
class Item:
    """What one answer (or one batch result) must show."""

    pair: Pair
    row: Row
    metadata: dict[str, Any]
    unlocked: bool
    newly: bool | None  # unlock and apply answer newlyUnlocked; upsert and delete do not


@dataclass
class State:
    """One task's part of the model: only its own users' rows."""

    rows: dict[Pair, Row] = field(default_factory=dict)
    users: set[int] = field(default_factory=set)
    events: Counter[Pair] = field(default_factory=Counter)

    def copy(self) -> State:
        return State(copy.deepcopy(self.rows), set(self.users), Counter(self.events))

    def row(self, pair: Pair) -> Row:
        if pair not in self.rows:
            self.rows[pair] = Row({})
        self.users.add(pair[0])
        return self.rows[pair]

    def upsert(self, pair: Pair, metadata: dict[str, Any]) -> Item:
        row = self.row(pair)
        row.metadata = copy.deepcopy(metadata)
        return Item(pair, row, copy.deepcopy(row.metadata), row.unlocked, None)

    def unlock_row(self, pair: Pair, row: Row) -> bool:
        if row.unlocked:
            return False
        row.unlocked = True
        self.events[pair] += 1
        return True

    def apply(self, pair: Pair, sequence: int) -> Item:
        row = self.row(pair)
        row.metadata["count"] = row.metadata.get("count", 0) + 1
        row.metadata["last"] = sequence
        newly = row.metadata["count"] >= THRESHOLD and self.unlock_row(pair, row)
        return Item(pair, row, copy.deepcopy(row.metadata), row.unlocked, newly)

    def unlock(self, pair: Pair) -> Item:
        row = self.row(pair)
        newly = self.unlock_row(pair, row)
        return Item(pair, row, copy.deepcopy(row.metadata), row.unlocked, newly)

    def delete(self, pair: Pair) -> Item:
        row = self.rows.pop(pair, None)
        if row is None:
            raise Failure(404, "PROGRESS_NOT_FOUND")
        return Item(pair, row, copy.deepcopy(row.metadata), row.unlocked, None)

    def delete_user(self, user: int) -> int:
        if user not in self.users:
            raise Failure(404, "USER_NOT_FOUND")
        gone = [pair for pair in self.rows if pair[0] == user]
        for pair in gone:
            del self.rows[pair]
        self.users.discard(user)
        return len(gone)


@dataclass
class Call:
    """One logical request: sent, and retried with the same key and bytes until answered."""

    method: str
    path: str
    key: str
    body: bytes | None = None
    params: dict[str, int] | None = None
    items: list[Item] | None = None  # on success: the single answer, or the batch's results
    deleted_user: tuple[int, int] | None = None  # on success: DELETE /users/{id}'s answer
    failure: Failure | None = None


@dataclass
class Tally:
    requests: int = 0
    unanswered: int = 0  # got no answer from the server that was killed
    replayed: int = 0  # ... and had been committed: the retry got the stored answer
    reapplied: int = 0  # ... and had not been: the retry applied it
    transport_errors: int = 0
    kills: int = 0
    in_flight_at_kill: list[int] = field(default_factory=list)


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


class Workload:
    """One task's requests: random, reproducible from the seed, and modelled as they are made."""

    def __init__(self, task: int, achievements: list[int]) -> None:
        self.task = task
        self.random = random.Random(f"{SEED}-{task}")
        self.users = [BASE_USER + task * USERS_PER_TASK + n for n in range(USERS_PER_TASK)]
        self.achievements = achievements
        self.state = State()
        self.sequence = 0

    def pair(self) -> Pair:
        return self.random.choice(self.users), self.random.choice(self.achievements)

    def metadata(self) -> dict[str, Any]:
        value: dict[str, Any] = {"note": "x" * self.random.randrange(0, 3000)}
        if self.random.random() < 0.7:
            value["count"] = self.random.randrange(0, THRESHOLD)
        value["nested"] = {"task": self.task, "sequence": self.sequence, "big": 2**64 + 1}
        return value

    def item(self, state: State, kind: str) -> tuple[dict[str, Any], Item | Failure]:
        """A batch item or single body of this kind, and what it does to `state`."""
        user, achievement = self.pair()
        body: dict[str, Any] = {"userId": user, "achievementId": achievement}
        if kind == "upsert":
            body["metadata"] = self.metadata()
            return body, state.upsert((user, achievement), body["metadata"])
        if kind == "apply":
            body["ops"] = [
                {"op": "inc", "path": "count", "value": 1},
                {"op": "set", "path": "last", "value": self.sequence},
            ]
            body["unlockWhen"] = [{"path": "count", "gte": THRESHOLD}]
            return body, state.apply((user, achievement), self.sequence)
        if kind == "unlock":
            return body, state.unlock((user, achievement))
        try:
            return body, state.delete((user, achievement))
        except Failure as failure:  # no such row: the model expects a 404
            return body, failure

    def next_call(self, round_number: int) -> Call:
        self.sequence += 1
        key = f"torture-{round_number}-{self.task}-{self.sequence}"
        kind = self.random.choices(
            ["upsert", "apply", "unlock", "delete", "batch", "user"], [20, 35, 8, 12, 22, 3]
        )[0]
        if kind == "user":
            user = self.random.choice(self.users)
            call = Call("DELETE", f"/users/{user}", key)
            try:
                call.deleted_user = (user, self.state.delete_user(user))
            except Failure as failure:
                call.failure = failure
            return call
        if kind == "batch":
            return self.batch(key)
        body, expected = self.item(self.state, kind)
        if kind == "delete":
            call = Call("DELETE", PROGRESS, key, params=body)
        else:
            method, path = ROUTES[kind]
            call = Call(method, path, key, body=encode(body))
        if isinstance(expected, Failure):
            call.failure = expected
        else:
            call.items = [expected]
        return call

    def batch(self, key: str) -> Call:
        working = self.state.copy()
        operations = []
        items = []
        failure: Failure | None = None
        for index in range(self.random.randrange(2, 6)):
            kind = self.random.choices(["upsert", "apply", "unlock", "delete"], [3, 5, 2, 2])[0]
            body, expected = self.item(working, kind)
            if isinstance(expected, Item):
                items.append(expected)
            elif failure is None:
                expected.index = index
                failure = expected
            operations.append({"type": kind, **body})
        call = Call("POST", f"{PROGRESS}/batch", key, body=encode({"operations": operations}))
        if failure is None:
            self.state = working  # all or nothing
            call.items = items
        else:
            call.failure = failure
        return call


class Cluster:
    """The current server, a client on it, and the restart after each kill."""

    def __init__(self, db_path: Path) -> None:
        self.db_path = db_path
        self.server = start_server(db_path)
        self.client = self.new_client()
        self.generation = 0
        self.up = asyncio.Event()
        self.up.set()
        self.issuing = True
        self.in_flight = 0

    def new_client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=TASKS * 2, max_keepalive_connections=TASKS * 2)
        return httpx.AsyncClient(base_url=self.server.base_url, limits=limits, timeout=30)

    async def kill_and_restart(self, delay: float, tally: Tally) -> None:
        await asyncio.sleep(delay)
        self.up.clear()
        self.issuing = False
        tally.in_flight_at_kill.append(self.in_flight)
        self.server.kill()
        self.server.stop()
        tally.kills += 1
        self.server = await asyncio.to_thread(start_server, self.db_path)
        old = self.client
        self.client = self.new_client()
        self.generation += 1
        self.up.set()
        await old.aclose()

    async def send(self, call: Call, tally: Tally) -> httpx.Response:
        """Send until answered; after a transport error, wait for the restarted server."""
        first_try = True
        for _ in range(MAX_ATTEMPTS):
            generation = self.generation
            headers = {"Idempotency-Key": call.key}
            if call.body is not None:
                headers.update(JSON_HEADERS)
            self.in_flight += 1
            try:
                response = await self.client.request(
                    call.method, call.path, content=call.body, params=call.params, headers=headers
                )
            except httpx.TransportError:
                tally.transport_errors += 1
                if first_try:
                    tally.unanswered += 1
                    first_try = False
                await self.wait_newer(generation)
                continue
            finally:
                self.in_flight -= 1
            replayed = response.headers.get("idempotent-replayed") == "true"
            if first_try:
                assert not replayed, f"{call.key}: a first attempt was answered as a replay"
            elif replayed:
                tally.replayed += 1
            else:
                tally.reapplied += 1
            return response
        raise AssertionError(f"{call.key}: no answer after {MAX_ATTEMPTS} attempts")

    async def wait_newer(self, generation: int) -> None:
        if self.generation != generation:
            return  # restarted already: retry at once
        if self.up.is_set():
            await asyncio.sleep(0.05)  # an error without a kill: retry on the same server
            return
        await asyncio.wait_for(self.up.wait(), timeout=60)


def check_item(item: Item, got: dict[str, Any], where: str) -> None:
    assert got["userId"] == item.pair[0], where
    assert got["achievementId"] == item.pair[1], where
    assert got["metadata"] == item.metadata, where
    assert (got["unlockedAt"] is not None) == item.unlocked, where
    if item.unlocked:
        if item.row.unlocked_at is None:
            item.row.unlocked_at = got["unlockedAt"]
        assert got["unlockedAt"] == item.row.unlocked_at, f"{where}: unlockedAt moved"
    if item.newly is not None:
        assert got["newlyUnlocked"] is item.newly, where


def check_answer(call: Call, response: httpx.Response) -> None:
    where = f"{call.method} {call.path} key={call.key} seed={SEED}: {response.text[:500]}"
    if call.failure is not None:
        assert response.status_code == call.failure.status, where
        assert response.headers["content-type"].startswith("application/problem+json"), where
        problem = response.json()
        assert problem["code"] == call.failure.code, where
        assert problem.get("index") == call.failure.index, where
        return
    assert response.status_code == 200, where
    body = response.json()
    if call.deleted_user is not None:
        assert body == {"userId": call.deleted_user[0], "deletedProgress": call.deleted_user[1]}
        return
    assert call.items is not None
    results = body["results"] if call.path.endswith("/batch") else [body]
    assert len(results) == len(call.items), where
    for item, got in zip(call.items, results, strict=True):
        check_item(item, got, where)


async def run_task(cluster: Cluster, workload: Workload, round_number: int, tally: Tally) -> int:
    successes = 0
    while cluster.issuing:
        call = workload.next_call(round_number)
        tally.requests += 1
        response = await cluster.send(call, tally)
        check_answer(call, response)
        successes += call.failure is None
    return successes


async def fetch_events(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    while True:
        after = events[-1]["id"] if events else 0
        page = await client.get(
            "/users/achievements/events", params={"after": after, "limit": 1000}
        )
        assert page.status_code == 200, page.text
        batch = page.json()
        if not batch:
            return events
        events += batch


def merged(workloads: list[Workload]) -> State:
    total = State()
    for workload in workloads:
        total.rows.update(workload.state.rows)
        total.users |= workload.state.users
        total.events.update(workload.state.events)
    return total


async def check_over_http(client: httpx.AsyncClient, workloads: list[Workload]) -> None:
    model = merged(workloads)
    for workload in workloads:
        for user in workload.users:
            listed = await client.get(f"{PROGRESS}/list", params={"userId": user})
            assert listed.status_code == 200, listed.text
            stored = {(row["userId"], row["achievementId"]): row for row in listed.json()}
            mine = {pair: row for pair, row in model.rows.items() if pair[0] == user}
            assert stored.keys() == mine.keys(), f"user {user} seed={SEED}"
            for pair, row in mine.items():
                got = stored[pair]
                assert got["metadata"] == row.metadata, f"{pair} seed={SEED}"
                assert got["unlockedAt"] == (row.unlocked_at if row.unlocked else None), pair
    events = await fetch_events(client)
    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert Counter((e["userId"], e["achievementId"]) for e in events) == model.events
    stats = (await client.get("/users/achievements/stats")).json()
    with_progress = len({user for user, _ in model.rows})
    for entry in stats:
        mine = [row for (_, a), row in model.rows.items() if a == entry["achievementId"]]
        unlocked = sum(row.unlocked for row in mine)
        assert entry["unlockedCount"] == unlocked, entry
        assert entry["inProgressCount"] == len(mine) - unlocked, entry
        assert entry["unlockRate"] == pytest.approx(unlocked / with_progress if mine else 0)


def check_file(db_path: Path, workloads: list[Workload], successes: int) -> None:
    model = merged(workloads)
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = connection.execute(
            "SELECT user_id, achievement_id, metadata, unlocked_at FROM user_achievements"
        ).fetchall()
        users = {user for (user,) in connection.execute("SELECT id FROM users")}
        events = connection.execute(
            "SELECT id, type, user_id, achievement_id, unlocked_at FROM events ORDER BY id"
        ).fetchall()
        keys = connection.execute("SELECT count(*) FROM idempotency_keys").fetchone()[0]
    stored = {(user, a): (json.loads(metadata), at) for user, a, metadata, at in rows}
    assert len(stored) == len(rows)
    expected = {
        pair: (row.metadata, row.unlocked_at if row.unlocked else None)
        for pair, row in model.rows.items()
    }
    assert stored == expected, f"seed={SEED}"
    assert users == model.users
    assert [event[0] for event in events] == list(range(1, len(events) + 1))
    assert {event[1] for event in events} <= {"achievement.unlocked"}
    assert Counter((event[2], event[3]) for event in events) == model.events
    latest = {(user, a): at for _, _, user, a, at in events}  # the newest event per row
    for pair, row in model.rows.items():
        if row.unlocked:
            assert latest[pair] == row.unlocked_at, pair
    # Every successful keyed write stored its answer exactly once; no error was stored.
    assert keys == successes


async def test_kill_9_at_random_moments_then_retry_with_keys(db_path: Path) -> None:
    print(f"torture: {ROUNDS} rounds, seed {SEED}")
    tally = Tally()
    killer = random.Random(f"{SEED}-killer")
    cluster = await asyncio.to_thread(Cluster, db_path)
    try:
        async with httpx.AsyncClient(base_url=cluster.server.base_url) as setup:
            achievements = []
            for n in range(ACHIEVEMENTS):
                created = await setup.post(
                    "/users/achievements/definitions",
                    json={"name": f"Torture {n}"},
                    headers={"Idempotency-Key": f"definition-{n}"},
                )
                assert created.status_code == 201, created.text
                achievements.append(created.json()["id"])
        workloads = [Workload(task, achievements) for task in range(TASKS)]
        successes = ACHIEVEMENTS
        for round_number in range(ROUNDS):
            cluster.issuing = True
            tasks = [
                asyncio.create_task(run_task(cluster, workload, round_number, tally))
                for workload in workloads
            ]
            await cluster.kill_and_restart(killer.uniform(*KILL_AFTER), tally)
            successes += sum(await asyncio.gather(*tasks))
            await check_over_http(cluster.client, workloads)
        await cluster.client.aclose()
        status = await asyncio.to_thread(cluster.server.terminate, signal.SIGTERM)
        assert status == 0
    finally:
        cluster.server.stop()
    print(
        f"torture: {tally.requests} requests, {tally.kills} kills, "
        f"{sum(tally.in_flight_at_kill)} in flight at the kills, {tally.unanswered} unanswered "
        f"({tally.replayed} had been committed and were replayed, {tally.reapplied} applied "
        f"on retry), {tally.transport_errors} transport errors, "
        f"{sum(merged(workloads).events.values())} unlock events"
    )
    assert tally.kills == ROUNDS
    assert tally.unanswered > 0, "no kill caught a request in flight"
    assert not Path(f"{db_path}-wal").exists()
    check_file(db_path, workloads, successes)
    checked = await asyncio.to_thread(sidecar, "check", "--db", str(db_path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
