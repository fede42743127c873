"""Search at scale (issue #28): vectors and BM25 at 100k and 1M rows.

    make bench-scale                       # .venv/bin/python bench/scale.py --sizes 100000,1000000

For each size, on the bench's generated products table of that size (bench/run.py's data):
- **vectors**: synthetic 384-dimension unit vectors, clustered (1,000 centres, noise), one per product, stored
  as `altus4 index` stores them; the node's index built from them (`NodeIndexes.build`, timed); top-100 by
  cosine for 200 queries drawn from the same clusters, exact (one matrix product, as every worker held it
  before) and through the index, p50; recall@10 of the index against exact; resident memory per worker and
  for a node of 4 workers searching the same index (PSS from /proc: shared pages counted once), against
  the index file's size;
- **search**: p50 and p95 at one client of natural (BM25) and semantic searches through the API (a local
  embedding server maps each query to a vector from the same clusters);
- **first search**: 30 queries no search has asked before (BM25 statistics cold) against the same queries
  again (warm), p50 and p95: the first must stay within 1.3x the warm.
Writes bench/results/scale.json and prints a markdown table with a PASS/FAIL line per target.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datagen  # noqa: E402
from run import (  # noqa: E402
    DB_PREFIX,
    RESULTS,
    account,
    build_products,
    mysql,
    server_env,
    start_server,
    stop_server,
)

from altus4.ai.store import content_hash, to_bytes  # noqa: E402
from altus4.config import Settings  # noqa: E402
from altus4.db.migrate import Migrator  # noqa: E402
from altus4.loadtest import HttpClient  # noqa: E402
from altus4.search.semantic import row_text  # noqa: E402

DIMS = 384
CENTRES = 1000
MODEL = "bench-clustered-384-rows"  # a new name whenever what is stored under it changes
CHUNK = 100_000
PORT = 3993
EMBED_PORT = 3994


def clustered(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` unit vectors around CENTRES centres (the centres too): how real embeddings bunch by topic. Made in
    chunks of CHUNK, each from its own seed, so the first rows are the same whatever `n` (and match the
    vectors stored by an earlier run)."""
    centres = np.random.default_rng(seed).normal(size=(CENTRES, DIMS)).astype(np.float32)
    chunks = []
    for c, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng([seed, c])
        labels = rng.integers(0, CENTRES, min(CHUNK, n - start))
        chunk = centres[labels] + rng.normal(scale=0.6, size=(len(labels), DIMS)).astype(np.float32)
        chunks.append(chunk / np.linalg.norm(chunk, axis=1, keepdims=True))
    return np.concatenate(chunks), centres


def query_vector(text: str, centres: np.ndarray) -> list[float]:
    """A query's vector: near one of the centres, chosen by the text (the embedding server's "model")."""
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    v = centres[seed % CENTRES] + rng.normal(scale=0.6, size=DIMS).astype(np.float32)
    return list((v / np.linalg.norm(v)).astype(float))


def embedding_server(centres: np.ndarray) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
            data = [
                {"object": "embedding", "index": i, "embedding": query_vector(t, centres)} for i, t in enumerate(texts)
            ]
            out = json.dumps(
                {"object": "list", "data": data, "model": MODEL, "usage": {"prompt_tokens": 1, "total_tokens": 1}}
            )
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out.encode())

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", EMBED_PORT), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def store_vectors(settings: Settings, vectors: np.ndarray, connection_id: str, table_db: str) -> None:
    """The vectors as `altus4 index` stores them: each under the content hash of its row's searched text (so a
    semantic search finds the lexical candidates' vectors stored, as it would for an indexed table), the
    embeddings once (reused across runs), this connection's rows mapped to them."""
    source = mysql(settings, table_db)
    conn = mysql(settings, settings.db_database)
    with source.cursor(pymysql.cursors.SSCursor) as rows, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM embeddings WHERE model = %s", (MODEL,))
        stored = cur.fetchone()[0] >= len(vectors)
        rows.execute("SELECT id, name, description FROM products ORDER BY id LIMIT %s", (len(vectors),))
        while batch := rows.fetchmany(5000):
            keyed = [
                (str(i), content_hash(row_text({"name": n, "description": d}, ("name", "description"))), i - 1)
                for i, n, d in batch
            ]
            if not stored:
                cur.executemany(
                    "INSERT IGNORE INTO embeddings (model, content_hash, dims, vector) VALUES (%s, %s, %s, %s)",
                    [(MODEL, h, DIMS, to_bytes(list(vectors[n]))) for _, h, n in keyed],
                )
            cur.executemany(
                "INSERT IGNORE INTO row_embeddings (connection_id, table_name, model, row_key, content_hash,"
                " updated_at) VALUES (%s, 'products', %s, %s, %s, UTC_TIMESTAMP(3) - INTERVAL 1 HOUR)",
                [(connection_id, MODEL, key, h) for key, h, _ in keyed],
            )
    source.close()
    conn.close()


