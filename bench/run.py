"""Performance benchmark: Altus 4 beside raw MySQL FULLTEXT, measured in one run on one machine.

    make bench                         # the short version (a few minutes)
    .venv/bin/python bench/run.py --products 100000 --duration 10 --rounds 3 --sizes 10000,100000,1000000

Generates its data (seeded), starts two gunicorn servers with the real app (cache off, cache on), and
measures at the same concurrency: raw MySQL natural-mode FULLTEXT through PyMySQL (the limit), the same
through Altus 4's own statement, Altus 4 search uncached and cached, and `GET /health` (the framework
floor). The measurements are interleaved and repeated (`--rounds`): this machine's throughput drifts by
a quarter between runs, so each figure is the median round, ratios are the median of per-round ratios,
and every round is kept. Then latency at one client as the table grows and as one search spans 1, 4 and
16 databases. Writes bench/results/latest.json and latest.png.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import pymysql

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import datagen  # noqa: E402
from drivers import (  # noqa: E402
    PRODUCTS,
    Searches,
    altus4_statement,
    delay_for_rate,
    first_pass_latency,
    http_load,
    one_client_latency,
    paired_latency,
    raw_mysql,
    simple_statement,
    wrk_available,
)
from report import markdown, plot  # noqa: E402

from altus4.config import Settings  # noqa: E402
from altus4.db.migrate import Migrator  # noqa: E402
from altus4.loadtest import HttpClient, Summary  # noqa: E402
from altus4.search import plan as planner  # noqa: E402

DB_PREFIX = "altus4_bench_v2"  # bump when datagen changes: tables are reused by name and size
RESULTS = ROOT / "bench" / "results"
ANCHOR_DB = "altus4_bench_anchor_shop"
ANCHOR_PRODUCTS = planner.TableQuery(
    table="products",
    columns=("id", "name", "description", "category", "price", "created_at"),
    key=("id",),
    key_is_unique=True,
    match_groups=(("name", "description"),),
)


@dataclass(frozen=True)
class Profile:
    """A data profile the throughput variants run on: a database, its products table, the search load."""

    name: str
    database: str
    table: planner.TableQuery
    searches: Searches


def datasets_dir() -> Path | None:
    """The shared datasets (read-only, third-party): `ALTUS4_DATASETS`, or `../shared/datasets` beside the
    checkout, or /work/shared/datasets."""
    for candidate in (
        os.environ.get("ALTUS4_DATASETS", ""),
        ROOT.parent / "shared" / "datasets",
        "/work/shared/datasets",
    ):
        if candidate and (Path(candidate) / "anchor-shop" / "make_dataset.py").exists():
            return Path(candidate)
    return None


def build_anchor_shop(settings: Settings, dataset: Path) -> None:
    """anchor-shop's 100k products (and 20k articles) loaded by its own seeded script; reused when loaded."""
    try:
        conn = mysql(settings, ANCHOR_DB)
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT COUNT(*) FROM products), (SELECT COUNT(*) FROM articles)")
            loaded = cur.fetchone() == (100_000, 20_000)
        conn.close()
    except pymysql.MySQLError:
        loaded = False
    if not loaded:
        s = settings
        subprocess.run(
            [sys.executable, str(dataset / "make_dataset.py"), "--database", ANCHOR_DB, "--host", s.db_host]
            + ["--port", str(s.db_port), "--user", s.db_username, "--password", s.db_password],
            check=True,
        )


PRODUCTS_DDL = (
    "CREATE TABLE products (id INT PRIMARY KEY, name VARCHAR(255) NOT NULL, description TEXT NOT NULL,"
    " category VARCHAR(64) NOT NULL, price DECIMAL(10,2) NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"
)


def mysql(settings: Settings, database: str | None = None) -> pymysql.Connection:
    return pymysql.connect(
        host=settings.db_host,
        port=settings.db_port,
        user=settings.db_username,
        password=settings.db_password,
        database=database,
        autocommit=True,
        charset="utf8mb4",
    )


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
            cur.executemany(
                "INSERT INTO products VALUES (%s, %s, %s, %s, %s)",
                datagen.products(rng, min(5000, count - start), start + 1),
            )
        cur.execute("ALTER TABLE products ADD FULLTEXT KEY ft_products (name, description)")
        cur.execute("ANALYZE TABLE products")
        cur.fetchall()
    conn.close()


