-- Migration 4: per-month counters of who reached each unlocked count, so one user's leaderboard
-- rank sums one row per month of history plus the days of one month, not one row per day of
-- history. Runs inside the caller's transaction; the triggers that keep the new table are
-- re-created from schema.sql after the migrations (db.recreate_triggers_sql).

CREATE TABLE unlock_months (
    unlocked_count  INTEGER NOT NULL,
    month           TEXT NOT NULL,
    users           INTEGER NOT NULL,
    PRIMARY KEY (unlocked_count, month)
) STRICT, WITHOUT ROWID;

INSERT INTO unlock_months (unlocked_count, month, users)
    SELECT unlocked_count, coalesce(substr(reached_at, 1, 7), ''), count(*) FROM user_stats
     WHERE unlocked_count > 0
     GROUP BY 1, 2;
