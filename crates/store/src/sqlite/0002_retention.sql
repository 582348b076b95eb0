-- Hookwarden schema, version 2 (SQLite): retention finds finished deliveries by completion time.
CREATE INDEX deliveries_finished ON deliveries (completed_at) WHERE status IN (1, 2, 4);
