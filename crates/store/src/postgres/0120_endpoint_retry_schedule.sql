-- Endpoints may carry their own retry schedule: a JSON array of delays in seconds before each
-- retry ('[]': the deployment's backoff).
ALTER TABLE endpoints ADD COLUMN retry_schedule TEXT NOT NULL DEFAULT '[]';
