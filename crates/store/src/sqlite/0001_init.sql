-- Hookwarden schema, version 1 (SQLite). Times are unix milliseconds.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    key_hash    BLOB NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE endpoints (
    id                    TEXT PRIMARY KEY,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    event_types           TEXT NOT NULL,   -- JSON array
    headers               TEXT NOT NULL,   -- JSON object
    developer_payload     TEXT,
    signature_schemes     TEXT NOT NULL,   -- JSON array
    rate_limit_per_second INTEGER,
    enabled               INTEGER NOT NULL DEFAULT 1,
    disabled_reason       TEXT,
    disabled_at           INTEGER,
    client_certificate_id TEXT,
    consecutive_failures  INTEGER NOT NULL DEFAULT 0,
    failing_since         INTEGER,
    created_at            INTEGER NOT NULL,
    updated_at            INTEGER NOT NULL,
    deleted_at            INTEGER
) WITHOUT ROWID;

-- Subscriptions: one row per event type, or one '*' row for every type.
CREATE TABLE endpoint_event_types (
    event_type  TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    PRIMARY KEY (event_type, endpoint_id)
) WITHOUT ROWID;
CREATE INDEX endpoint_event_types_endpoint ON endpoint_event_types (endpoint_id);

CREATE TABLE endpoint_secrets (
    id          INTEGER PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER
);
CREATE INDEX endpoint_secrets_endpoint ON endpoint_secrets (endpoint_id);

CREATE TABLE events (
    id              TEXT PRIMARY KEY,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    source_id       TEXT
) WITHOUT ROWID;
CREATE INDEX events_created ON events (created_at);

CREATE TABLE idempotency_keys (
    key        TEXT PRIMARY KEY,
    event_id   TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- status: 0 pending, 1 succeeded, 2 failed, 3 paused (endpoint disabled), 4 cancelled.
-- A lease is expressed by moving next_attempt_at to the lease's end and naming the owner:
-- an expired lease is simply due again.
CREATE TABLE deliveries (
    id               TEXT PRIMARY KEY,
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    status           INTEGER NOT NULL,
    attempt_count    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    last_status_code INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    completed_at     INTEGER
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 0;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, id);
CREATE INDEX deliveries_open ON deliveries (endpoint_id) WHERE status IN (0, 3);

CREATE TABLE attempts (
    id                 INTEGER PRIMARY KEY,
    delivery_id        TEXT NOT NULL,
    attempt_no         INTEGER NOT NULL,
    started_at         INTEGER NOT NULL,
    duration_ms        INTEGER NOT NULL,
    status_code        INTEGER,
    response_body      TEXT,
    response_truncated INTEGER NOT NULL DEFAULT 0,
    error_class        TEXT,
    error_message      TEXT,
    local_addr         TEXT,
    remote_addr        TEXT,
    outcome            TEXT NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
