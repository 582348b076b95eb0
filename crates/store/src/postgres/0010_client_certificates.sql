-- Client certificates presented to endpoints (mTLS). Mirrors sqlite/0010_client_certificates.sql.
-- The private key is stored as the server hands it over: encrypted when a master key is
-- configured. The published egress ranges live in `meta`.
CREATE TABLE client_certificates (
    id              TEXT COLLATE "C" PRIMARY KEY,
    name            TEXT NOT NULL DEFAULT '',
    certificate_pem TEXT NOT NULL,
    private_key     TEXT NOT NULL,
    subject         TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    serial          TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    sha1            TEXT NOT NULL,
    not_before      BIGINT NOT NULL,
    not_after       BIGINT NOT NULL,
    generated       BOOLEAN NOT NULL DEFAULT FALSE,
    status          TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    retired_at      BIGINT
);
CREATE INDEX endpoints_client_certificate ON endpoints (client_certificate_id)
    WHERE client_certificate_id IS NOT NULL;
