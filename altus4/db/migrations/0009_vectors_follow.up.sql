-- Vectors that keep up with their tables. `updated_at` moves when a row's embedding changes or the row is
-- deleted (kept, `deleted` = 1, so every node learns of it): a node's vector index reads only the rows
-- after its own build (`altus4.ai.ann`). `vector_tables` lists the tables `altus4 index` embedded, which the
-- follower (`altus4 index --follow`) keeps up to date, with where it stands in each.
ALTER TABLE row_embeddings
  ADD COLUMN deleted TINYINT(1) NOT NULL DEFAULT 0,
  ADD COLUMN updated_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
  ADD KEY ix_row_embeddings_changes (connection_id, table_name, model, updated_at);
CREATE TABLE vector_tables (
  connection_id CHAR(36) NOT NULL,
  table_name VARCHAR(64) NOT NULL,
  model VARCHAR(128) NOT NULL,
  watermark_column VARCHAR(64) NULL,
  watermark_value VARCHAR(64) NULL,
  reconciled_at DATETIME(3) NULL,
  deletions_checked_at DATETIME(3) NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  PRIMARY KEY (connection_id, table_name, model),
  CONSTRAINT fk_vector_tables_connection FOREIGN KEY (connection_id) REFERENCES database_connections (id)
    ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
