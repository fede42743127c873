"""Relevance benchmark: SciFact through the real Altus 4 API, every mode, against raw MySQL FULLTEXT.

    make bench-relevance            # or: .venv/bin/python bench/relevance.py --split dev

Loads the corpus into a MariaDB table with a FULLTEXT index, connects it as a user would, indexes its
embeddings with `altus4 index` logic, runs every query of the split through POST /api/v1/search in each
mode, and reports nDCG@10, Recall@100 and MRR@10 (plus raw MySQL natural mode through PyMySQL). Semantic
mode uses all-MiniLM-L6-v2 behind the OpenAI-compatible server in bench/embedding_server.py; Altus 4
only speaks the OpenAI protocol. Tune on `dev` (or `train`); `holdout` is for the final check only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pymysql
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from altus4 import create_app  # noqa: E402
from altus4.config import Settings  # noqa: E402
from altus4.db.migrate import Migrator  # noqa: E402
from altus4.jobs.indexer import index_table  # noqa: E402

TARGET_DB = "altus4_bench_scifact"
MODES = ("natural", "boolean", "semantic")
RANKINGS = ("mysql", "bm25")  # MySQL's own order, and BM25 over its candidates (the default)


def load_split(dataset: Path, split: str) -> tuple[dict[str, str], dict[str, set[str]]]:
    queries = {}
    for line in (dataset / "queries.jsonl").read_text().splitlines():
        q = json.loads(line)
        queries[q["_id"]] = q["text"]
    qrels: dict[str, set[str]] = {}
    for line in (dataset / "qrels" / f"{split}.tsv").read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            qrels.setdefault(qid, set()).add(doc)
    return {q: queries[q] for q in qrels}, qrels


def load_corpus(settings: Settings, dataset: Path) -> int:
    conn = pymysql.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_username,
        password=settings.db_password,
        autocommit=True,
        charset="utf8mb4",
    )
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS {TARGET_DB} CHARACTER SET utf8mb4")
        cur.execute(f"USE {TARGET_DB}")
        cur.execute(
            "CREATE TABLE IF NOT EXISTS docs (id VARCHAR(32) PRIMARY KEY, title TEXT NOT NULL,"
            " body MEDIUMTEXT NOT NULL, FULLTEXT KEY ft_docs (title, body)) ENGINE=InnoDB"
            " DEFAULT CHARSET=utf8mb4"
        )
        cur.execute("SELECT COUNT(*) FROM docs")
        have = cur.fetchone()[0]
        rows = [json.loads(line) for line in (dataset / "corpus.jsonl").read_text().splitlines()]
        if have != len(rows):
            cur.execute("TRUNCATE docs")
            for start in range(0, len(rows), 500):
                cur.executemany(
                    "INSERT INTO docs VALUES (%s, %s, %s)",
                    [(d["_id"], d["title"], d["text"]) for d in rows[start : start + 500]],
                )
            cur.execute("ANALYZE TABLE docs")
    conn.close()
    return len(rows)


def ndcg10(ranked: list[str], relevant: set[str]) -> float:
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    return dcg / ideal if ideal else 0.0


def recall100(ranked: list[str], relevant: set[str]) -> float:
    return len(set(ranked[:100]) & relevant) / len(relevant)


def mrr10(ranked: list[str], relevant: set[str]) -> float:
    return next((1 / (i + 1) for i, d in enumerate(ranked[:10]) if d in relevant), 0.0)


def summarise(runs: dict[str, list[str]], qrels: dict[str, set[str]]) -> dict[str, float]:
    return {
        name: round(statistics.mean(fn(runs.get(q, []), qrels[q]) for q in qrels), 4)
        for name, fn in (("nDCG@10", ndcg10), ("Recall@100", recall100), ("MRR@10", mrr10))
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_embedding_server(python: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(ROOT / "bench" / "results" / "embedding-server.log", "wb")  # noqa: SIM115 - lives with the server
    proc = subprocess.Popen(
        [python, str(ROOT / "bench" / "embedding_server.py"), "--port", str(port)], stdout=log, stderr=subprocess.STDOUT
    )
    deadline = time.monotonic() + 180
    while True:
        if proc.poll() is not None:
            raise SystemExit("embedding server exited; see bench/results/embedding-server.log")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("embedding server did not start within 180 s") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=ROOT.parent / "shared" / "datasets" / "scifact")
    parser.add_argument("--split", default="dev", choices=["dev", "train", "test", "holdout"])
    parser.add_argument("--embedding-url", default="", help="an OpenAI-compatible /v1 URL (default: start ours)")
    parser.add_argument("--embedding-python", default=str(ROOT / "bench" / ".venv-embed" / "bin" / "python"))
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "relevance.json")
    parser.add_argument(
        "--sweep", action="store_true", help="after indexing, semantic mode under each fusion setting of SWEEP (dev)"
    )
    args = parser.parse_args()
    args.output.parent.mkdir(parents=True, exist_ok=True)

    server = None
    base_url = args.embedding_url
    if not base_url:
        server, base_url = start_embedding_server(args.embedding_python)
    try:
        env = {
            **os.environ,
            "APP_ENV": "development",
            "ALLOW_OWN_SERVERS": "true",  # its "tenant" databases are on the metadata server
            "DEFAULT_ACCOUNT_TIER": "enterprise",
            "DB_DATABASE": "altus4_bench",
            "REDIS_DB": "12",
            "OPENAI_API_KEY": "local",
            "OPENAI_BASE_URL": base_url,
            "OPENAI_EMBEDDING_MODEL": "all-MiniLM-L6-v2",
            "SEARCH_CACHE_TTL": "0",
            "SEARCH_TIMEOUT_MS": "120000",
            "AI_TIMEOUT_MS": "60000",
            "AI_RATE_LIMIT_PER_MINUTE": "1000000",
            "AI_RATE_LIMIT_ENTERPRISE": "1000000",
            "RATE_LIMIT_ENTERPRISE": "10000000",
            "SEMANTIC_CANDIDATES": str(args.candidates),
            "AUTH_RATE_LIMIT": "1000 per minute",
        }
        settings = Settings.from_env(env)
        Migrator(settings).migrate()
        # the first pass must pay for query embeddings: start from an empty cache (Redis DB 12 is the bench's)
        redis.Redis(host=settings.redis_host, port=settings.redis_port, db=12).flushdb()
        docs = load_corpus(settings, args.dataset)
        queries, qrels = load_split(args.dataset, args.split)
        app = create_app(settings)
        svc = app.extensions["altus4"]
        client = app.test_client()
        email = f"bench-{int(time.time())}@example.com"
        token = client.post(
            "/api/v1/auth/register", json={"email": email, "password": "bench-password", "name": "Bench"}
        ).get_json()["data"]["token"]
        auth = {"Authorization": f"Bearer {token}"}
        conn = client.post(
            "/api/v1/databases",
            headers=auth,
            json={
                "name": "SciFact",
                "host": settings.db_host,
                "port": settings.db_port,
                "database": TARGET_DB,
                "username": settings.db_username,
                "password": settings.db_password,
            },
        ).get_json()["data"]
        key = client.post(
            "/api/v1/keys", headers=auth, json={"name": "bench", "environment": "test", "rateLimitTier": "enterprise"}
        ).get_json()["data"]
        headers = {"Authorization": f"Bearer {key['secretKey']}"}

        started = time.monotonic()
        with app.app_context():
            row = svc.connections.get(_user_id(client, auth), conn["id"])
            report = index_table(svc.connections, svc.ai, row, "docs", batch=64, vector_index=svc.search.vectors)
        index_seconds = round(time.monotonic() - started, 1)
        print(f"indexed {report.rows} rows ({report.embedded} embedded, {report.skipped} already) in {index_seconds}s")

        if args.sweep:
            sweep(env, queries, qrels, headers, args.output.with_name(f"fusion-sweep-{args.split}.json"))
            svc.close()
            return
        results: dict[str, dict] = {}
        for mode, ranking in ((m, r) for m in MODES for r in RANKINGS):
            runs, latencies, used_ai = {}, [], 0
            for qid, text in queries.items():
                r = client.post(
                    "/api/v1/search",
                    headers=headers,
                    json={"query": text, "searchMode": mode, "tables": ["docs"], "limit": 100, "ranking": ranking},
                )
                body = r.get_json()
                if r.status_code != 200:
                    runs[qid] = []
                    continue
                runs[qid] = [x["rowId"] for x in body["data"]["results"]]
                latencies.append(body["data"]["executionTime"])
                used_ai += bool(body["data"].get("aiUsed"))
            results[f"{mode} ({ranking})"] = {
                **summarise(runs, qrels),
                "p50_ms": _pct(latencies, 50),
                "p95_ms": _pct(latencies, 95),
                "answered": len(latencies),
                "aiUsed": used_ai,
            }
            print(mode, ranking, results[f"{mode} ({ranking})"])

        raw, raw_latency = {}, []
        mysql = pymysql.connect(
            host=settings.db_host,
            port=settings.db_port,
            user=settings.db_username,
            password=settings.db_password,
            database=TARGET_DB,
            charset="utf8mb4",
        )
        with mysql.cursor() as cur:
            for qid, text in queries.items():
                t0 = time.perf_counter()
                cur.execute(
                    "SELECT id FROM docs WHERE MATCH (title, body) AGAINST (%s IN NATURAL LANGUAGE MODE) LIMIT 100",
                    (text,),
                )
                raw[qid] = [r[0] for r in cur.fetchall()]
                raw_latency.append((time.perf_counter() - t0) * 1000)
        mysql.close()
        results["raw MySQL natural"] = {
            **summarise(raw, qrels),
            "p50_ms": _pct(raw_latency, 50),
            "p95_ms": _pct(raw_latency, 95),
            "answered": len(raw),
            "aiUsed": 0,
        }

        results.update(statistics_cost(env, queries, qrels, headers, settings))

        repeat = []
        for text in queries.values():  # the same queries again: query embeddings are cached now
            r = client.post(
                "/api/v1/search",
                headers=headers,
                json={"query": text, "searchMode": "semantic", "tables": ["docs"], "limit": 10},
            )
            repeat.append(r.get_json()["data"]["executionTime"])
        results["semantic (repeat, cached embeddings)"] = {"p50_ms": _pct(repeat, 50), "p95_ms": _pct(repeat, 95)}

        natural_ndcg = results["natural (mysql)"]["nDCG@10"]
        gain = results["semantic (bm25)"]["nDCG@10"] / natural_ndcg - 1 if natural_ndcg else 0.0
        out = {
            "dataset": "SciFact",
            "split": args.split,
            "queries": len(queries),
            "documents": docs,
            "embedding_model": "all-MiniLM-L6-v2",
            "candidates_per_table": args.candidates,
            "index_seconds": index_seconds,
            "semantic_vs_natural_ndcg10": round(gain, 4),
            "machine": f"{os.cpu_count()} CPUs",
            "results": results,
        }
        args.output.write_text(json.dumps(out, indent=2) + "\n")
        print(markdown(out))
        svc.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)


def natural_run(env: dict, queries: dict[str, str], headers: dict) -> tuple[dict[str, list[str]], list[float]]:
    """Every query in natural mode (BM25) through a fresh app built from `env`: its rankings and times."""
    app = create_app(Settings.from_env(env))
    client = app.test_client()
    runs, latencies = {}, []
    for qid, text in queries.items():
        r = client.post("/api/v1/search", headers=headers, json={"query": text, "tables": ["docs"], "limit": 100})
        body = r.get_json()
        runs[qid] = [x["rowId"] for x in body["data"]["results"]] if r.status_code == 200 else []
        latencies.append(body["data"]["executionTime"] if r.status_code == 200 else 0.0)
    app.extensions["altus4"].close()
    return runs, latencies


def statistics_cost(env: dict, queries: dict[str, str], qrels: dict[str, set[str]], headers: dict, settings) -> dict:
    """What working document frequencies out costs: natural mode from empty BM25 statistics (each new term's
    frequency taken from MySQL's scores while its count runs in the background), against the same queries once
    every count is in (warm)."""
    store = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=12)
    for key in store.scan_iter(match="*bm25*"):
        store.delete(key)
    out = {}
    for label in ("cold", "warm"):
        runs, latencies = natural_run(env, queries, headers)
        out[f"natural (bm25), {label} statistics"] = {
            **summarise(runs, qrels),
            "p50_ms": _pct(latencies, 50),
            "p95_ms": _pct(latencies, 95),
        }
        time.sleep(5)  # the last background counts land
    for name, row in out.items():
        print(name, row)
    return out


# fusion settings tried on the dev split (semantic mode, BM25 ranking): the lexical and vector candidate pools,
# how many of the lexical ones BM25 re-scores, and how the two orders are fused
SWEEP = [
    # round 1 (bench/results/fusion-sweep-dev-round1.json, before semantic mode re-scored every candidate with
    # BM25) ranged RRF k 10-60, lexical weight 1-3, BM25 window and candidates 100-300, convex alpha 0.3-0.7;
    # convex won by 0.01-0.02. Round 2, every candidate re-scored:
    {"SEMANTIC_FUSION": "rrf"},
    {"SEMANTIC_FUSION": "rrf", "SEMANTIC_CANDIDATES": "200"},
    *({"SEMANTIC_FUSION": "convex", "SEMANTIC_ALPHA": str(a)} for a in (0.3, 0.35, 0.4, 0.45, 0.5, 0.6)),
    *({"SEMANTIC_FUSION": "convex", "SEMANTIC_ALPHA": str(a), "SEMANTIC_CANDIDATES": "200"} for a in (0.35, 0.4, 0.45)),
    {"SEMANTIC_FUSION": "convex", "SEMANTIC_ALPHA": "0.4", "SEMANTIC_CANDIDATES": "50"},
]


def sweep(env: dict, queries: dict[str, str], qrels: dict[str, set[str]], headers: dict, output: Path) -> None:
    """nDCG@10 of semantic mode (BM25 ranking) under each setting of SWEEP, on the same index and key."""
    rows = []
    for overrides in SWEEP:
        app = create_app(Settings.from_env({**env, **overrides}))
        client = app.test_client()
        runs = {}
        for qid, text in queries.items():
            r = client.post(
                "/api/v1/search",
                headers=headers,
                json={"query": text, "searchMode": "semantic", "tables": ["docs"], "limit": 100},
            )
            runs[qid] = [x["rowId"] for x in r.get_json()["data"]["results"]] if r.status_code == 200 else []
        app.extensions["altus4"].close()
        rows.append({"settings": overrides, **summarise(runs, qrels)})
        print(json.dumps(rows[-1]), flush=True)
    output.write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| settings | nDCG@10 | Recall@100 | MRR@10 |\n|---|---|---|---|")
    for row in sorted(rows, key=lambda r: -r["nDCG@10"]):
        print(f"| {row['settings'] or 'defaults'} | {row['nDCG@10']} | {row['Recall@100']} | {row['MRR@10']} |")


def _user_id(client, auth) -> str:
    return client.get("/api/v1/auth/profile", headers=auth).get_json()["data"]["id"]


def _pct(values: list[float], pct: int) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1)], 1)


def markdown(out: dict) -> str:
    lines = [
        f"SciFact {out['split']} ({out['queries']} queries, {out['documents']} documents), "
        f"{out['embedding_model']}, {out['candidates_per_table']} candidates:",
        "",
        "| mode | nDCG@10 | Recall@100 | MRR@10 | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    for mode, r in out["results"].items():
        lines.append(
            f"| {mode} | {r.get('nDCG@10', '')} | {r.get('Recall@100', '')} | {r.get('MRR@10', '')} |"
            f" {r['p50_ms']} | {r['p95_ms']} |"
        )
    lines.append(f"\nsemantic (bm25) vs natural (mysql) nDCG@10: {out['semantic_vs_natural_ndcg10']:+.1%}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
