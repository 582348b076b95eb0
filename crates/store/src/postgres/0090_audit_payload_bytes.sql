-- Logged request bodies as bytes. A body is whatever a client sent: PostgreSQL text holds
-- neither a NUL byte nor invalid UTF-8, so a body with one could not be audited at all. New
-- entries write their body to `payload_bytes`; entries written before keep their text in
-- `payload` (read back as its UTF-8 bytes) until retention deletes them. A nullable column
-- without a default is added without rewriting the table.
ALTER TABLE inbound_audit ADD COLUMN payload_bytes BYTEA;
