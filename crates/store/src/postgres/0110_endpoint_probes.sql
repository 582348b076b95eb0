-- Mirrors sqlite/0110_endpoint_probes.sql. Receiver security probes: a bounded history of
-- reports per endpoint; retired secrets are found by their expiry (kept sealed for probes until retention removes them).
CREATE TABLE endpoint_probes (
    id          TEXT COLLATE "C" PRIMARY KEY,
    endpoint_id TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    triggered_by TEXT NOT NULL,
    grade       TEXT NOT NULL,
    report      TEXT NOT NULL
);
CREATE INDEX endpoint_probes_by_endpoint ON endpoint_probes (endpoint_id, id);
CREATE INDEX endpoint_secrets_by_expiry ON endpoint_secrets (expires_at) WHERE expires_at IS NOT NULL;
-- Secrets of endpoints deleted by an earlier release: deletion now removes them.
DELETE FROM endpoint_secrets WHERE endpoint_id IN (SELECT id FROM endpoints WHERE deleted_at IS NOT NULL);
