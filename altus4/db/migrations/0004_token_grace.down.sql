ALTER TABLE revoked_tokens DROP COLUMN effective_at;
