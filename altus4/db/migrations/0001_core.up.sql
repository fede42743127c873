-- Accounts, API keys, connected databases and search analytics.
-- Portable between MySQL 8 and MariaDB 10.6+: no MariaDB-only syntax, UTC DATETIME(3) columns.
CREATE TABLE users (
  id CHAR(36) NOT NULL PRIMARY KEY,
  email VARCHAR(255) NOT NULL,
  name VARCHAR(255) NOT NULL,
  password_hash VARCHAR(255) NOT NULL,
  role VARCHAR(16) NOT NULL DEFAULT 'user',
  is_active TINYINT(1) NOT NULL DEFAULT 1,
  password_changed_at DATETIME(3) NULL,
  last_active DATETIME(3) NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  UNIQUE KEY uq_users_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE revoked_tokens (
  jti CHAR(36) NOT NULL PRIMARY KEY,
  user_id CHAR(36) NOT NULL,
  expires_at DATETIME(3) NOT NULL,
  KEY ix_revoked_tokens_expires (expires_at),
  CONSTRAINT fk_revoked_tokens_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE api_keys (
  id CHAR(36) NOT NULL PRIMARY KEY,
  user_id CHAR(36) NOT NULL,
  name VARCHAR(255) NOT NULL,
  key_prefix VARCHAR(32) NOT NULL,
  key_hash CHAR(64) NOT NULL,
  environment VARCHAR(8) NOT NULL,
  permissions VARCHAR(255) NOT NULL,
  rate_limit_tier VARCHAR(16) NOT NULL DEFAULT 'free',
  expires_at DATETIME(3) NULL,
  last_used DATETIME(3) NULL,
  last_used_ip VARCHAR(45) NULL,
  usage_count BIGINT NOT NULL DEFAULT 0,
  is_active TINYINT(1) NOT NULL DEFAULT 1,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  UNIQUE KEY uq_api_keys_hash (key_hash),
  KEY ix_api_keys_user (user_id, created_at),
  CONSTRAINT fk_api_keys_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE api_key_usage (
  api_key_id CHAR(36) NOT NULL,
  day DATE NOT NULL,
  request_count BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (api_key_id, day),
  CONSTRAINT fk_api_key_usage_key FOREIGN KEY (api_key_id) REFERENCES api_keys (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE database_connections (
  id CHAR(36) NOT NULL PRIMARY KEY,
  user_id CHAR(36) NOT NULL,
  name VARCHAR(255) NOT NULL,
  host VARCHAR(255) NOT NULL,
  port INT NOT NULL DEFAULT 3306,
  database_name VARCHAR(64) NOT NULL,
  username VARCHAR(255) NOT NULL,
  password_encrypted TEXT NULL,
  ssl_enabled TINYINT(1) NOT NULL DEFAULT 0,
  read_replicas VARCHAR(1000) NOT NULL DEFAULT '',
  is_active TINYINT(1) NOT NULL DEFAULT 1,
  connection_status VARCHAR(16) NOT NULL DEFAULT 'unknown',
  last_error VARCHAR(512) NULL,
  last_tested DATETIME(3) NULL,
  schema_version INT NOT NULL DEFAULT 1,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  KEY ix_database_connections_user (user_id, created_at),
  CONSTRAINT fk_database_connections_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE search_analytics (
  id CHAR(36) NOT NULL PRIMARY KEY,
  user_id CHAR(36) NOT NULL,
  api_key_id CHAR(36) NULL,
  query_text VARCHAR(500) NOT NULL,
  search_mode VARCHAR(16) NOT NULL,
  database_ids TEXT NULL,
  categories VARCHAR(1000) NULL,
  result_count INT NOT NULL DEFAULT 0,
  execution_time_ms DOUBLE NOT NULL DEFAULT 0,
  cache_hit TINYINT(1) NOT NULL DEFAULT 0,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY ix_search_analytics_user_time (user_id, created_at),
  KEY ix_search_analytics_user_query (user_id, query_text(100)),
  KEY ix_search_analytics_time (created_at),
  CONSTRAINT fk_search_analytics_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
