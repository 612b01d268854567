"""What the store's SQL needs said differently on each backend, beyond the SQL text itself.

The store's statements are written once, in SQL that both SQLite and PostgreSQL run (the
PostgreSQL connection rewrites the placeholders and the few expressions listed in
sidecar/postgres/connection.py). What cannot be one statement for both is here: the locks a
write takes so that several processes writing one database stay correct. On SQLite one writer
thread runs every write, one after the other, so none is needed and these cost nothing.

`of(connection)` is the connection's dialect: its `dialect` attribute, else SQLite's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Dialect:
    """SQLite's: the single writer serialises every write."""

    name = "sqlite"
    # Appended to the SELECT of a definition that a write of progress depends on: keeps the
    # definition from being deleted before the write commits.
    key_share = ""
    # Whether `lock_user` also creates the user if new (then the store does not do it again).
    lock_creates_user = False

    def lock_user(self, connection: Any, user_id: int) -> None:
        """Before a write that may create the user or their progress: create the user if new,
        and hold their row until the commit, so that one user's writes run one at a time."""

    def lock_existing_user(self, connection: Any, user_id: int) -> None:
        """Before a write to a user's rows that creates nothing (a deletion of progress)."""

    def watch_appended_events(self, connection: Any, appended: Callable[[], None]) -> None:
        """Call `appended()` on the connection's thread for each event it inserts.

        A TEMP trigger lives in this connection only and is not part of the file's schema. It
        tells the feed that a commit holds new events without a query after every commit.
        """
        connection.create_function("sidecar_event_appended", 0, appended)
        connection.execute(
            "CREATE TEMP TRIGGER IF NOT EXISTS sidecar_event_appended AFTER INSERT ON main.events "
            "BEGIN SELECT sidecar_event_appended(); END"
        )

    def claim(self, connection: Any, name: str) -> None:
        """Hold `name` (an idempotency key, a definition's key) until the commit: a concurrent
        transaction claiming it waits, then sees what this one wrote."""


SQLITE = Dialect()


def of(connection: Any) -> Dialect:
    dialect: Dialect = getattr(connection, "dialect", SQLITE)
    return dialect
