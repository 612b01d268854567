-- The achievements sidecar's schema: the single source of truth for the tables.
-- Applied at start on an empty file; PRAGMA user_version numbers it (see sidecar/db.py), and
-- sidecar/migrations/ brings a file of an older version here, in one transaction.
-- Timestamps are RFC 3339 UTC text with milliseconds, so they sort as text.

CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    created_at  TEXT NOT NULL
) STRICT;

-- key and metadata come last: that is where migration 2 added them to a version-1 file.
-- AUTOINCREMENT: a deleted definition's id is never given to a new one, so the ids in the feed
-- and in backups keep meaning one achievement.
CREATE TABLE achievements (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Bytes, not length(): SQLite's length() stops at a NUL character. 4 bytes a character at most.
    name         TEXT NOT NULL CHECK (name <> '' AND length(CAST(name AS BLOB)) <= 4 * 255),
    description  TEXT CHECK (length(CAST(description AS BLOB)) <= 4 * 10000),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    key          TEXT,
    metadata     TEXT NOT NULL DEFAULT '{}'
                 CHECK (json_valid(metadata) AND json_type(metadata) = 'object')
) STRICT;

CREATE UNIQUE INDEX achievements_by_key ON achievements (key);

CREATE TABLE user_achievements (
    id              INTEGER PRIMARY KEY,
    user_id         INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    achievement_id  INTEGER NOT NULL REFERENCES achievements (id) ON DELETE CASCADE,
    unlocked_at     TEXT,
    metadata        TEXT NOT NULL DEFAULT '{}'
                    CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    UNIQUE (user_id, achievement_id)
) STRICT;

-- The seed's indexes: by user (UNIQUE above leads with user_id), by achievement, by unlock time.
CREATE INDEX user_achievements_by_achievement ON user_achievements (achievement_id);
CREATE INDEX user_achievements_by_unlocked_at ON user_achievements (unlocked_at);

-- The unlock feed: append-only, never cascaded, so a cursor never sees a gap.
CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    type            TEXT NOT NULL,
    user_id         INTEGER NOT NULL,
    achievement_id  INTEGER NOT NULL,
    unlocked_at     TEXT NOT NULL
) STRICT;

-- Stored answers of requests that carried an Idempotency-Key.
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    fingerprint  BLOB NOT NULL,
    status       INTEGER NOT NULL,
    body         BLOB NOT NULL,
    created_at   TEXT NOT NULL
) STRICT;

CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);