def server_env(workers: int) -> dict[str, str]:
    """The benchmarked servers' settings: their own database and Redis db, limits out of the way, no access log."""
    return {
        "APP_ENV": "development",
        "ALLOW_OWN_SERVERS": "true",  # its "tenant" databases are on the metadata server
        "DEFAULT_ACCOUNT_TIER": "enterprise",
        "DB_DATABASE": "altus4_bench",
        "REDIS_DB": "11",
        "WEB_CONCURRENCY": str(workers),
        "RATE_LIMIT_ENTERPRISE": "100000000",
        "AUTH_RATE_LIMIT": "10000 per minute",
        "GUNICORN_ACCESS_LOG": "",
        "LOG_LEVEL": "warning",
    }


def start_server(env: dict, port: int, log: Path, root: Path = ROOT) -> subprocess.Popen:
    """gunicorn with the app of the checkout at `root` (another one: `bench/ab.py`)."""
    full = {**os.environ, **env, "BIND": f"127.0.0.1:{port}"}
    full.pop("PROMETHEUS_MULTIPROC_DIR", None)
    out = open(log, "ab")  # noqa: SIM115 - handed to the server process
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "config/gunicorn.conf.py", "app:app"],
        cwd=root,
        env=full,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not start; see {log}") from None
            time.sleep(0.3)


