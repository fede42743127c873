ALTER TABLE revoked_tokens DROP COLUMN successor_jti, DROP COLUMN successor_iat_ms;
ALTER TABLE users DROP COLUMN tier;
