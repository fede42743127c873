-- An API key's secret, encrypted (AES-256-GCM with ENCRYPTION_KEY, the key's id as associated data), so the
-- server can verify tenant tokens, which are signed with it. Keys made before this stay NULL: regenerating
-- one seals its new secret. Lookups still go by key_hash.
ALTER TABLE api_keys ADD COLUMN sealed_secret VARCHAR(255) NULL;
