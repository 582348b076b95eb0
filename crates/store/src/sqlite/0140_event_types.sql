-- The event-type catalogue: name, description, an optional JSON Schema for payloads (validated
-- on publish when validate is set), deprecation and an example payload.
CREATE TABLE event_types (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    schema      TEXT,
    validate    INTEGER NOT NULL DEFAULT 0,
    deprecated  INTEGER NOT NULL DEFAULT 0,
    example     TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) WITHOUT ROWID;