def workers_cpu_seconds(proc: subprocess.Popen) -> float:
    """User + system CPU time the gunicorn master's worker processes have used so far (from /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for task in Path(f"/proc/{proc.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rpartition(")")[2].split()
            except FileNotFoundError:  # exited meanwhile
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def with_cpu(proc: subprocess.Popen, measure) -> Summary:
    """`measure()`'s summary with the server's CPU per request: unlike throughput, it does not drift with
    how fast this machine happens to be during the run."""
    before = workers_cpu_seconds(proc)
    summary = measure()
    used = workers_cpu_seconds(proc) - before
    summary.cpu_ms_per_request = round(used * 1000 / summary.requests, 3) if summary.requests else None
    return summary


def stop_server(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def api(base: str, method: str, path: str, body=None, token: str | None = None) -> dict:
    request = urllib.request.Request(
        base + path,
        method=method,
        data=json.dumps(body).encode() if body else None,
        headers={"Content-Type": "application/json"},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def account(base: str, settings: Settings, databases: list[str]) -> tuple[str, list[str]]:
    email = f"bench-{time.time_ns()}@example.com"
    token = api(base, "POST", "/api/v1/auth/register", {"email": email, "password": "bench-password", "name": "Bench"})[
        "data"
    ]["token"]
    ids = [
        api(
            base,
            "POST",
            "/api/v1/databases",
            {
                "name": d,
                "host": settings.db_host,
                "port": settings.db_port,
                "database": d,
                "username": settings.db_username,
                "password": settings.db_password,
            },
            token,
        )["data"]["id"]
        for d in databases
    ]
    key = api(
        base, "POST", "/api/v1/keys", {"name": "bench", "environment": "test", "rateLimitTier": "enterprise"}, token
    )["data"]["secretKey"]
    return key, ids


def median_round(rounds: list[Summary]) -> dict:
    """The round with the median throughput, with every round's throughput beside it."""
    ordered = sorted(rounds, key=lambda s: s.throughput_rps)
    return {**ordered[len(ordered) // 2].as_dict(), "rounds_rps": [s.throughput_rps for s in rounds]}


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of every measurement")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--sizes", default="10000,100000", help="table sizes for the scaling curve")
    parser.add_argument("--fanout", default="1,4,16", help="database counts for the fan-out curve")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument(
        "--target-rate",
        type=float,
        default=825.0,
        help="also measure cached search at this offered load (req/s; wrk only): 3x the original's 275",
    )
    parser.add_argument(
        "--client",
        choices=["auto", "wrk", "python"],
        default="auto",
        help="HTTP load generator (auto: wrk when installed)",
    )
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument(
        "--curves-only", action="store_true", help="only the one-client curves (printed; latest.json is kept)"
    )
    parser.add_argument(
        "--no-curves", dest="curves", action="store_false", help="throughput only, no one-client curves"
    )
    parser.add_argument(
        "--no-anchor-shop", dest="anchor_shop", action="store_false", help="only the bench's own data profile"
    )
    parser.add_argument(
        "--anchor-pages", type=int, default=10, help="anchor-shop searches ask for one of its first N pages"
    )
    parser.add_argument("--replot", action="store_true", help="redraw latest.png from latest.json and stop")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.replot:
        results = json.loads((RESULTS / "latest.json").read_text())
        plot(results, RESULTS / "latest.png")
        print(markdown(results))
        return
    client = ("wrk" if wrk_available() else "python") if args.client == "auto" else args.client

    env = server_env(args.workers)
    settings = Settings.from_env({**os.environ, **env})
    Migrator(settings).migrate()
    queries = datagen.queries(random.Random(args.seed), args.queries)
    queries_file = RESULTS / "queries.txt"
    queries_file.write_text("\n".join(queries) + "\n")
    main_db = f"{DB_PREFIX}_products_{args.products}"
    sizes = [int(s) for s in args.sizes.split(",") if s]
    fanout = [int(n) for n in args.fanout.split(",") if n]
    fan_dbs = [f"{DB_PREFIX}_shard_{i}" for i in range(max(fanout))]
    t0 = time.monotonic()
    build_products(settings, main_db, args.products, args.seed)
    for size in sizes:
        build_products(settings, f"{DB_PREFIX}_products_{size}", size, args.seed)
    for i, database in enumerate(fan_dbs):
        build_products(settings, database, 5000, args.seed + i)
    profiles = [Profile("own", main_db, PRODUCTS, Searches(queries_file))]
    dataset = datasets_dir() if args.anchor_shop else None
    if dataset is not None:
        build_anchor_shop(settings, dataset / "anchor-shop")
        anchor = Searches(dataset / "anchor-shop" / "queries.txt", pages=args.anchor_pages, tables=("products",))
        profiles.append(Profile("anchor-shop", ANCHOR_DB, ANCHOR_PRODUCTS, anchor))
    elif args.anchor_shop:
        print("the anchor-shop dataset is not found (set ALTUS4_DATASETS): its profile is skipped")
    print(f"data ready in {time.monotonic() - t0:.0f}s")

    log = RESULTS / "gunicorn.log"
    uncached = start_server({**env, "SEARCH_CACHE_TTL": "0"}, 3990, log)
    cached = start_server({**env, "SEARCH_CACHE_TTL": "3600"}, 3991, log)
    servers = {"uncached": uncached, "cached": cached}
    bases = {"uncached": "http://127.0.0.1:3990", "cached": "http://127.0.0.1:3991"}
    try:
        measurements: dict[str, dict] = {}
        for profile in profiles:
            keys = {name: account(base, settings, [profile.database])[0] for name, base in bases.items()}
            warm_cache(bases["cached"], keys["cached"], profile.searches)
            warm_statistics(bases["uncached"], keys["uncached"], profile.searches)
            http_load(bases["uncached"], args.users, 3, client, keys["uncached"], profile.searches)  # pools warm
            measurements[profile.name] = variants(profile, settings, args, client, servers, bases, keys)
        rounds: dict[str, dict[str, list[Summary]]] = {
            p: {name: [] for name in variants_of} for p, variants_of in measurements.items()
        }
        for n in range(0 if args.curves_only else args.rounds):
            for p, variants_of in measurements.items():
                for name, measure in variants_of.items():
                    rounds[p][name].append(measure())
                    print(f"round {n + 1}/{args.rounds} {p} {name}: {rounds[p][name][-1].as_dict()}", flush=True)

        curves = one_client_curves(bases["uncached"], settings, queries, sizes, fanout) if args.curves else {}
    finally:
        stop_server(uncached)
        stop_server(cached)

    if args.curves_only:
        print(json.dumps(curves))
        return

    results: dict = {
        "machine": f"{os.cpu_count()} CPUs",
        "users": args.users,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "client": client,
        "target_rate": args.target_rate,
        "products": args.products,
        "queries": len(queries),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "profiles": {
            profile.name: {
                "database": profile.database,
                "queries": len(profile.searches.queries()),
                "pages": profile.searches.pages,
                **{name: median_round(summaries) for name, summaries in rounds[profile.name].items()},
                "ratios": ratios(rounds[profile.name]),
            }
            for profile in profiles
        },
        **curves,
    }
    by_count = curves.get("by_database_count", {})
    if {"1", "4"} <= by_count.keys():
        results["profiles"]["own"]["ratios"]["fanout_4_vs_1"] = round(by_count["4"] / by_count["1"], 3)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, RESULTS / "latest.png")
    print(markdown(results))


