-- Replay keys, appended in arrival order. The writer keeps every live key in memory (loaded from
-- here at start) and checks replays there, so accepting a webhook no longer writes a random leaf
-- page of inbound_seen's key-ordered B-tree. inbound_seen stays for keys past the in-memory
-- bound and for keys written before this version.
CREATE TABLE inbound_seen_log (
    expires_at  INTEGER NOT NULL,
    source_id   TEXT NOT NULL,
    key_hash    BLOB NOT NULL
);
CREATE INDEX inbound_seen_log_expires ON inbound_seen_log (expires_at);
