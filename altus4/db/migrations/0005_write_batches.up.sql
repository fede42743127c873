-- Buffered write batches already applied (API-key usage counts). A worker pushes a batch to Redis again
-- when Redis lost its data before a flush took it; a batch already counted is recognised here and not
-- counted twice. The flush deletes rows older than a day.
CREATE TABLE write_batches (
    id CHAR(40) NOT NULL PRIMARY KEY,
    applied_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    KEY idx_write_batches_applied_at (applied_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
