-- Migration 3: per-day and per-hour counters of who reached each unlocked count, so one user's
-- leaderboard rank no longer counts every user with the same count. Runs inside the caller's
-- transaction.

CREATE TABLE unlock_hours (
    unlocked_count  INTEGER NOT NULL,
    hour            TEXT NOT NULL,
    users           INTEGER NOT NULL,
    PRIMARY KEY (unlocked_count, hour)
) STRICT, WITHOUT ROWID;

CREATE TABLE unlock_days (
    unlocked_count  INTEGER NOT NULL,
    day             TEXT NOT NULL,
    users           INTEGER NOT NULL,
    PRIMARY KEY (unlocked_count, day)
) STRICT, WITHOUT ROWID;

INSERT INTO unlock_hours (unlocked_count, hour, users)
    SELECT unlocked_count, coalesce(substr(reached_at, 1, 13), ''), count(*) FROM user_stats
     WHERE unlocked_count > 0
     GROUP BY 1, 2;

INSERT INTO unlock_days (unlocked_count, day, users)
    SELECT unlocked_count, coalesce(substr(reached_at, 1, 10), ''), count(*) FROM user_stats
     WHERE unlocked_count > 0
     GROUP BY 1, 2;

-- The triggers that keep these counters come from schema.sql: every upgrade ends by
-- re-creating all of them (db.recreate_triggers_sql).