def one_client_curves(base: str, settings: Settings, queries: list[str], sizes: list[int], fanout: list[int]) -> dict:
    """p50 latency at one client as the table grows (BM25 statistics cold, then warm beside the statement
    alone) and as one search spans more databases."""
    fan_dbs = [f"{DB_PREFIX}_shard_{i}" for i in range(max(fanout))]
    curve_key, ids = account(base, settings, [f"{DB_PREFIX}_products_{s}" for s in sizes] + fan_dbs)
    one = HttpClient(base, {"Authorization": f"Bearer {curve_key}"})
    cold_by_size, by_size, raw_by_size = {}, {}, {}
    for i, size in enumerate(sizes):
        body = {"databases": [ids[i]], "limit": 20}
        cold_by_size[str(size)] = first_pass_latency(one, queries, body, 60)
        conn = mysql(settings, f"{DB_PREFIX}_products_{size}")
        by_size[str(size)], raw_by_size[str(size)] = paired_latency(one, conn, queries, body, 60)
        conn.close()
    shard_ids = ids[len(sizes) :]
    by_count = {str(n): one_client_latency(one, queries, {"databases": shard_ids[:n], "limit": 20}, 60) for n in fanout}
    one.close()
    return {
        "by_table_size": by_size,
        "cold_by_table_size": cold_by_size,
        "raw_by_table_size": raw_by_size,
        "by_database_count": by_count,
    }


def warm_cache(base: str, key: str, searches: Searches) -> None:
    """Every query on every page asked once, so the cached server answers all of them from the cache."""
    bodies = [
        {"query": q, "searchMode": "natural", "limit": searches.limit, "offset": searches.limit * page}
        | ({"tables": list(searches.tables)} if searches.tables else {})
        for q in searches.queries()
        for page in range(searches.pages)
    ]

    def send(chunk: list[dict]) -> None:
        client = HttpClient(base, {"Authorization": f"Bearer {key}"})
        for body in chunk:
            client.request("POST", "/api/v1/search", body)
        client.close()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(send, [bodies[i::4] for i in range(4)]))


def warm_statistics(base: str, key: str, searches: Searches) -> None:
    """Every query asked once, so the uncached server has the BM25 statistics of all their terms: the rounds
    then measure its steady state (a term's count costs MySQL a query, then is kept for BM25_STATS_TTL;
    without this, the first round counted the terms the 3-second warm-up had not met). The cold cost is
    measured apart, by the one-client curves (`first_pass_latency`)."""
    warm_cache(base, key, replace(searches, pages=1))


def variants(profile: Profile, settings: Settings, args, client: str, servers: dict, bases: dict, keys: dict) -> dict:
    """The measurements of one profile, by name: each a callable returning a Summary (CPU per request
    included for the ones served by Altus 4)."""
    searches = profile.searches

    def connect() -> pymysql.Connection:
        return mysql(settings, profile.database)

    def search_load(server: str, **options) -> Summary:
        return with_cpu(
            servers[server],
            lambda: http_load(bases[server], args.users, args.duration, client, keys[server], searches, **options),
        )

    out = {
        "raw_mysql": lambda: raw_mysql(connect, searches, args.users, args.duration, simple_statement(profile.table)),
        "raw_mysql_altus4_sql": lambda: raw_mysql(
            connect, searches, args.users, args.duration, altus4_statement(profile.table)
        ),
        "altus4_uncached": lambda: search_load("uncached"),
        # the same requests in MySQL's own order: what BM25 (the default, above) costs
        "altus4_uncached_mysql_order": lambda: search_load("uncached", ranking="mysql"),
        "altus4_cached": lambda: search_load("cached"),
        "health": lambda: with_cpu(
            servers["uncached"], lambda: http_load(bases["uncached"], args.users, args.duration, client)
        ),
    }
    if client == "wrk" and args.target_rate and profile.name == "own":

        def cached_at(pause: float, seconds: float) -> Summary:
            return http_load(bases["cached"], args.users, seconds, client, keys["cached"], searches, delay_ms=pause)

        pauses = [delay_for_rate(cached_at, args.users, args.target_rate)]

        def at_target_rate() -> Summary:  # recalibrated each round from the last pause: speed drifts
            pauses.append(delay_for_rate(cached_at, args.users, args.target_rate, pauses[-1], probes=1))
            return cached_at(pauses[-1], args.duration)

        out["altus4_cached_at_target_rate"] = at_target_rate
    return out


def ratios(rounds: dict[str, list[Summary]]) -> dict[str, float]:
    """Throughput ratios, each the median of the per-round ratios (both sides measured in the same round)."""

    def ratio(a: str, b: str) -> float:
        return median([x.throughput_rps / y.throughput_rps for x, y in zip(rounds[a], rounds[b], strict=True)])

    return {
        "uncached_vs_raw_mysql": ratio("altus4_uncached", "raw_mysql"),
        "uncached_vs_same_sql": ratio("altus4_uncached", "raw_mysql_altus4_sql"),
        "bm25_vs_mysql_order": ratio("altus4_uncached", "altus4_uncached_mysql_order"),
        "cached_vs_raw_mysql": ratio("altus4_cached", "raw_mysql"),
        "cached_vs_health": ratio("altus4_cached", "health"),
    }


if __name__ == "__main__":
    main()
