-- Migration 2: achievement keys and metadata, the unlock feed, idempotency keys, and the
-- trigger-kept counters behind stats and the leaderboard. Runs inside the caller's transaction.
-- Unlocks made before this migration get no events: the feed starts at the upgrade.

ALTER TABLE achievements ADD COLUMN key TEXT;
ALTER TABLE achievements ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'
    CHECK (json_valid(metadata) AND json_type(metadata) = 'object');
CREATE UNIQUE INDEX achievements_by_key ON achievements (key);

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

-- Counters for the rows that exist already (the triggers keep them from now on).
INSERT INTO user_stats (user_id, progress_rows, unlocked_count, reached_at)
    SELECT users.id, count(progress.id), count(progress.unlocked_at), max(progress.unlocked_at)
      FROM users LEFT JOIN user_achievements AS progress ON progress.user_id = users.id
     GROUP BY users.id;
INSERT INTO achievement_stats (achievement_id, progress_rows, unlocked_count)
    SELECT achievements.id, count(progress.id), count(progress.unlocked_at)
      FROM achievements
      LEFT JOIN user_achievements AS progress ON progress.achievement_id = achievements.id
     GROUP BY achievements.id;
INSERT INTO unlock_histogram (unlocked_count, users)
    SELECT unlocked_count, count(*) FROM user_stats WHERE unlocked_count > 0
     GROUP BY unlocked_count;
INSERT INTO totals (id, users, users_with_progress) VALUES (
    1,
    (SELECT count(*) FROM users),
    (SELECT count(DISTINCT user_id) FROM user_achievements)
);

-- The triggers that keep these counters come from schema.sql: every upgrade ends by
-- re-creating all of them (db.recreate_triggers_sql).
