-- Which embedding each indexed row of a connected table has (filled by `altus4 index`), so semantic search
-- can retrieve rows by vector similarity, not only re-rank what FULLTEXT found.
CREATE TABLE row_embeddings (
  connection_id CHAR(36) NOT NULL,
  table_name VARCHAR(64) NOT NULL,
  model VARCHAR(128) NOT NULL,
  row_key VARCHAR(255) NOT NULL,
  content_hash CHAR(64) NOT NULL,
  PRIMARY KEY (connection_id, table_name, model, row_key),
  CONSTRAINT fk_row_embeddings_connection FOREIGN KEY (connection_id) REFERENCES database_connections (id)
    ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
