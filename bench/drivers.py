"""The load drivers bench/run.py measures with: raw MySQL through PyMySQL, and HTTP through wrk or Python.

HTTP load uses wrk when it is installed (`make bench` installs it): a C client leaves the two cores to
the server and MariaDB, where the Python client (`altus4 loadtest`'s) spends a good part of them
itself at hundreds of requests a second. Raw MySQL is always PyMySQL: that is the baseline the
comparison is about.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pymysql

from altus4.loadtest import HttpClient, Summary, run_workers, search_step
from altus4.search import plan as planner

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_report.lua"
PRODUCTS = planner.TableQuery(  # the bench's own table; anchor-shop's has a created_at column too
    table="products",
    columns=("id", "name", "description", "category", "price"),
    key=("id",),
    key_is_unique=True,
    match_groups=(("name", "description"),),
)


@dataclass(frozen=True)
class Searches:
    """What the search load asks: the next query of `queries_file` for each request, `limit` rows from one
    of the first `pages` pages (offset = limit x a random page index), in `tables` when given."""

    queries_file: Path
    limit: int = 20
    pages: int = 1
    tables: tuple[str, ...] = ()

    def queries(self) -> list[str]:
        return [q for q in self.queries_file.read_text().splitlines() if q]


def simple_statement(table: planner.TableQuery):
    """What a developer would write by hand: the page by relevance, no total count."""
    cols = ", ".join(planner.ident(c) for c in table.columns)
    group = ", ".join(planner.ident(c) for c in table.match_groups[0])
    match = f"MATCH ({group}) AGAINST (%s IN NATURAL LANGUAGE MODE)"
    sql = (
        f"SELECT {cols}, ({match}) AS score FROM {planner.ident(table.table)} WHERE {match}"
        f" ORDER BY score DESC, {planner.ident(table.key[0])} LIMIT %s OFFSET %s"
    )
    return lambda query, limit, offset=0: (sql, (query, query, limit, offset))


def altus4_statement(table: planner.TableQuery):
    """The statement Altus 4 itself sends for this table in MySQL's order (the rows up to the page's end,
    score and total count), from its planner."""

    def statement(query: str, limit: int, offset: int = 0) -> tuple[str, tuple]:
        built = planner.build_select(table, "natural", query, (), (), offset + limit)
        return built.sql, built.params

    return statement


def raw_mysql(connect, searches: Searches, users: int, duration: float, statement) -> Summary:
    """Natural-mode FULLTEXT straight through PyMySQL, one connection per client thread."""
    local = threading.local()
    opened: list[pymysql.Connection] = []
    queries = searches.queries()

    def step(user: int, n: int) -> str:
        if getattr(local, "conn", None) is None:
            local.conn = connect()
            local.rng = random.Random(user)
            opened.append(local.conn)
        offset = searches.limit * local.rng.randrange(searches.pages)
        sql, params = statement(queries[(user * 7919 + n) % len(queries)], searches.limit, offset)
        with local.conn.cursor() as cur:
            cur.execute(sql, params)
            cur.fetchall()
        return "200"

    summary = run_workers(users, duration, step)
    for conn in opened:
        conn.close()
    return summary


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def http_load(
    base: str,
    users: int,
    duration: float,
    client: str,
    key: str | None = None,
    searches: Searches | None = None,
    delay_ms: float = 0.0,
    ranking: str = "",
    extra: dict | None = None,
) -> Summary:
    """`users` keep-alive connections for `duration`: `searches` (with a key) or GET /health; with
    `delay_ms` (wrk only) each connection pauses that long on average between requests; `ranking` is sent
    when given (the service's default otherwise); `extra` (wrk only) adds members to every search body."""
    if client == "wrk":
        return _wrk(base, users, duration, key, searches, delay_ms, ranking, extra)
    if extra:
        raise ValueError("extra body members need wrk (make bench installs it)")
    http = HttpClient(base, {"Authorization": f"Bearer {key}"} if key else {})
    try:
        if searches is None:
            return run_workers(users, duration, lambda u, n: http.request("GET", "/health"))
        step = search_step(
            http, searches.queries(), ["natural"], searches.limit, ranking, searches.pages, list(searches.tables)
        )
        return run_workers(users, duration, step)
    finally:
        http.close()


def _wrk(
    base: str,
    users: int,
    duration: float,
    key: str | None,
    searches: Searches | None,
    delay_ms: float,
    ranking: str = "",
    extra: dict | None = None,
) -> Summary:
    env = {**os.environ, "API_KEY": key or "", "DELAY_MS": f"{delay_ms:.3f}", "RANKING": ranking}
    env["EXTRA"] = json.dumps(extra)[1:-1] if extra else ""
    env.pop("QUERIES_FILE", None)
    if searches is not None:
        env.update(
            QUERIES_FILE=str(searches.queries_file),
            LIMIT=str(searches.limit),
            PAGES=str(searches.pages),
            TABLES=json.dumps(list(searches.tables)) if searches.tables else "",
        )
    url = base + ("/api/v1/search" if searches is not None else "/health")
    out = subprocess.run(
        [
            "wrk",
            f"-t{min(2, users)}",
            f"-c{users}",
            f"-d{max(1, round(duration))}s",
            "--timeout",
            "30s",
            "-s",
            str(WRK_SCRIPT),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    seconds = r["duration_us"] / 1e6
    failures = {"non-2xx": r["status_errors"], **{k: r[k] for k in ("connect", "read", "write", "timeout")}}
    ms = lambda us: round(us / 1000, 2)  # noqa: E731
    return Summary(
        requests=r["requests"],
        successes=r["requests"] - r["status_errors"],
        failures={k: v for k, v in failures.items() if v},
        duration_s=round(seconds, 2),
        throughput_rps=round(r["requests"] / seconds, 1),
        p50_ms=ms(r["p50_us"]),
        p95_ms=ms(r["p95_us"]),
        p99_ms=ms(r["p99_us"]),
        max_ms=ms(r["max_us"]),
    )


def delay_for_rate(measure, users: int, rate: float, pause: float | None = None, probes: int = 2) -> float:
    """The mean pause per connection (ms) that makes `users` connections offer about `rate` requests/s.

    Each connection sends one request per (latency + pause), so a 3-second probe gives the latency to take
    off the pause; repeated, as the latency itself moves with the load (and this machine's speed drifts).
    """
    pause = users * 1000 / rate if pause is None else pause
    for _ in range(probes):
        probe = measure(pause, 3)
        latency = users * 1000 / max(probe.throughput_rps, 1e-9) - pause
        pause = max(0.0, users * 1000 / rate - latency)
    return pause


def one_client_latency(client: HttpClient, queries: list[str], body: dict, count: int) -> float:
    """p50 latency (ms) of `count` sequential searches, after 10 unmeasured ones (pools and caches warm)."""
    return _p50(lambda q: client.request("POST", "/api/v1/search", {"query": q, **body}), queries, count)


def first_pass_latency(client: HttpClient, queries: list[str], body: dict, count: int) -> dict:
    """p50 and max latency (ms) of `count` sequential searches on a database this server has not searched
    yet: BM25's statistics are cold, so each new term's document frequency is counted in MySQL first."""
    client.request("POST", "/api/v1/search", {"query": "zzzzqx", **body})  # pools, schema and table statistics
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        client.request("POST", "/api/v1/search", {"query": queries[i % len(queries)], **body})
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50": round(times[len(times) // 2], 2), "max": round(times[-1], 2)}


def paired_latency(
    client: HttpClient, conn: pymysql.Connection, queries: list[str], body: dict, count: int
) -> tuple[float, float]:
    """p50 latency (ms) of `count` sequential searches and of Altus 4's own statement for the same queries
    straight through PyMySQL (what the database alone costs), query by query, each going first every other
    time: both see the same buffer pool, which at a million rows moves the figures more than Altus 4 does."""

    altus4_sql = altus4_statement(PRODUCTS)

    def statement(query: str) -> None:
        sql, params = altus4_sql(query, 20)
        with conn.cursor() as cur:
            cur.execute(sql, params)
            cur.fetchall()

    def search(query: str) -> None:
        client.request("POST", "/api/v1/search", {"query": query, **body})

    for i in range(10):
        search(queries[-1 - i])
        statement(queries[-1 - i])
    times: dict = {search: [], statement: []}
    for i in range(count):
        query = queries[i % len(queries)]
        for call in (search, statement) if i % 2 == 0 else (statement, search):
            t0 = time.perf_counter()
            call(query)
            times[call].append((time.perf_counter() - t0) * 1000)
    return _median(times[search]), _median(times[statement])


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 2)


def _p50(call, queries: list[str], count: int) -> float:
    for i in range(10):
        call(queries[-1 - i])
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        call(queries[i % len(queries)])
        times.append((time.perf_counter() - t0) * 1000)
    return _median(times)
