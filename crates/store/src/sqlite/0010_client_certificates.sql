-- Client certificates presented to endpoints (mTLS). The private key is stored as the server
-- hands it over: encrypted when a master key is configured.
CREATE TABLE client_certificates (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL DEFAULT '',
    certificate_pem TEXT NOT NULL,
    private_key     TEXT NOT NULL,
    subject         TEXT NOT NULL,
    issuer          TEXT NOT NULL,
    serial          TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    sha1            TEXT NOT NULL,
    not_before      INTEGER NOT NULL,
    not_after       INTEGER NOT NULL,
    generated       INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    retired_at      INTEGER
) WITHOUT ROWID;
CREATE INDEX endpoints_client_certificate ON endpoints (client_certificate_id)
    WHERE client_certificate_id IS NOT NULL;
