-- The web console. Mirrors sqlite/0035_console.sql: request headers of each attempt (secrets
-- masked by the server, JSON text), and finished deliveries of one endpoint in completion
-- order (delivery charts).
ALTER TABLE attempts ADD COLUMN request_headers TEXT;
CREATE INDEX deliveries_endpoint_finished ON deliveries (endpoint_id, completed_at)
    WHERE status IN (1, 2);
