-- Endpoint secrets have a kind: 'hmac' (the symmetric whsec_ secrets of the HMAC schemes) or
-- 'ed25519' (the private keys of standard-webhooks-v1a, whose public keys receivers hold).
-- Each kind rotates on its own.
ALTER TABLE endpoint_secrets ADD COLUMN kind TEXT NOT NULL DEFAULT 'hmac';
