DROP TABLE IF EXISTS search_analytics;
DROP TABLE IF EXISTS database_connections;
DROP TABLE IF EXISTS api_key_usage;
DROP TABLE IF EXISTS api_keys;
DROP TABLE IF EXISTS revoked_tokens;
DROP TABLE IF EXISTS users;
