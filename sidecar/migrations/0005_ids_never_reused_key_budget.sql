-- Migration 5: achievement ids are never reused (AUTOINCREMENT), so an id in the feed or in a
-- backup keeps meaning one achievement; and the stored idempotent answers get a counted size,
-- for their budget. SQLite cannot add AUTOINCREMENT to a table: the table is
-- rebuilt, rows and ids kept. Runs inside the caller's transaction, with foreign keys off (so
-- dropping the old table cascades nothing) and after every trigger of the file was dropped;
-- the triggers are re-created from schema.sql afterwards (db.prepare).

CREATE TABLE achievements_rebuilt (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    name         TEXT NOT NULL CHECK (name <> '' AND length(CAST(name AS BLOB)) <= 4 * 255),
    description  TEXT CHECK (length(CAST(description AS BLOB)) <= 4 * 10000),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    key          TEXT,
    metadata     TEXT NOT NULL DEFAULT '{}'
                 CHECK (json_valid(metadata) AND json_type(metadata) = 'object')
) STRICT;

INSERT INTO achievements_rebuilt (id, name, description, created_at, updated_at, key, metadata)
    SELECT id, name, description, created_at, updated_at, key, metadata FROM achievements;

DROP TABLE achievements;
ALTER TABLE achievements_rebuilt RENAME TO achievements;
CREATE UNIQUE INDEX achievements_by_key ON achievements (key);

-- New ids start above every id used so far that the file still knows of: its definitions', and
-- those of deleted definitions whose unlocks are in the feed.
DELETE FROM sqlite_sequence WHERE name = 'achievements';
INSERT INTO sqlite_sequence (name, seq) SELECT 'achievements', max(
    (SELECT coalesce(max(id), 0) FROM achievements),
    (SELECT coalesce(max(achievement_id), 0) FROM events));

-- The stored answers' count and size: about what a key takes in the file (see schema.sql).
CREATE TABLE idempotency_usage (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    keys     INTEGER NOT NULL DEFAULT 0,
    bytes    INTEGER NOT NULL DEFAULT 0,
    evicted  INTEGER NOT NULL DEFAULT 0
) STRICT;

INSERT INTO idempotency_usage (id, keys, bytes)
    SELECT 1, count(*), coalesce(sum(2 * length(CAST(key AS BLOB)) + length(fingerprint)
           + length(body) + 2 * length(created_at) + 48), 0)
      FROM idempotency_keys;
