-- Recoveries: failed deliveries sent again by a job (an endpoint's recover, a bulk retry), with
-- a cursor (creation time, id) that moves in the transaction that makes them due again.
CREATE TABLE recoveries (
    id          TEXT COLLATE "C" PRIMARY KEY,
    endpoint_id TEXT COLLATE "C",
    event_type  TEXT,
    since_at    BIGINT NOT NULL,
    until_at    BIGINT NOT NULL,
    status      TEXT NOT NULL,
    total       BIGINT NOT NULL,
    requeued    BIGINT NOT NULL DEFAULT 0,
    cursor_at   BIGINT,
    cursor_id   TEXT COLLATE "C",
    lease_owner TEXT,
    lease_until BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX recoveries_running ON recoveries (created_at) WHERE status = 'running';
-- Failed deliveries in creation order, per endpoint and in all (only failed rows are indexed).
CREATE INDEX deliveries_failed ON deliveries (endpoint_id, created_at, id) WHERE status = 2;
CREATE INDEX deliveries_failed_all ON deliveries (created_at, id) WHERE status = 2;
