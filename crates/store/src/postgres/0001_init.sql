-- Hookwarden schema, version 1 (PostgreSQL). Times are unix milliseconds (BIGINT).
-- Mirrors sqlite/0001_init.sql; identifiers and keys use the "C" collation so that ordering and
-- keyset pagination compare bytes, exactly as SQLite does, whatever the database's locale.

CREATE TABLE meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    key_hash    BYTEA NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE TABLE endpoints (
    id                    TEXT COLLATE "C" PRIMARY KEY,
    url                   TEXT NOT NULL,
    description           TEXT NOT NULL DEFAULT '',
    event_types           TEXT NOT NULL,   -- JSON array
    headers               TEXT NOT NULL,   -- JSON object
    developer_payload     TEXT,
    signature_schemes     TEXT NOT NULL,   -- JSON array
    rate_limit_per_second BIGINT,
    enabled               BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason       TEXT,
    disabled_at           BIGINT,
    client_certificate_id TEXT,
    consecutive_failures  BIGINT NOT NULL DEFAULT 0,
    failing_since         BIGINT,
    created_at            BIGINT NOT NULL,
    updated_at            BIGINT NOT NULL,
    deleted_at            BIGINT
);

-- Subscriptions: one row per event type, or one '*' row for every type.
CREATE TABLE endpoint_event_types (
    event_type  TEXT COLLATE "C" NOT NULL,
    endpoint_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (event_type, endpoint_id)
);
CREATE INDEX endpoint_event_types_endpoint ON endpoint_event_types (endpoint_id);

CREATE TABLE endpoint_secrets (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id TEXT COLLATE "C" NOT NULL,
    secret      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT
);
CREATE INDEX endpoint_secrets_endpoint ON endpoint_secrets (endpoint_id);

CREATE TABLE events (
    id              TEXT COLLATE "C" PRIMARY KEY,
    event_type      TEXT COLLATE "C" NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT COLLATE "C",
    created_at      BIGINT NOT NULL,
    source_id       TEXT
);
CREATE INDEX events_created ON events (created_at);

-- The primary key makes a key unique across every instance sharing the database.
CREATE TABLE idempotency_keys (
    key        TEXT COLLATE "C" PRIMARY KEY,
    event_id   TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- status: 0 pending, 1 succeeded, 2 failed, 3 paused (endpoint disabled), 4 cancelled.
-- A lease is expressed by moving next_attempt_at to the lease's end and naming the owner:
-- an expired lease is simply due again.
CREATE TABLE deliveries (
    id               TEXT COLLATE "C" PRIMARY KEY,
    event_id         TEXT COLLATE "C" NOT NULL,
    endpoint_id      TEXT COLLATE "C" NOT NULL,
    status           SMALLINT NOT NULL,
    attempt_count    BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    updated_at       BIGINT NOT NULL,
    completed_at     BIGINT
);
-- Claiming scans only pending rows, in due order, however many finished or waiting rows exist.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 0;
CREATE INDEX deliveries_event ON deliveries (event_id);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, id);
CREATE INDEX deliveries_open ON deliveries (endpoint_id) WHERE status IN (0, 3);
-- Retention: finished deliveries in completion order.
CREATE INDEX deliveries_finished ON deliveries (completed_at) WHERE status IN (1, 2, 4);
-- Every claim and outcome rewrites rows: vacuum sooner than the default 20% so that dead index
-- entries do not pile up in front of the claim scan.
ALTER TABLE deliveries SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

CREATE TABLE attempts (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id        TEXT COLLATE "C" NOT NULL,
    attempt_no         BIGINT NOT NULL,
    started_at         BIGINT NOT NULL,
    duration_ms        BIGINT NOT NULL,
    status_code        BIGINT,
    response_body      TEXT,
    response_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    error_class        TEXT,
    error_message      TEXT,
    local_addr         TEXT,
    remote_addr        TEXT,
    outcome            TEXT NOT NULL
);
CREATE INDEX attempts_delivery ON attempts (delivery_id);
