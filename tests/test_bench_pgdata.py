"""The bench's scale databases on PostgreSQL (bench/pgdata.py): the bulk way writes what the
schema's triggers write, and a counter that disagrees with the rows is found."""

from __future__ import annotations

import psycopg

from bench import pgdata
from tests import pg

USERS = 200


def test_the_bulk_way_writes_what_the_triggers_write(postgres_url: str) -> None:
    with pg.fresh_database(postgres_url) as by_triggers, pg.fresh_database(postgres_url) as bulk:
        pgdata.generate(by_triggers, USERS, by_triggers=True)
        pgdata.generate(bulk, USERS)
        assert pgdata.differing_tables(by_triggers, bulk) == []
        assert pgdata.inconsistent_counters(bulk) == []
        rows = pg.query_function(bulk)("SELECT count(*), count(unlocked_at) FROM user_achievements")
        # Users u unlock achievements 1..(u % 10 + 1): 20 full cycles of 1..10 unlocks.
        assert rows == [(USERS * 10, 20 * sum(range(1, 11)))]

        # The checks can fail: a counter row the bulk way lacks, one that disagrees with the rows.
        with psycopg.connect(bulk, autocommit=True) as connection:
            connection.execute("DELETE FROM totals")
        assert pgdata.inconsistent_counters(bulk) == ["totals"]
        assert pgdata.differing_tables(by_triggers, bulk) == ["totals"]
        with psycopg.connect(bulk, autocommit=True) as connection:
            connection.execute("UPDATE user_stats SET unlocked_count = 0 WHERE user_id = 7")
        assert "user_stats" in pgdata.inconsistent_counters(bulk)
