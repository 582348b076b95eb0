-- Admin API keys get a name, an expiry and the time of their last use (revocation existed).
-- Mirrors sqlite/0100_api_key_lifecycle.sql.
ALTER TABLE api_keys ADD COLUMN name TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN expires_at BIGINT;
ALTER TABLE api_keys ADD COLUMN last_used_at BIGINT;
