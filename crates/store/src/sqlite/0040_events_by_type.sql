-- Listing events of some types (the console's alerts) without scanning every event.
-- events is WITHOUT ROWID: the index carries the primary key (id) after event_type.
CREATE INDEX events_by_type ON events (event_type);
