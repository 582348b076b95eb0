-- An endpoint's payload filter (JSON text: events it does not match are not delivered to it) and
-- transformation (a script run on each request before it is signed and sent). NULL: none.
ALTER TABLE endpoints ADD COLUMN filter TEXT;
ALTER TABLE endpoints ADD COLUMN transformation TEXT;
