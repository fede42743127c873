-- An account's rate-limit tier, set by an admin (`altus4 user:tier`, PUT /api/v1/management/users/{id}/tier);
-- its keys' tiers are capped by it. Existing accounts start at free: keys above it count as free until an
-- admin raises the account (the keys' own tiers are kept, so they come back then).
ALTER TABLE users ADD COLUMN tier VARCHAR(16) NOT NULL DEFAULT 'free';
-- A refreshed token's one successor (its jti and issue time): a second refresh within the grace gets the
-- same token back instead of a second live one.
ALTER TABLE revoked_tokens ADD COLUMN successor_jti CHAR(36) NULL, ADD COLUMN successor_iat_ms BIGINT NULL;
