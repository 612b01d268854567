"""What is sent: the request shapes of every workload and where their ids live.

A `Traffic` is one request shape whose `{{u}}` and `{{a}}` placeholders take a user and an
achievement id per request. bench/lua/workload.lua renders it for wrk; `Traffic.render` does the
same for the Python load generator, so both send the same requests. A keyed one carries an
`Idempotency-Key` never sent before on every request, as both client libraries do: the run's
prefix (unique to the run), the connection and the request's number (`key`).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, replace

PROGRESS = "/users/achievements/progress"

# The ids each workload writes, far apart so that no workload touches another's rows.
ACHIEVEMENTS = 20  # defined at seeding: ids 1..20
SPREAD_USERS = (1, 1000)  # x achievements 1..10: the 10,000 (user, achievement) pairs
SPREAD_ACHIEVEMENTS = (1, 10)
HOT_USER = 1_000_001  # upsert on one row
APPLY_USER = 1_000_002  # inc on one row: its count is checked afterwards
UNLOCKED_USERS = (2_000_001, 100)  # unlocked at seeding: the repeated half of the unlocks
FRESH_USERS = 3_000_001  # the new half of the unlocks: never used before
FRESH_KEYED_USERS = 3_500_001  # the same for the keyed unlocks
LIST_USER = 4_000_001  # 20 rows
BATCH_USERS = (5_000_001, 100)  # x achievements 1..10: one batch of 1000 apply items
BATCH_ITEMS = 1000

UPSERT_BODY = (
    '{"userId":{{u}},"achievementId":{{a}},'
    '"metadata":{"current":{{u}},"best":7,"lastActivityDate":"2025-11-23"}}'
)
ROW_QUERY = "?userId={{u}}&achievementId={{a}}"
INC = '"ops":[{"op":"inc","path":"count","value":1}]'


@dataclass(frozen=True)
class Traffic:
    method: str
    path: str
    body: str | None = None
    users: tuple[int, int] = (1, 1)  # (first, count): drawn uniformly
    achievements: tuple[int, int] = (1, 1)
    fresh: int | None = None  # every second request takes a never-used user from here up
    keyed: bool = False  # a fresh Idempotency-Key on every request

    def ids(self, rng: random.Random, lane: int, lanes: int, number: int) -> tuple[int, int]:
        """The ids of request `number` (0-based) of connection `lane` out of `lanes`."""
        if self.fresh is not None and number % 2 == 1:
            user = self.fresh + (number // 2) * lanes + lane
        else:
            user = self.users[0] + rng.randrange(self.users[1])
        return user, self.achievements[0] + rng.randrange(self.achievements[1])

    def render(self, host: str, user: int, achievement: int, key: str = "") -> bytes:
        """The whole HTTP/1.1 request (`key` is its Idempotency-Key when the traffic is keyed)."""

        def fill(template: str) -> str:
            return template.replace("{{u}}", str(user)).replace("{{a}}", str(achievement))

        head = f"{self.method} {fill(self.path)} HTTP/1.1\r\nHost: {host}\r\n"
        if self.keyed:
            head += f"Idempotency-Key: {key}\r\n"
        if self.body is None:
            return f"{head}\r\n".encode()
        body = fill(self.body).encode()
        return (
            f"{head}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body


def key_prefix() -> str:
    """A prefix no earlier run used, so that every key of a run is new to the service."""
    return f"{time.time_ns():016x}"


def key(prefix: str, lane: int, number: int) -> str:
    """The key of request `number` on connection `lane`: 34 characters, about a UUID's 36 (what
    the clients send), so that the stored keys weigh what theirs do. The wrk script's twin."""
    return f"{prefix}-{lane:04d}-{number:012d}"


# --- the ceiling ---------------------------------------------------------------------------

BARE_POST = Traffic("POST", "/bare", UPSERT_BODY, SPREAD_USERS, SPREAD_ACHIEVEMENTS)
BARE_GET = Traffic("GET", "/bare")
BARE_LIST = Traffic("GET", "/bare/list")
BARE_POST_KEYED = replace(BARE_POST, keyed=True)  # the same bytes on the wire as a keyed write

# --- the service ---------------------------------------------------------------------------

UPSERT_SPREAD = Traffic("POST", PROGRESS, UPSERT_BODY, SPREAD_USERS, SPREAD_ACHIEVEMENTS)
UPSERT_HOT = Traffic("POST", PROGRESS, UPSERT_BODY, (HOT_USER, 1))
UNLOCK_MIX = Traffic(
    "PUT",
    f"{PROGRESS}/unlock",
    '{"userId":{{u}},"achievementId":1}',
    UNLOCKED_USERS,
    fresh=FRESH_USERS,
)
APPLY_BODY = f'{{"userId":{APPLY_USER},"achievementId":1,{INC}}}'
APPLY_HOT = Traffic("POST", f"{PROGRESS}/apply", APPLY_BODY)
APPLY_SPREAD = Traffic(
    "POST",
    f"{PROGRESS}/apply",
    '{"userId":{{u}},"achievementId":{{a}},' + INC + "}",
    SPREAD_USERS,
    SPREAD_ACHIEVEMENTS,
)
# What the clients send: every write keyed.
UPSERT_SPREAD_KEYED = replace(UPSERT_SPREAD, keyed=True)
UNLOCK_MIX_KEYED = replace(UNLOCK_MIX, fresh=FRESH_KEYED_USERS, keyed=True)
APPLY_SPREAD_KEYED = replace(APPLY_SPREAD, keyed=True)
GET_PROGRESS = Traffic("GET", PROGRESS + ROW_QUERY, None, SPREAD_USERS, SPREAD_ACHIEVEMENTS)
LIST_PROGRESS = Traffic("GET", f"{PROGRESS}/list?userId={LIST_USER}")


def batch_body() -> str:
    """1000 apply items, one per row of BATCH_USERS x achievements 1..10."""
    first, count = BATCH_USERS
    items = [
        f'{{"type":"apply","userId":{user},"achievementId":{achievement},{INC}}}'
        for user in range(first, first + count)
        for achievement in range(1, BATCH_ITEMS // count + 1)
    ]
    return '{"operations":[' + ",".join(items) + "]}"


BATCH_APPLY = Traffic("POST", f"{PROGRESS}/batch", batch_body())

# --- scale: files of N users x 10 rows (bench/datafile.py) -----------------------------------


def scale_get(users: int) -> Traffic:
    return Traffic("GET", PROGRESS + ROW_QUERY, None, (1, users), (1, 10))


def scale_list(users: int) -> Traffic:
    return Traffic("GET", PROGRESS + "/list?userId={{u}}", None, (1, users))


LEADERBOARD_TOP = Traffic("GET", "/users/achievements/leaderboard?limit=10")
STATS = Traffic("GET", "/users/achievements/stats")


def leaderboard_rank(users: int) -> Traffic:
    return Traffic("GET", "/users/achievements/leaderboard/{{u}}", None, (1, users))
