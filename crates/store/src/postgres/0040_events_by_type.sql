-- Listing events of some types (the console's alerts) without scanning every event.
CREATE INDEX IF NOT EXISTS events_by_type ON events (event_type, id);
