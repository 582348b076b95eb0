-- Inbound sources (secret webhook URLs), their tokens, replay protection and the audit log.
-- Mirrors sqlite/0020_sources_audit.sql.
CREATE TABLE sources (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    name                TEXT NOT NULL,
    verification        TEXT NOT NULL,   -- JSON preset, without secrets
    secrets             TEXT NOT NULL,   -- JSON array of stored (possibly encrypted) secrets
    allowed_cidrs       TEXT NOT NULL,   -- JSON array
    replay_window_secs  BIGINT NOT NULL,
    log_payloads        BOOLEAN NOT NULL DEFAULT FALSE,
    forward_to          TEXT NOT NULL,   -- JSON array
    event_type          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- Only the SHA-256 of a token is stored.
CREATE TABLE source_tokens (
    token_hash  BYTEA PRIMARY KEY,
    source_id   TEXT COLLATE "C" NOT NULL,
    prefix      TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT
);
CREATE INDEX source_tokens_source ON source_tokens (source_id, created_at);

-- Message ids (or content hashes) already accepted, per source, until they expire.
CREATE TABLE inbound_seen (
    source_id   TEXT COLLATE "C" NOT NULL,
    key_hash    BYTEA NOT NULL,
    expires_at  BIGINT NOT NULL,
    PRIMARY KEY (source_id, key_hash)
);
CREATE INDEX inbound_seen_expires ON inbound_seen (expires_at);

-- One row per inbound request (or per aggregate of a flood: count > 1, sampled). The id is
-- time-ordered (aud_<ULID of received_at>), so time ranges and retention use the primary key.
CREATE TABLE inbound_audit (
    id            TEXT COLLATE "C" PRIMARY KEY,
    source_id     TEXT COLLATE "C",
    token_prefix  TEXT NOT NULL,
    received_at   BIGINT NOT NULL,
    client_ip     TEXT,
    peer_addr     TEXT NOT NULL,
    user_agent    TEXT,
    outcome       TEXT NOT NULL,
    reason        TEXT,
    status        INTEGER NOT NULL,
    body_bytes    BIGINT NOT NULL,
    latency_us    BIGINT NOT NULL,
    tls           BOOLEAN NOT NULL DEFAULT FALSE,
    event_id      TEXT,
    message_id    TEXT,
    count         BIGINT NOT NULL DEFAULT 1,
    sampled       BOOLEAN NOT NULL DEFAULT FALSE,
    payload       TEXT
);
CREATE INDEX inbound_audit_source ON inbound_audit (source_id, id);
