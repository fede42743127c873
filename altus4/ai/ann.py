"""Nearest rows by vector, shared by a node's workers: an HNSW index per (connection, table, model) on local
disk, memory-mapped by every worker (usearch), plus the rows changed since it was built, searched exactly.

Why usearch: it searches a saved index in place (`Index.restore(path, view=True)` maps the file), so the
page cache holds one copy per node whatever the worker count; hnswlib loads a private copy into every
process (and builds from source here); faiss-cpu maps only flat and IVF indexes, not its HNSW graph, and is
an 18 MB wheel. Vectors are stored as f16 in the index (half of f32's memory; recall measured in bench).

Per table:
- the **base**: every live row embedded up to a watermark, built by one process per node at a time (a file
  lock), written beside the old one and switched to by replacing the manifest (atomic rename), so readers
  never see a half-written index;
- the **delta**: rows embedded, changed or deleted after the watermark (`row_embeddings.updated_at`), read by
  each worker when the table's version changes (`altus4 index` and the follower bump it) and searched
  exactly; a row in the delta hides its stale base entry. When the delta outgrows REBUILD_FRACTION of the
  base (or REBUILD_ROWS), the next search starts a rebuild in the background.
Tables of at most VECTOR_EXACT_MAX_ROWS rows need no index: every worker keeps their vectors (a few MB) and
answers exactly. A bigger table whose base is not built yet on this node returns no vector candidates until
it is (semantic search then re-ranks its FULLTEXT candidates only).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from usearch.index import Index

from altus4.db.pool import Database
from altus4.metrics import Metrics
from altus4.redis_store import RedisStore

log = logging.getLogger("altus4.ai")
REBUILD_ROWS = 20_000
REBUILD_FRACTION = 0.1
WATERMARK_MARGIN = timedelta(seconds=5)  # rows committed with an earlier timestamp after the build read
BATCH = 5000
EXPANSION_SEARCH = 128  # candidates HNSW keeps while searching (at least twice the rows asked for)
CHECK_SECONDS = 2.0  # how often a worker looks at this node's manifest (the table's version: every search)
VERSION_TTL = 300.0  # without Redis, how long a worker trusts what it loaded


def version_key(connection_id: str, table: str, model: str) -> str:
    return f"vecver:{connection_id}:{table}:{model}"


@dataclass
class _Delta:
    watermark: datetime | None  # rows after the base's watermark
    hidden: set[str] = field(default_factory=set)  # keys whose base entry is stale (changed or deleted)
    keys: list[str] = field(default_factory=list)  # live delta rows, with their vectors below
    matrix: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))


@dataclass
class _Base:
    generation: str
    index: Any  # usearch Index, a view of the file
    offsets: np.ndarray  # memory-mapped: label i's key is blob[offsets[i]:offsets[i + 1]]
    blob: np.ndarray
    rows: int
    watermark: datetime

    def key(self, label: int) -> str:
        return bytes(self.blob[int(self.offsets[label]) : int(self.offsets[label + 1])]).decode()


@dataclass
class _Table:
    version: Any = None
    checked: float = 0.0  # when the version and manifest were last looked at
    loaded: float = 0.0  # when the delta was last read
    base: _Base | None = None
    delta: _Delta = field(default_factory=lambda: _Delta(None))
    rows: int = 0  # live rows in all (base + delta) as of the last load


class NodeIndexes:
    """Vector retrieval over rows indexed by `altus4 index` (and the follower), one index file per table and
    node, shared by its workers."""

    def __init__(
        self, db: Database, store: RedisStore, directory: str, exact_max_rows: int, metrics: Metrics | None = None
    ):
        self.db = db
        self.store = store
        self.directory = Path(directory)
        self.exact_max_rows = exact_max_rows
        self.metrics = metrics or Metrics()
        self._tables: dict[tuple[str, str, str], _Table] = {}
        self._lock = threading.Lock()
        self._building: set[tuple[str, str, str]] = set()

    # ---- the API search uses ----------------------------------------------------------------
    def bump(self, connection_id: str, table: str, model: str) -> None:
        """The table's vectors changed: every worker reloads what it needs on its next search."""
        self.store.safe(lambda r: r.incr(self.store.key(version_key(connection_id, table, model))), None)

    def nearest(self, connection_id: str, table: str, model: str, query: list[float], k: int) -> list[str]:
        """Row keys of about the `k` rows closest to `query` by cosine ([] when the table is not indexed, or its
        base is still being built on this node)."""
        key = (connection_id, table, model)
        state = self._refresh(key)
        vector = np.asarray(query, dtype=np.float32)
        found: list[tuple[float, str]] = []
        delta = state.delta
        if len(delta.keys) and delta.matrix.shape[1] == len(query):
            scores = delta.matrix @ vector
            top = np.argsort(-scores)[:k]
            found += [(float(scores[i]), delta.keys[i]) for i in top]
        base = state.base
        if base is not None and base.rows and base.index.ndim == len(query):
            want = min(base.rows, k + len(delta.hidden))
            base.index.expansion_search = max(EXPANSION_SEARCH, 2 * want)  # recall for the k asked (bench)
            matches = base.index.search(vector, want)
            for label, distance in zip(matches.keys, matches.distances, strict=False):
                row_key = base.key(int(label))
                if row_key not in delta.hidden:
                    found.append((1.0 - float(distance), row_key))
        found.sort(key=lambda pair: -pair[0])
        return [row_key for _, row_key in found[:k]]

    def forget(self, connection_id: str) -> None:
        with self._lock:
            for key in [k for k in self._tables if k[0] == connection_id]:
                del self._tables[key]

    # ---- keeping up -----------------------------------------------------------------------------
    def _refresh(self, key: tuple[str, str, str]) -> _Table:
        """The table's state, reloaded when its version (or this node's base) changed; a rebuild started in
        the background when the delta has grown too big."""
        with self._lock:
            state = self._tables.setdefault(key, _Table())
        now = time.monotonic()
        version = self.store.safe(lambda r: r.get(self.store.key(version_key(*key))), None)  # each search: fresh
        if version == state.version and state.loaded and now - state.checked < CHECK_SECONDS:
            return state
        state.checked = now
        base = self._open_base(key, state.base)
        unchanged = version == state.version and base is state.base and state.loaded
        if unchanged and (version is not None or now - state.loaded < VERSION_TTL):
            return state
        fresh = _Table(version=version, checked=now, loaded=now, base=base)
        fresh.rows = self._count(key)
        if base is None and fresh.rows > self.exact_max_rows:
            self._build_soon(key)  # until it is built, no vector candidates for this table on this node
        watermark = base.watermark if base is not None else None
        if base is not None or fresh.rows <= self.exact_max_rows:
            fresh.delta = self._load_delta(key, watermark)
        if base is not None and len(fresh.delta.hidden) > max(REBUILD_ROWS, REBUILD_FRACTION * base.rows):
            self._build_soon(key)
        with self._lock:
            self._tables[key] = fresh
        return fresh

    def _count(self, key: tuple[str, str, str]) -> int:
        row = self.db.fetch_aggregate(
            "SELECT COUNT(*) AS n FROM row_embeddings WHERE connection_id = %s AND table_name = %s AND model = %s"
            " AND deleted = 0",
            key,
        )
        return int(row["n"])

    def _load_delta(self, key: tuple[str, str, str], watermark: datetime | None) -> _Delta:
        """The rows after `watermark` (every live row without one): their vectors, and the keys they hide."""
        since = watermark or datetime(1970, 1, 1)
        rows = self.db.fetch_all(
            "SELECT r.row_key, r.deleted, e.vector FROM row_embeddings r LEFT JOIN embeddings e"
            " ON e.model = r.model AND e.content_hash = r.content_hash"
            " WHERE r.connection_id = %s AND r.table_name = %s AND r.model = %s AND r.updated_at > %s",
            (*key, since),
        )
        delta = _Delta(watermark, hidden={r["row_key"] for r in rows})
        live = [r for r in rows if not r["deleted"] and r["vector"] is not None]
        delta.keys = [r["row_key"] for r in live]
        if live:
            delta.matrix = np.vstack([_vector(r["vector"]) for r in live])
        return delta

    # ---- the base, on this node's disk ------------------------------------------------------------
    def _folder(self, key: tuple[str, str, str]) -> Path:
        return self.directory / hashlib.sha1("\x00".join(key).encode()).hexdigest()[:20]  # noqa: S324 - a name

    def _open_base(self, key: tuple[str, str, str], current: _Base | None) -> _Base | None:
        """The base the manifest names (the one held already if it has not changed); None before any build."""
        manifest = self._folder(key) / "manifest.json"
        try:
            info = json.loads(manifest.read_text())
        except (OSError, ValueError):
            return None
        if current is not None and current.generation == info["generation"]:
            return current
        folder = manifest.parent
        try:
            index = Index.restore(str(folder / f"{info['generation']}.usearch"), view=True)
            offsets = np.memmap(folder / f"{info['generation']}.offsets", dtype=np.uint64, mode="r")
            blob = np.memmap(folder / f"{info['generation']}.keys", dtype=np.uint8, mode="r")
        except (OSError, ValueError, RuntimeError) as exc:  # a build replaced it meanwhile: the next check sees
            log.warning("vector index %s not opened: %s", folder, exc)
            return current
        mapped = sum(f.stat().st_size for f in folder.glob(info["generation"] + ".*"))
        self.metrics.vector_index_rows.labels(key[1]).set(info["rows"])
        self.metrics.vector_index_bytes.labels(key[1]).set(mapped)
        watermark = datetime.fromisoformat(info["watermark"])
        return _Base(info["generation"], index, offsets, blob, int(info["rows"]), watermark)

    def _build_soon(self, key: tuple[str, str, str]) -> None:
        """Build the table's base in the background, unless this process or another on the node is."""
        with self._lock:
            if key in self._building:
                return
            self._building.add(key)

        def run() -> None:
            try:
                self.build(key)
            except Exception:  # noqa: BLE001 - logged; the next check tries again
                log.exception("building the vector index of %s failed", key[1])
            finally:
                with self._lock:
                    self._building.discard(key)
                    state = self._tables.get(key)
                    if state is not None:
                        state.checked = 0.0  # look again at once

        threading.Thread(target=run, name="altus4-vector-build", daemon=True).start()

    def build(self, key: tuple[str, str, str]) -> bool:
        """Build the base from every live row embedded up to now (less a margin), under the node's lock for
        this table; False when another process holds it (its build serves this one too)."""
        folder = self._folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "build.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            started = time.monotonic()
            watermark = self._now() - WATERMARK_MARGIN
            generation = f"g{int(time.time() * 1000)}"
            index: Index | None = None
            keys: list[bytes] = []
            last = ""
            while True:
                rows = self.db.fetch_all(
                    "SELECT r.row_key, e.vector FROM row_embeddings r JOIN embeddings e"
                    " ON e.model = r.model AND e.content_hash = r.content_hash"
                    " WHERE r.connection_id = %s AND r.table_name = %s AND r.model = %s AND r.deleted = 0"
                    " AND r.updated_at <= %s AND r.row_key > %s ORDER BY r.row_key LIMIT %s",
                    (*key, watermark, last, BATCH),
                )
                if not rows:
                    break
                vectors = np.vstack([_vector(r["vector"]) for r in rows])
                if index is None:
                    index = Index(ndim=vectors.shape[1], metric="cos", dtype="f16")
                index.add(np.arange(len(keys), len(keys) + len(rows), dtype=np.uint64), vectors)
                keys += [r["row_key"].encode() for r in rows]
                last = rows[-1]["row_key"]
            if index is None:
                index = Index(ndim=1, metric="cos", dtype="f16")
            index.save(str(folder / f"{generation}.usearch"))
            offsets = np.zeros(len(keys) + 1, dtype=np.uint64)
            offsets[1:] = np.cumsum([len(k) for k in keys], dtype=np.uint64)
            offsets.tofile(folder / f"{generation}.offsets")
            np.frombuffer(b"".join(keys) or b"\x00", dtype=np.uint8).tofile(folder / f"{generation}.keys")
            manifest = {"generation": generation, "rows": len(keys), "watermark": watermark.isoformat()}
            (folder / "manifest.tmp").write_text(json.dumps(manifest))
            os.replace(folder / "manifest.tmp", folder / "manifest.json")  # readers switch here, atomically
            for old in folder.iterdir():  # mapped files stay readable to workers that still use them
                if old.suffix in (".usearch", ".offsets", ".keys") and not old.name.startswith(generation + "."):
                    with contextlib.suppress(OSError):
                        old.unlink()
            seconds = time.monotonic() - started
            self.metrics.vector_index_build_seconds.labels(key[1]).observe(seconds)
            log.info("vector index of %s: %d rows built in %.1f s", key[1], len(keys), seconds)
            return True

    def _now(self) -> datetime:
        """The metadata server's clock (the watermark compares with its timestamps)."""
        return self.db.fetch_aggregate("SELECT UTC_TIMESTAMP(3) AS now")["now"]


def _vector(raw: bytes) -> np.ndarray:
    """A stored vector (little-endian float32, `altus4.ai.store.to_bytes`) as an array, without a Python list."""
    return np.frombuffer(raw, dtype="<f4").astype(np.float32)
