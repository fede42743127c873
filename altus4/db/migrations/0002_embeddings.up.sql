-- Text embeddings, stored once per model and content (SHA-256 of the embedded text): rows with the same
-- text share one vector, a changed row gets a new one, and re-indexing skips what is already there.
CREATE TABLE embeddings (
  model VARCHAR(128) NOT NULL,
  content_hash CHAR(64) NOT NULL,
  dims SMALLINT NOT NULL,
  vector MEDIUMBLOB NOT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (model, content_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
