-- Recoveries: failed deliveries sent again by a job (an endpoint's recover, a bulk retry), with
-- a cursor (creation time, id) that moves in the transaction that makes them due again.
CREATE TABLE recoveries (
    id          TEXT PRIMARY KEY,
    endpoint_id TEXT,
    event_type  TEXT,
    since_at    INTEGER NOT NULL,
    until_at    INTEGER NOT NULL,
    status      TEXT NOT NULL,
    total       INTEGER NOT NULL,
    requeued    INTEGER NOT NULL DEFAULT 0,
    cursor_at   INTEGER,
    cursor_id   TEXT,
    lease_owner TEXT,
    lease_until INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    finished_at INTEGER
) WITHOUT ROWID;
CREATE INDEX recoveries_running ON recoveries (created_at) WHERE status = 'running';
-- Failed deliveries in creation order, per endpoint and in all (only failed rows are indexed).
CREATE INDEX deliveries_failed ON deliveries (endpoint_id, created_at, id) WHERE status = 2;
CREATE INDEX deliveries_failed_all ON deliveries (created_at, id) WHERE status = 2;
