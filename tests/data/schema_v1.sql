-- The schema of version 1 (the seed: definitions and progress only), as a file of that release
-- holds it; used to test that migrations keep every row.
CREATE TABLE users (
    id          INTEGER PRIMARY KEY,
    created_at  TEXT NOT NULL
) STRICT;

CREATE TABLE achievements (
    id           INTEGER PRIMARY KEY,
    -- Bytes, not length(): SQLite's length() stops at a NUL character. 4 bytes a character at most.
    name         TEXT NOT NULL CHECK (name <> '' AND length(CAST(name AS BLOB)) <= 4 * 255),
    description  TEXT CHECK (length(CAST(description AS BLOB)) <= 4 * 10000),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
) STRICT;

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

CREATE INDEX user_achievements_by_achievement ON user_achievements (achievement_id);
CREATE INDEX user_achievements_by_unlocked_at ON user_achievements (unlocked_at);

PRAGMA user_version = 1;
