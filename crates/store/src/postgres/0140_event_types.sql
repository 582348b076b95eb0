-- The event-type catalogue: name, description, an optional JSON Schema for payloads (validated
-- on publish when validate is set), deprecation and an example payload.
CREATE TABLE event_types (
    name        TEXT COLLATE "C" PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    schema      TEXT,
    validate    BOOLEAN NOT NULL DEFAULT FALSE,
    deprecated  BOOLEAN NOT NULL DEFAULT FALSE,
    example     TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
