-- This deployment's id, made once when the schema is created. It names the Redis queues whose items belong
-- in this database (usage counts, analytics entries, revocations), so two deployments that share one Redis
-- database never take each other's queues, with or without REDIS_PREFIX. One row; replicated like any other.
CREATE TABLE deployment (
    singleton TINYINT NOT NULL PRIMARY KEY DEFAULT 1,
    id CHAR(32) NOT NULL,
    created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    CONSTRAINT chk_deployment_singleton CHECK (singleton = 1)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
INSERT INTO deployment (singleton, id) VALUES (1, REPLACE(UUID(), '-', ''));
