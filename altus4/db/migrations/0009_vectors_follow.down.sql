DROP TABLE IF EXISTS vector_tables;
ALTER TABLE row_embeddings DROP KEY ix_row_embeddings_changes, DROP COLUMN updated_at, DROP COLUMN deleted;
