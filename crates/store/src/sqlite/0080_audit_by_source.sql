-- The audit log keyed by (source, time-ordered id) instead of by id plus an index on
-- (source_id, id). Every inbound request appends one audit row; each B-tree a commit touches
-- costs it whole rewritten pages, and the index was a second B-tree for the same row. Per-source
-- listings, statistics and retention read a key range of one source; listings over every source
-- merge the sources' newest rows. Entries of unknown tokens have source_id '' (no source).
CREATE TABLE inbound_audit_by_source (
    id            TEXT NOT NULL,
    source_id     TEXT NOT NULL,
    token_prefix  TEXT NOT NULL,
    received_at   INTEGER NOT NULL,
    client_ip     TEXT,
    peer_addr     TEXT NOT NULL,
    user_agent    TEXT,
    outcome       TEXT NOT NULL,
    reason        TEXT,
    status        INTEGER NOT NULL,
    body_bytes    INTEGER NOT NULL,
    latency_us    INTEGER NOT NULL,
    tls           INTEGER NOT NULL DEFAULT 0,
    event_id      TEXT,
    message_id    TEXT,
    count         INTEGER NOT NULL DEFAULT 1,
    sampled       INTEGER NOT NULL DEFAULT 0,
    payload       TEXT,
    PRIMARY KEY (source_id, id)
) WITHOUT ROWID;
INSERT INTO inbound_audit_by_source (id, source_id, token_prefix, received_at, client_ip,
    peer_addr, user_agent, outcome, reason, status, body_bytes, latency_us, tls, event_id,
    message_id, count, sampled, payload)
    SELECT id, COALESCE(source_id, ''), token_prefix, received_at, client_ip, peer_addr,
        user_agent, outcome, reason, status, body_bytes, latency_us, tls, event_id, message_id,
        count, sampled, payload
    FROM inbound_audit;
DROP TABLE inbound_audit;
ALTER TABLE inbound_audit_by_source RENAME TO inbound_audit;
