"""Performance benchmark: Altus 4 beside raw MySQL FULLTEXT, measured in one run on one machine.

    make bench                         # the short version (a few minutes)
    .venv/bin/python bench/run.py --products 100000 --duration 30 --sizes 10000,100000,1000000

Generates its data (seeded), starts gunicorn with the real app, and measures at the same concurrency:
raw MySQL natural-mode FULLTEXT through PyMySQL (the limit), Altus 4 search uncached, cached, and
`GET /health` (the framework floor); then latency as the table grows and as one search spans 1, 4 and 16
databases. Writes bench/results/latest.json and latest.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import datagen  # noqa: E402

from altus4.config import Settings  # noqa: E402
from altus4.db.migrate import Migrator  # noqa: E402
from altus4.loadtest import HttpClient, run_workers, search_step  # noqa: E402

DB_PREFIX = "altus4_bench_v2"  # bump when datagen changes: tables are reused by name and size
RESULTS = ROOT / "bench" / "results"
PRODUCTS_DDL = ("CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, description TEXT NOT NULL,"
                " category VARCHAR(64) NOT NULL, price DECIMAL(10,2) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")


def mysql(settings: Settings, database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(host=settings.db_host, port=settings.db_port, user=settings.db_username,
                           password=settings.db_password, database=database, autocommit=True, charset="utf8mb4")


def build_products(settings: Settings, database: str, count: int, seed: int) -> None:
    """A products table of `count` rows with FULLTEXT (name, description); reused if already that size."""
    conn = mysql(settings)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4")
        cur.execute(f"USE `{database}`")
        cur.execute(PRODUCTS_DDL.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        cur.execute("SELECT COUNT(*) FROM products")
        if cur.fetchone()[0] == count:
            conn.close()
            return
        cur.execute("DROP TABLE products")  # recreated without its index: loading first, indexing once, is faster
        cur.execute(PRODUCTS_DDL)
        rng = random.Random(seed)
        for start in range(0, count, 5000):
            cur.executemany("INSERT INTO products VALUES (%s, %s, %s, %s, %s)",
                            datagen.products(rng, min(5000, count - start), start + 1))
        cur.execute("ALTER TABLE products ADD FULLTEXT KEY ft_products (name, description)")
        cur.execute("ANALYZE TABLE products")
        cur.fetchall()
    conn.close()


def start_server(env: dict, port: int, log: Path) -> subprocess.Popen:
    full = {**os.environ, **env, "BIND": f"127.0.0.1:{port}"}
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = open(log, "ab")  # noqa: SIM115 - handed to the server process
    proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py",
                             "app:app"], cwd=ROOT, env=full, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start; see {log}") from None
            time.sleep(0.3)


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def api(base: str, method: str, path: str, body=None, token: str | None = None) -> dict:
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def account(base: str, settings: Settings, databases: list[str]) -> tuple[str, list[str]]:
    email = f"bench-{time.time_ns()}@example.com"
    token = api(base, "POST", "/api/v1/auth/register", {"email": email, "password": "bench-password",
                                                         "name": "Bench"})["data"]["token"]
    ids = [api(base, "POST", "/api/v1/databases", {"name": d, "host": settings.db_host, "port": settings.db_port,
                                                    "database": d, "username": settings.db_username,
                                                    "password": settings.db_password}, token)["data"]["id"]
           for d in databases]
    key = api(base, "POST", "/api/v1/keys", {"name": "bench", "environment": "test", "rateLimitTier": "enterprise"},
              token)["data"]["secretKey"]
    return key, ids


def raw_mysql(settings: Settings, database: str, queries: list[str], users: int, duration: float, limit: int):
    """The same natural-mode FULLTEXT statement Altus 4 sends for one table, straight through PyMySQL."""
    local = threading.local()
    sql = ("SELECT `id`, `name`, `description`, `category`, `price`, (MATCH (`name`, `description`) AGAINST"
           " (%s IN NATURAL LANGUAGE MODE)) AS score FROM `products` WHERE MATCH (`name`, `description`) AGAINST"
           " (%s IN NATURAL LANGUAGE MODE) ORDER BY score DESC, `id` LIMIT %s")
    opened = []

    def step(user: int, n: int) -> str:
        if getattr(local, "conn", None) is None:
            local.conn = mysql(settings, database)
            opened.append(local.conn)
        query = queries[(user * 7919 + n) % len(queries)]
        with local.conn.cursor() as cur:
            cur.execute(sql, (query, query, limit))
            cur.fetchall()
        return "200"

    summary = run_workers(users, duration, step)
    for conn in opened:
        conn.close()
    return summary


def one_client_latency(client: HttpClient, queries: list[str], body: dict, count: int) -> float:
    """p50 latency (ms) of `count` sequential searches, after 10 unmeasured ones (pools and caches warm)."""
    for i in range(10):
        client.request("POST", "/api/v1/search", {"query": queries[-1 - i], **body})
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        client.request("POST", "/api/v1/search", {"query": queries[i % len(queries)], **body})
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return round(times[len(times) // 2], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", default="10000,100000", help="table sizes for the scaling curve")
    parser.add_argument("--fanout", default="1,4,16", help="database counts for the fan-out curve")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--replot", action="store_true", help="redraw latest.png from latest.json and stop")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.replot:
        results = json.loads((RESULTS / "latest.json").read_text())
        plot(results, RESULTS / "latest.png")
        print(markdown(results))
        return

    env = {"APP_ENV": "development", "DB_DATABASE": "altus4_bench", "REDIS_DB": "11",
           "WEB_CONCURRENCY": str(args.workers),
           "RATE_LIMIT_ENTERPRISE": "100000000", "AUTH_RATE_LIMIT": "10000 per minute", "GUNICORN_ACCESS_LOG": "",
           "LOG_LEVEL": "warning"}
    settings = Settings.from_env({**os.environ, **env})
    Migrator(settings).migrate()
    queries = datagen.queries(random.Random(args.seed), args.queries)
    (RESULTS / "queries.txt").write_text("\n".join(queries) + "\n")
    main_db = f"{DB_PREFIX}_products_{args.products}"
    t0 = time.monotonic()
    build_products(settings, main_db, args.products, args.seed)
    print(f"data: {args.products} products in {time.monotonic() - t0:.0f}s")

    port = 3990
    log = RESULTS / "gunicorn.log"
    results: dict = {"machine": f"{os.cpu_count()} CPUs", "users": args.users, "duration_s": args.duration,
                     "products": args.products, "queries": len(queries),
                     "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    raw = raw_mysql(settings, main_db, queries, args.users, args.duration, 20)
    results["raw_mysql"] = raw.as_dict()
    print("raw MySQL", raw.as_dict())

    for label, cache_ttl in (("altus4_uncached", "0"), ("altus4_cached", "300")):
        server = start_server({**env, "SEARCH_CACHE_TTL": cache_ttl}, port, log)
        try:
            key, _ = account(f"http://127.0.0.1:{port}", settings, [main_db])
            client = HttpClient(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"})
            if cache_ttl != "0":
                for q in queries:  # warm the cache: every query once
                    client.request("POST", "/api/v1/search", {"query": q, "limit": 20})
            summary = run_workers(args.users, args.duration, search_step(client, queries, ["natural"], 20))
            results[label] = summary.as_dict()
            print(label, summary.as_dict())
            if cache_ttl == "0":
                health = HttpClient(f"http://127.0.0.1:{port}", {})
                results["health"] = run_workers(args.users, args.duration,
                                                lambda u, n, h=health: h.request("GET", "/health")).as_dict()
                print("health", results["health"])
                health.close()
            client.close()
        finally:
            stop_server(server)

    results["ratios"] = {
        "uncached_vs_raw_mysql": round(results["altus4_uncached"]["throughput_rps"] / raw.throughput_rps, 3),
        "cached_vs_raw_mysql": round(results["altus4_cached"]["throughput_rps"] / raw.throughput_rps, 3),
    }

    # scaling curves at one client, cache off
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fanout = [int(n) for n in args.fanout.split(",") if n]
    for size in sizes:
        build_products(settings, f"{DB_PREFIX}_products_{size}", size, args.seed)
    fan_dbs = [f"{DB_PREFIX}_shard_{i}" for i in range(max(fanout))]
    for i, database in enumerate(fan_dbs):
        build_products(settings, database, 5000, args.seed + i)
    server = start_server({**env, "SEARCH_CACHE_TTL": "0"}, port, log)
    try:
        base = f"http://127.0.0.1:{port}"
        key, ids = account(base, settings, [f"{DB_PREFIX}_products_{s}" for s in sizes] + fan_dbs)
        client = HttpClient(base, {"Authorization": f"Bearer {key}"})
        results["by_table_size"] = {str(size): one_client_latency(client, queries, {"databases": [ids[i]], "limit": 20},
                                                                  60) for i, size in enumerate(sizes)}
        shard_ids = ids[len(sizes):]
        results["by_database_count"] = {str(n): one_client_latency(client, queries,
                                                                   {"databases": shard_ids[:n], "limit": 20}, 60)
                                        for n in fanout}
        client.close()
    finally:
        stop_server(server)
    print("p50 ms by table size", results["by_table_size"], "by database count", results["by_database_count"])

    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "latest.png")
    print(markdown(results))


def markdown(r: dict) -> str:
    rows = [("raw MySQL FULLTEXT (PyMySQL)", r["raw_mysql"]), ("Altus 4 search, uncached", r["altus4_uncached"]),
            ("Altus 4 search, cached", r["altus4_cached"]), ("GET /health", r["health"])]
    lines = [f"{r['products']:,} products, {r['users']} concurrent clients, {r['duration_s']:.0f} s each,"
             f" {r['machine']}:",
             "", "| what | req/s | p50 ms | p95 ms | p99 ms | failures |", "|---|---|---|---|---|---|"]
    for name, s in rows:
        lines.append(f"| {name} | {s['throughput_rps']} | {s['p50_ms']} | {s['p95_ms']} | {s['p99_ms']} |"
                     f" {sum(s['failures'].values())} |")
    lines.append(f"\nuncached / raw MySQL throughput: {r['ratios']['uncached_vs_raw_mysql']:.2f}; "
                 f"cached / raw MySQL: {r['ratios']['cached_vs_raw_mysql']:.2f}")
    lines.append(f"p50 ms at one client by table size: {r['by_table_size']}; by databases searched: "
                 f"{r['by_database_count']}")
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (make bench installs it)")
        return
    names = ["raw MySQL", "uncached", "cached", "/health"]
    keys = ["raw_mysql", "altus4_uncached", "altus4_cached", "health"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    axes[0].bar(names, [r[k]["throughput_rps"] for k in keys], color=["#888", "#1f77b4", "#2ca02c", "#ff7f0e"])
    axes[0].set_title(f"throughput, {r['users']} clients (req/s)")
    axes[0].set_yscale("log")
    width = 0.25
    for i, pct in enumerate(("p50_ms", "p95_ms", "p99_ms")):
        axes[1].bar([x + i * width for x in range(4)], [r[k][pct] for k in keys], width, label=pct)
    axes[1].set_xticks([x + width for x in range(4)], names)
    axes[1].set_title("latency (ms)")
    axes[1].legend()
    axes[2].plot([int(s) for s in r["by_table_size"]], list(r["by_table_size"].values()), marker="o",
                 label="by table size (rows)")
    axes[2].set_xscale("log")
    twin = axes[2].twiny()
    twin.plot([int(n) for n in r["by_database_count"]], list(r["by_database_count"].values()), marker="s",
              color="#d62728", label="by databases searched")
    axes[2].set_title("p50 ms, 1 client: by rows (blue)\nand by databases searched (red, top axis)")
    fig.suptitle(f"Altus 4 benchmark — {r['products']:,} products, {r['machine']}, {r['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


if __name__ == "__main__":
    main()
