DROP TABLE IF EXISTS write_batches;