-- The stored answers' count and size: about what a key takes in the file (the key and the
-- timestamp are in the row and in an index each; 48 bytes of record and page overhead). Kept
-- by the triggers below, so that the size budget is checked without a scan; `evicted` counts
-- the keys purged before their TTL to keep within the budget.
CREATE TABLE idempotency_usage (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    keys     INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0,
    evicted  INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO idempotency_usage (id) VALUES (1);

-- Counters kept by the triggers below, so stats and the leaderboard never scan progress rows.
-- user_stats.reached_at is when the user reached the current unlocked_count (their newest unlock).
CREATE TABLE user_stats (
    user_id         INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    progress_rows   INTEGER NOT NULL DEFAULT 0,
    unlocked_count  INTEGER NOT NULL DEFAULT 0,
    reached_at      TEXT
) STRICT;

CREATE INDEX user_stats_ranking ON user_stats (unlocked_count DESC, reached_at, user_id)
    WHERE unlocked_count > 0;

-- How many users have each unlocked count (> 0): the users ahead of a given count are a sum
-- over a few rows, not a count over an index range of up to every user.
CREATE TABLE unlock_histogram (
    unlocked_count  INTEGER PRIMARY KEY,
    users           INTEGER NOT NULL
) STRICT;

-- How many users reached each unlocked count (> 0) in each month, day and hour (the first 7,
-- 10 and 13 characters of reached_at): ahead of a user with the same count are the users of the
-- earlier months (one row a month of history), of the earlier days of the same month (at most
-- 30 rows), of the earlier hours of the same day (at most 23), and those who reached it earlier
-- in the same hour (an index range count over that hour only), not everyone with that count.
CREATE TABLE unlock_months (
    unlocked_count  INTEGER NOT NULL,
    month           TEXT NOT NULL,
    users           INTEGER NOT NULL,
    PRIMARY KEY (unlocked_count, month)
) STRICT, WITHOUT ROWID;

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

CREATE TABLE achievement_stats (
    achievement_id  INTEGER PRIMARY KEY REFERENCES achievements (id) ON DELETE CASCADE,
    progress_rows   INTEGER NOT NULL DEFAULT 0,
    unlocked_count  INTEGER NOT NULL DEFAULT 0
) STRICT;

-- One row: how many users there are, and how many have at least one progress row
-- (the denominator of unlockRate).
CREATE TABLE totals (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    users                INTEGER NOT NULL DEFAULT 0,
    users_with_progress  INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO totals (id) VALUES (1);

CREATE TRIGGER idempotency_key_stored AFTER INSERT ON idempotency_keys BEGIN
    UPDATE idempotency_usage
       SET keys = keys + 1, bytes = bytes + 2 * length(CAST(new.key AS BLOB))
           + length(new.fingerprint) + length(new.body) + 2 * length(new.created_at) + 48
     WHERE id = 1;
END;

CREATE TRIGGER idempotency_key_removed AFTER DELETE ON idempotency_keys BEGIN
    UPDATE idempotency_usage
       SET keys = keys - 1, bytes = bytes - 2 * length(CAST(old.key AS BLOB))
           - length(old.fingerprint) - length(old.body) - 2 * length(old.created_at) - 48
     WHERE id = 1;
END;

CREATE TRIGGER user_inserted AFTER INSERT ON users BEGIN
    INSERT INTO user_stats (user_id) VALUES (new.id);
    UPDATE totals SET users = users + 1 WHERE id = 1;
END;

CREATE TRIGGER user_deleted AFTER DELETE ON users BEGIN
    UPDATE totals SET users = users - 1 WHERE id = 1;
END;

CREATE TRIGGER achievements_stats_row AFTER INSERT ON achievements BEGIN
    INSERT INTO achievement_stats (achievement_id) VALUES (new.id);
END;

CREATE TRIGGER progress_inserted AFTER INSERT ON user_achievements BEGIN
    UPDATE user_stats
       SET progress_rows = progress_rows + 1,
           unlocked_count = unlocked_count + (new.unlocked_at IS NOT NULL),
           reached_at = CASE WHEN new.unlocked_at IS NOT NULL THEN new.unlocked_at ELSE reached_at END
     WHERE user_id = new.user_id;
    UPDATE achievement_stats
       SET progress_rows = progress_rows + 1,
           unlocked_count = unlocked_count + (new.unlocked_at IS NOT NULL)
     WHERE achievement_id = new.achievement_id;
END;

CREATE TRIGGER progress_unlocked AFTER UPDATE OF unlocked_at ON user_achievements
    WHEN old.unlocked_at IS NULL AND new.unlocked_at IS NOT NULL
BEGIN
    UPDATE user_stats
       SET unlocked_count = unlocked_count + 1, reached_at = new.unlocked_at
     WHERE user_id = new.user_id;
    UPDATE achievement_stats SET unlocked_count = unlocked_count + 1
     WHERE achievement_id = new.achievement_id;
END;

-- Also fires for rows removed by a cascade from users or achievements.
CREATE TRIGGER progress_deleted AFTER DELETE ON user_achievements BEGIN
    UPDATE user_stats
       SET progress_rows = progress_rows - 1,
           unlocked_count = unlocked_count - (old.unlocked_at IS NOT NULL),
           reached_at = CASE WHEN old.unlocked_at IS NULL THEN reached_at ELSE
               (SELECT max(unlocked_at) FROM user_achievements
                 WHERE user_id = old.user_id AND unlocked_at IS NOT NULL) END
     WHERE user_id = old.user_id;
    UPDATE achievement_stats
       SET progress_rows = progress_rows - 1,
           unlocked_count = unlocked_count - (old.unlocked_at IS NOT NULL)
     WHERE achievement_id = old.achievement_id;
END;

CREATE TRIGGER user_gained_progress AFTER UPDATE OF progress_rows ON user_stats
    WHEN old.progress_rows = 0 AND new.progress_rows > 0
BEGIN
    UPDATE totals SET users_with_progress = users_with_progress + 1 WHERE id = 1;
END;

CREATE TRIGGER user_lost_progress AFTER UPDATE OF progress_rows ON user_stats
    WHEN old.progress_rows > 0 AND new.progress_rows = 0
BEGIN
    UPDATE totals SET users_with_progress = users_with_progress - 1 WHERE id = 1;
END;

CREATE TRIGGER user_stats_deleted AFTER DELETE ON user_stats WHEN old.progress_rows > 0 BEGIN
    UPDATE totals SET users_with_progress = users_with_progress - 1 WHERE id = 1;
END;

CREATE TRIGGER user_count_changed AFTER UPDATE OF unlocked_count ON user_stats
    WHEN old.unlocked_count <> new.unlocked_count
BEGIN
    UPDATE unlock_histogram SET users = users - 1 WHERE unlocked_count = old.unlocked_count;
    INSERT INTO unlock_histogram (unlocked_count, users)
        SELECT new.unlocked_count, 1 WHERE new.unlocked_count > 0
        ON CONFLICT (unlocked_count) DO UPDATE SET users = users + 1;
END;

CREATE TRIGGER user_count_deleted AFTER DELETE ON user_stats WHEN old.unlocked_count > 0 BEGIN
    UPDATE unlock_histogram SET users = users - 1 WHERE unlocked_count = old.unlocked_count;
END;

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
    UPDATE unlock_months SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND month = coalesce(substr(old.reached_at, 1, 7), '');
    INSERT INTO unlock_months (unlocked_count, month, users)
        SELECT new.unlocked_count, coalesce(substr(new.reached_at, 1, 7), ''), 1
         WHERE new.unlocked_count > 0
        ON CONFLICT (unlocked_count, month) DO UPDATE SET users = users + 1;
END;

CREATE TRIGGER user_reach_deleted AFTER DELETE ON user_stats WHEN old.unlocked_count > 0 BEGIN
    UPDATE unlock_hours SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND hour = coalesce(substr(old.reached_at, 1, 13), '');
    UPDATE unlock_days SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND day = coalesce(substr(old.reached_at, 1, 10), '');
    UPDATE unlock_months SET users = users - 1
     WHERE unlocked_count = old.unlocked_count AND month = coalesce(substr(old.reached_at, 1, 7), '');
END;
