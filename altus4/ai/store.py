"""Durable embeddings in the metadata database, keyed by model and content hash (SHA-256 of the text)."""

from __future__ import annotations

import hashlib
import struct

from altus4.db.pool import Database

CHUNK = 500


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def to_bytes(vector: list[float]) -> bytes:
    return struct.pack(f"<{len(vector)}f", *vector)


def from_bytes(raw: bytes) -> list[float]:
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class EmbeddingStore:
    def __init__(self, db: Database):
        self.db = db

    def get(self, model: str, hashes: list[str]) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        unique = list(dict.fromkeys(hashes))
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start : start + CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            rows = self.db.fetch_all(
                f"SELECT content_hash, vector FROM embeddings WHERE model = %s AND content_hash IN ({marks})",
                (model, *chunk),
            )
            found.update({r["content_hash"]: from_bytes(r["vector"]) for r in rows})
        return found

    def map_rows(self, connection_id: str, table: str, model: str, rows: list[tuple[str, str]]) -> None:
        """Record which embedding (content hash) each row of a table has now (a row deleted before and back is
        live again). `updated_at` moves only for rows that changed: nodes' indexes read those."""
        if rows:
            with self.db.write() as cur:
                # VALUES() in ON DUPLICATE KEY works on MariaDB and MySQL 8 (deprecated there, not removed)
                cur.executemany(
                    "INSERT INTO row_embeddings (connection_id, table_name, model, row_key,"
                    " content_hash) VALUES (%s, %s, %s, %s, %s)"
                    " ON DUPLICATE KEY UPDATE content_hash = VALUES(content_hash), deleted = 0",
                    [(connection_id, table, model, k, h) for k, h in rows],
                )

    def row_hashes(self, connection_id: str, table: str, model: str, keys: list[str]) -> dict[str, str]:
        """The content hash stored for each of these rows that is live (deleted ones: absent)."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            rows = self.db.fetch_all(
                "SELECT row_key, content_hash FROM row_embeddings WHERE connection_id = %s AND table_name = %s"
                f" AND model = %s AND deleted = 0 AND row_key IN ({marks})",
                (connection_id, table, model, *chunk),
            )
            found.update({r["row_key"]: r["content_hash"] for r in rows})
        return found

    def mark_deleted(self, connection_id: str, table: str, model: str, present: set[str]) -> int:
        """Mark deleted every live stored row of the table whose key is not in `present`; how many."""
        live = self.db.fetch_all(
            "SELECT row_key FROM row_embeddings WHERE connection_id = %s AND table_name = %s AND model = %s"
            " AND deleted = 0",
            (connection_id, table, model),
        )
        gone = [r["row_key"] for r in live if r["row_key"] not in present]
        for start in range(0, len(gone), CHUNK):
            chunk = gone[start : start + CHUNK]
            marks = ", ".join(["%s"] * len(chunk))
            self.db.execute(
                "UPDATE row_embeddings SET deleted = 1 WHERE connection_id = %s AND table_name = %s AND model = %s"
                f" AND row_key IN ({marks})",
                (connection_id, table, model, *chunk),
            )
        return len(gone)

    def follow(self, connection_id: str, table: str, model: str, watermark: tuple[str, str] | None) -> None:
        """Register a table the follower keeps up to date, reconciled now, with where its changes start."""
        column, value = watermark or (None, None)
        self.db.execute(
            "INSERT INTO vector_tables (connection_id, table_name, model, watermark_column, watermark_value,"
            " reconciled_at, deletions_checked_at) VALUES (%s, %s, %s, %s, %s, UTC_TIMESTAMP(3), UTC_TIMESTAMP(3))"
            " ON DUPLICATE KEY UPDATE watermark_column = VALUES(watermark_column),"
            " watermark_value = VALUES(watermark_value), reconciled_at = VALUES(reconciled_at),"
            " deletions_checked_at = VALUES(deletions_checked_at)",
            (connection_id, table, model, column, value),
        )

    def put(self, model: str, vectors: dict[str, list[float]]) -> None:
        if not vectors:
            return
        with self.db.write() as cur:
            cur.executemany(
                "INSERT IGNORE INTO embeddings (model, content_hash, dims, vector) VALUES (%s, %s, %s, %s)",
                [(model, h, len(v), to_bytes(v)) for h, v in vectors.items()],
            )
