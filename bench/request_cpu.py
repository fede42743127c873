"""The service's own CPU per search request, measured in one process without HTTP or load: what a change to
the request path saves, free of the machine's drift that moves throughput by a quarter between runs.

    .venv/bin/python bench/request_cpu.py                    # anchor-shop's products (make bench loads it)
    .venv/bin/python bench/request_cpu.py --profile 25       # and cProfile's top 25 lines per variant

Each variant sends the same searches (every query of the profile, pages 1..N in turn) through the Flask test
client of the real app, against the real MariaDB and Redis; CPU is this process's (`time.process_time`,
all threads), so MySQL's own work is not in it. Variants: uncached with BM25 (the default), uncached in
MySQL's order, and a cached hit.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time

from run import ANCHOR_DB, datasets_dir  # puts this checkout on sys.path too

from altus4 import create_app
from altus4.config import Settings

VARIANTS = (("uncached", "0", "bm25"), ("uncached_mysql_order", "0", "mysql"), ("cached", "3600", "bm25"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", default=ANCHOR_DB)
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--requests", type=int, default=400, help="measured requests per variant")
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N lines per variant")
    parser.add_argument("--variants", default="uncached,uncached_mysql_order,cached")
    args = parser.parse_args()
    dataset = datasets_dir()
    if dataset is None:
        raise SystemExit("the anchor-shop dataset is not found (set ALTUS4_DATASETS)")
    queries = [q for q in (dataset / "anchor-shop" / "queries.txt").read_text().splitlines() if q]
    env = {
        **os.environ,
        "APP_ENV": "development",
        "ALLOW_OWN_SERVERS": "true",  # its "tenant" databases are on the metadata server
        "DEFAULT_ACCOUNT_TIER": "enterprise",
        "DB_DATABASE": "altus4_bench",
        "REDIS_DB": "11",
        "RATE_LIMIT_ENTERPRISE": "100000000",
        "AUTH_RATE_LIMIT": "10000 per minute",
        "LOG_LEVEL": "warning",
    }
    out = {}
    for variant, ttl, ranking in (
        ("uncached", "0", "bm25"),
        ("uncached_mysql_order", "0", "mysql"),
        ("cached", "3600", "bm25"),
    ):
        settings = Settings.from_env({**env, "SEARCH_CACHE_TTL": ttl})
        app = create_app(settings)
        client = app.test_client()
        headers = account(client, settings, args.database)
        bodies = [
            {"query": q, "limit": 20, "offset": 20 * (i % args.pages), "tables": ["products"], "ranking": ranking}
            for i, q in enumerate(queries * (1 + args.requests // len(queries)))
        ][: args.requests]
        for body in bodies:  # pools, schema, BM25 statistics and (cached) the entries warm
            assert client.post("/api/v1/search", json=body, headers=headers).status_code == 200
        profiler = cProfile.Profile() if args.profile else None
        started = time.process_time()
        if profiler:
            profiler.enable()
        for body in bodies:
            client.post("/api/v1/search", json=body, headers=headers)
        if profiler:
            profiler.disable()
        out[variant] = round((time.process_time() - started) * 1000 / len(bodies), 3)
        app.extensions["altus4"].close()
        print(f"{variant}: {out[variant]} ms CPU per request", flush=True)
        if profiler:
            text = io.StringIO()
            pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(args.profile)
            print(text.getvalue())
    print(out)


def account(client, settings: Settings, database: str) -> dict[str, str]:
    """A new user with `database` connected and an enterprise key: the key's Authorization header."""
    email = f"cpu-{time.time_ns()}@example.com"
    r = client.post("/api/v1/auth/register", json={"email": email, "password": "bench-password", "name": "Bench"})
    jwt = {"Authorization": f"Bearer {r.get_json()['data']['token']}"}
    connection = {
        "name": database,
        "host": settings.db_host,
        "port": settings.db_port,
        "database": database,
        "username": settings.db_username,
        "password": settings.db_password,
    }
    assert client.post("/api/v1/databases", json=connection, headers=jwt).status_code == 201
    r = client.post(
        "/api/v1/keys", json={"name": "cpu", "environment": "test", "rateLimitTier": "enterprise"}, headers=jwt
    )
    return {"Authorization": f"Bearer {r.get_json()['data']['secretKey']}"}


if __name__ == "__main__":
    main()
