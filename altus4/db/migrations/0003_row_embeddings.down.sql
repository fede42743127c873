DROP TABLE IF EXISTS row_embeddings;
