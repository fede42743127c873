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
        """Record which embedding (content hash) each row of a table has now."""
        if rows:
            with self.db.write() as cur:
                # VALUES() in ON DUPLICATE KEY works on MariaDB and MySQL 8 (deprecated there, not removed)
                cur.executemany(
                    "INSERT INTO row_embeddings (connection_id, table_name, model, row_key,"
                    " content_hash) VALUES (%s, %s, %s, %s, %s)"
                    " ON DUPLICATE KEY UPDATE content_hash = VALUES(content_hash)",
                    [(connection_id, table, model, k, h) for k, h in rows],
                )

    def put(self, model: str, vectors: dict[str, list[float]]) -> None:
        if not vectors:
            return
        with self.db.write() as cur:
            cur.executemany(
                "INSERT IGNORE INTO embeddings (model, content_hash, dims, vector) VALUES (%s, %s, %s, %s)",
                [(model, h, len(v), to_bytes(v)) for h, v in vectors.items()],
            )
