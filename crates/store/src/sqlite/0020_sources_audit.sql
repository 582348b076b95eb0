-- Inbound sources (secret webhook URLs), their tokens, replay protection and the audit log.
CREATE TABLE sources (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    verification        TEXT NOT NULL,   -- JSON preset, without secrets
    secrets             TEXT NOT NULL,   -- JSON array of stored (possibly encrypted) secrets
    allowed_cidrs       TEXT NOT NULL,   -- JSON array
    replay_window_secs  INTEGER NOT NULL,
    log_payloads        INTEGER NOT NULL DEFAULT 0,
    forward_to          TEXT NOT NULL,   -- JSON array
    event_type          TEXT NOT NULL,
    created_at          INTEGER NOT NULL,
    updated_at          INTEGER NOT NULL
) WITHOUT ROWID;

-- Only the SHA-256 of a token is stored.
CREATE TABLE source_tokens (
    token_hash  BLOB PRIMARY KEY,
    source_id   TEXT NOT NULL,
    prefix      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
) WITHOUT ROWID;
CREATE INDEX source_tokens_source ON source_tokens (source_id, created_at);

-- Message ids (or content hashes) already accepted, per source, until they expire.
CREATE TABLE inbound_seen (
    source_id   TEXT NOT NULL,
    key_hash    BLOB NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (source_id, key_hash)
) WITHOUT ROWID;
CREATE INDEX inbound_seen_expires ON inbound_seen (expires_at);

-- One row per inbound request (or per aggregate of a flood: count > 1, sampled = 1). The id is
-- time-ordered (aud_<ULID of received_at>), so time ranges and retention use the primary key.
CREATE TABLE inbound_audit (
    id            TEXT PRIMARY KEY,
    source_id     TEXT,
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
    payload       TEXT
) WITHOUT ROWID;
CREATE INDEX inbound_audit_source ON inbound_audit (source_id, id);
