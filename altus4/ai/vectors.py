"""Whole-table vector retrieval over rows indexed by `altus4 index`.

A worker loads a table's vectors once (then every VECTOR_TTL seconds) into one float32 matrix and answers
top-k by cosine with a matrix-vector product. Memory: dims × 4 bytes per row — 1.5 KB for a 384-dimension
model, so about 1.5 GB per million indexed rows in every worker. That is where this stops scaling: beyond a
few hundred thousand rows per worker, move the vectors to a vector index (MariaDB 11.7+ VECTOR columns with
an HNSW index, or a vector store) and ask it for the top-k instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from altus4.ai.store import from_bytes
from altus4.db.pool import Database
from altus4.redis_store import RedisStore

VECTOR_TTL = 300.0


def version_key(connection_id: str, table: str, model: str) -> str:
    return f"vecver:{connection_id}:{table}:{model}"


class VectorIndex:
    """Per-worker matrices, reloaded when `altus4 index` bumps the table's version in Redis (or after
    VECTOR_TTL when Redis cannot say)."""

    def __init__(self, db: Database, store: RedisStore):
        self.db = db
        self.store = store
        self._tables: dict[tuple[str, str, str], tuple[float, Any, list[str], np.ndarray]] = {}
        self._lock = threading.Lock()

    def bump(self, connection_id: str, table: str, model: str) -> None:
        self.store.safe(lambda r: r.incr(self.store.key(version_key(connection_id, table, model))), None)

    def _load(self, connection_id: str, table: str, model: str) -> tuple[list[str], np.ndarray]:
        key = (connection_id, table, model)
        version = self.store.safe(lambda r: r.get(self.store.key(version_key(*key))), None)
        hit = self._tables.get(key)
        if hit and hit[0] > time.monotonic() and hit[1] == version:
            return hit[2], hit[3]
        rows = self.db.fetch_all(
            "SELECT r.row_key, e.vector FROM row_embeddings r JOIN embeddings e"
            " ON e.model = r.model AND e.content_hash = r.content_hash"
            " WHERE r.connection_id = %s AND r.table_name = %s AND r.model = %s",
            (connection_id, table, model),
        )
        keys = [r["row_key"] for r in rows]
        matrix = np.array([from_bytes(r["vector"]) for r in rows], dtype=np.float32) if rows else np.zeros((0, 0))
        with self._lock:
            self._tables[key] = (time.monotonic() + VECTOR_TTL, version, keys, matrix)
        return keys, matrix

    def nearest(self, connection_id: str, table: str, model: str, query: list[float], k: int) -> list[str]:
        """Row keys of the `k` rows closest to `query` ([] when the table is not indexed)."""
        keys, matrix = self._load(connection_id, table, model)
        if not keys or matrix.shape[1] != len(query):
            return []
        scores = matrix @ np.asarray(query, dtype=np.float32)
        top = np.argpartition(-scores, min(k, len(keys)) - 1)[:k]
        return [keys[i] for i in top[np.argsort(-scores[top])]]

    def forget(self, connection_id: str) -> None:
        with self._lock:
            for key in [k for k in self._tables if k[0] == connection_id]:
                del self._tables[key]
