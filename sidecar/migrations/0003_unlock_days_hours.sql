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

CREATE TRIGGER user_reach_changed AFTER UPDATE OF unlocked_count, reached_at ON user_stats
    WHEN old.unlocked_count IS NOT new.unlocked_count OR old.reached_at IS NOT new.reached_at
BEGIN
    UPDATE unlock_hours SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND hour = coalesce(substr(old.reached_at, 1, 13), '');
    INSERT INTO unlock_hours (unlocked_count, hour, users)
        SELECT new.unlocked_count, coalesce(substr(new.reached_at, 1, 13), ''), 1
         WHERE new.unlocked_count > 0
        ON CONFLICT (unlocked_count, hour) DO UPDATE SET users = users + 1;
    UPDATE unlock_days SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND day = coalesce(substr(old.reached_at, 1, 10), '');
    INSERT INTO unlock_days (unlocked_count, day, users)
        SELECT new.unlocked_count, coalesce(substr(new.reached_at, 1, 10), ''), 1
         WHERE new.unlocked_count > 0
        ON CONFLICT (unlocked_count, day) DO UPDATE SET users = users + 1;
END;

CREATE TRIGGER user_reach_deleted AFTER DELETE ON user_stats WHEN old.unlocked_count > 0 BEGIN
    UPDATE unlock_hours SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND hour = coalesce(substr(old.reached_at, 1, 13), '');
    UPDATE unlock_days SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND day = coalesce(substr(old.reached_at, 1, 10), '');
END;