_BARRIER = None


def _share_barrier(barrier) -> None:
    global _BARRIER
    _BARRIER = barrier


def _worker_memory(args) -> dict:
    """In a fresh process (a gunicorn worker's stand-in): open the node's index, search it, report memory once
    every worker has searched (a barrier): PSS divides a shared page among the processes mapping it *now*, so
    workers measured one after another would each count the pages the others had not touched yet."""
    env, key, queries = args
    from altus4.container import Services
    from altus4.metrics import Metrics

    services = Services.build(Settings.from_env(env), time.monotonic(), Metrics())
    before = _memory()
    for q in queries:
        services.search.vectors.nearest(*key, q, 100)
    if _BARRIER is not None:
        _BARRIER.wait()
    after = _memory()
    if _BARRIER is not None:
        _BARRIER.wait()  # nobody unmaps before everyone has measured
    services.close()
    return {"before": before, "after": after}


def node_memory(env: dict, key: tuple, queries: list, workers: int = 4) -> list[dict]:
    """`workers` processes searching one index side by side, measured at the same moment."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(workers)
    with context.Pool(workers, initializer=_share_barrier, initargs=(barrier,)) as pool:
        return pool.map(_worker_memory, [(env, key, queries)] * workers)


def _memory() -> dict:
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("Rss", "Pss"):
            fields[name.lower()] = int(value.split()[0]) * 1024
    return fields


def p50_p95(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return round(statistics.median(ordered), 2), round(ordered[int(len(ordered) * 0.95) - 1], 2)


def measure(size: int, settings: Settings, env: dict, base: str, centres: np.ndarray, vectors: np.ndarray) -> dict:
    table_db = f"{DB_PREFIX}_products_{size}"
    build_products(settings, table_db, size, 4)
    key_secret, ids = account(base, settings, [table_db])
    connection_id = ids[0]
    t0 = time.monotonic()
    store_vectors(settings, vectors[:size], connection_id, table_db)
    stored_s = time.monotonic() - t0
    from altus4.container import Services
    from altus4.metrics import Metrics

    services = Services.build(settings, time.monotonic(), Metrics())
    index = services.search.vectors
    key = (connection_id, "products", MODEL)
    t0 = time.monotonic()
    index.build(key)
    build_s = round(time.monotonic() - t0, 1)
    queries = [query_vector(f"q{size}-{i}", centres) for i in range(200)]
    matrix = vectors[:size]
    exact_ms, ann_ms, recall = [], [], 0
    for q in queries:
        v = np.asarray(q, dtype=np.float32)
        t = time.perf_counter()
        scores = matrix @ v
        top = np.argpartition(-scores, 100)[:100]
        exact = top[np.argsort(-scores[top])]
        exact_ms.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        found = index.nearest(*key, q, 100)
        ann_ms.append((time.perf_counter() - t) * 1000)
        recall += len({str(i + 1) for i in exact[:10]} & set(found[:10]))
    services.close()
    folder = next(Path(settings.vector_index_dir).glob("*/manifest.json")).parent  # only this run's table
    generation = json.loads((folder / "manifest.json").read_text())["generation"]
    file_bytes = sum(f.stat().st_size for f in folder.glob(generation + ".*"))
    workers = node_memory(env, key, queries)
    rss = [w["after"]["rss"] - w["before"]["rss"] for w in workers]
    pss = [w["after"]["pss"] - w["before"]["pss"] for w in workers]
    # searches through the API, one client: natural and semantic, then first searches against warm ones
    client = HttpClient(base, {"Authorization": f"Bearer {key_secret}"})
    words = datagen.queries(random.Random(size), 200)
    natural, semantic = [], []
    for q in words[:100]:
        for mode, into in (("natural", natural), ("semantic", semantic)):
            t = time.perf_counter()
            client.request("POST", "/api/v1/search", {"query": q, "searchMode": mode, "limit": 20})
            into.append((time.perf_counter() - t) * 1000)
    first_key, first_ids = account(base, settings, [table_db])  # a new connection: BM25 statistics cold
    first = HttpClient(base, {"Authorization": f"Bearer {first_key}"})
    never = datagen.queries(random.Random(size + 99), 30)
    first.request("POST", "/api/v1/search", {"query": "zzzzqx", "limit": 20})  # pools, schema
    cold, warm = [], []
    for into in (cold, warm):
        for q in never:
            t = time.perf_counter()
            first.request("POST", "/api/v1/search", {"query": q, "limit": 20})
            into.append((time.perf_counter() - t) * 1000)
    client.close()
    first.close()
    # MySQL's own first-time cost: other never-asked queries, raw, first and again (the pages they read get
    # cached in the buffer pool, which the server's default 128 MB cannot hold for a 1M-row table)
    raw_cold, raw_warm = [], []
    conn = mysql(settings, table_db)
    with conn.cursor() as cur:
        for into in (raw_cold, raw_warm):
            for q in datagen.queries(random.Random(size + 199), 30):
                t = time.perf_counter()
                cur.execute(
                    "SELECT id, MATCH (name, description) AGAINST (%s) AS s, COUNT(*) OVER () FROM products"
                    " WHERE MATCH (name, description) AGAINST (%s) ORDER BY s DESC LIMIT 50",
                    (q, q),
                )
                cur.fetchall()
                into.append((time.perf_counter() - t) * 1000)
    conn.close()
    return {
        "rows": size,
        "vectors_stored_s": round(stored_s, 1),
        "index_build_s": build_s,
        "index_file_mb": round(file_bytes / 2**20, 1),
        "exact_top100_p50_ms": round(statistics.median(exact_ms), 3),
        "ann_top100_p50_ms": round(statistics.median(ann_ms), 3),
        "ann_recall_at_10": round(recall / 2000, 4),
        "exact_matrix_mb_per_worker": round(matrix.nbytes / 2**20, 1),
        "worker_rss_mb": [round(x / 2**20, 1) for x in rss],
        "node_pss_mb_4_workers": round(sum(pss) / 2**20, 1),
        "node_vs_one_copy": round(sum(pss) / file_bytes, 3) if file_bytes else None,
        "natural_p50_p95_ms": p50_p95(natural),
        "semantic_p50_p95_ms": p50_p95(semantic),
        "first_search_p50_p95_ms": p50_p95(cold),
        "warm_search_p50_p95_ms": p50_p95(warm),
        "first_vs_warm_p50": round(statistics.median(cold) / statistics.median(warm), 3),
        "first_vs_warm_p95": round(p50_p95(cold)[1] / p50_p95(warm)[1], 3),
        "raw_mysql_first_p50_p95_ms": p50_p95(raw_cold),
        "raw_mysql_warm_p50_p95_ms": p50_p95(raw_warm),
        "raw_mysql_first_vs_warm_p50": round(statistics.median(raw_cold) / statistics.median(raw_warm), 3),
    }


def remeasure_node(env: dict, key: tuple, index_dir: Path) -> dict:
    """4 workers on an index left on disk, 200 random unit queries each (memory does not depend on them)."""
    rng = np.random.default_rng(5)
    queries = [(v / np.linalg.norm(v)).tolist() for v in rng.standard_normal((200, DIMS)).astype(np.float32)]
    workers = node_memory(env, key, queries)
    folder = next(index_dir.glob("*/manifest.json")).parent
    generation = json.loads((folder / "manifest.json").read_text())["generation"]
    file_bytes = sum(f.stat().st_size for f in folder.glob(generation + ".*"))
    pss = sum(w["after"]["pss"] - w["before"]["pss"] for w in workers)
    return {
        "worker_rss_mb": [round((w["after"]["rss"] - w["before"]["rss"]) / 2**20, 1) for w in workers],
        "node_pss_mb_4_workers": round(pss / 2**20, 1),
        "index_file_mb": round(file_bytes / 2**20, 1),
        "node_vs_one_copy": round(pss / file_bytes, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument(
        "--node-memory",
        metavar="CONNECTION_ID",
        help="only measure 4 workers on the index an earlier run left for this connection's products table",
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    index_dir = Path("/tmp/altus4-bench-vectors")
    env = {
        **server_env(2),
        "SEARCH_CACHE_TTL": "0",
        "OPENAI_API_KEY": "local",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{EMBED_PORT}/v1",
        "OPENAI_EMBEDDING_MODEL": MODEL,
        "VECTOR_INDEX_DIR": str(index_dir),
        "VECTOR_EXACT_MAX_ROWS": "20000",
        "SEARCH_TIMEOUT_MS": "20000",
    }
    full_env = {**os.environ, **env}
    if args.node_memory:
        print(json.dumps(remeasure_node(full_env, (args.node_memory, "products", MODEL), index_dir)))
        return
    settings = Settings.from_env(full_env)
    Migrator(settings).migrate()
    vectors, centres = clustered(max(sizes), 11)
    embedder = embedding_server(centres)
    results = []
    for size in sizes:
        for old in index_dir.glob("*"):  # one table's index at a time: the memory figures are this one's
            for f in old.glob("*"):
                f.unlink()
            old.rmdir()
        server = start_server(env, PORT, RESULTS / "gunicorn.log")
        try:
            results.append(measure(size, settings, full_env, f"http://127.0.0.1:{PORT}", centres, vectors))
        finally:
            stop_server(server)
        print(json.dumps(results[-1]), flush=True)
    embedder.shutdown()
    (RESULTS / "scale.json").write_text(
        json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "results": results}, indent=2) + "\n"
    )
    print(
        "\n| rows | build s | index MB | exact top-100 p50 ms | ANN p50 ms | recall@10 | worker RSS MB"
        " | node (4) PSS MB | vs one copy | natural p50/p95 | semantic p50/p95 | first / warm p50, p95 |\n|"
        + "---|"
        * 12
    )
    for r in results:
        print(
            f"| {r['rows']:,} | {r['index_build_s']} | {r['index_file_mb']} | {r['exact_top100_p50_ms']} |"
            f" {r['ann_top100_p50_ms']} | {r['ann_recall_at_10']} | {max(r['worker_rss_mb'])} |"
            f" {r['node_pss_mb_4_workers']} | {r['node_vs_one_copy']} | {r['natural_p50_p95_ms']} |"
            f" {r['semantic_p50_p95_ms']} | {r['first_vs_warm_p50']}, {r['first_vs_warm_p95']} |"
        )
    big = max(results, key=lambda r: r["rows"])
    for verdict, what in (
        (
            big["ann_recall_at_10"] >= 0.95,
            f"ANN recall@10 at {big['rows']:,} vectors ≥ 0.95: {big['ann_recall_at_10']}",
        ),
        (big["ann_top100_p50_ms"] <= 10, f"vector top-100 p50 ≤ 10 ms: {big['ann_top100_p50_ms']}"),
        (
            big["node_vs_one_copy"] is not None and big["node_vs_one_copy"] <= 1.3,
            f"a node with 4 workers ≤ 1.3x one copy of the index: {big['node_vs_one_copy']}",
        ),
        (big["first_vs_warm_p50"] <= 1.3, f"first search p50 ≤ 1.3x warm: {big['first_vs_warm_p50']}"),
    ):
        print(f"{'PASS' if verdict else 'FAIL'}: {what}")


if __name__ == "__main__":
    main()
