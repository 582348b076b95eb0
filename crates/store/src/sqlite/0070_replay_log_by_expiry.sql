-- The replay log as one B-tree ordered by expiry instead of a rowid table plus an index on
-- expires_at. Every accepted inbound request appends one row; each B-tree it touches costs the
-- commit at least one rewritten page, and the index was a second one for the same row. Purging
-- reads the oldest rows of the key itself and deletes them by that key.
CREATE TABLE inbound_seen_log_by_expiry (
    expires_at  INTEGER NOT NULL,
    source_id   TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    PRIMARY KEY (expires_at, source_id, key_hash)
) WITHOUT ROWID;
INSERT OR IGNORE INTO inbound_seen_log_by_expiry (expires_at, source_id, key_hash)
    SELECT expires_at, source_id, key_hash FROM inbound_seen_log;
DROP TABLE inbound_seen_log;
ALTER TABLE inbound_seen_log_by_expiry RENAME TO inbound_seen_log;
