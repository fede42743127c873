"""Structured search (filter, facets, sort, browse) beside its plain twin, on anchor-shop (issue #27).

    .venv/bin/python bench/structured.py [--rounds 3 --duration 10]     # `make bench` runs it after run.py

Each figure is measured beside the plain search it is a variant of, in the same round, interleaved, and the
ratio is the median of the per-round ratios (this machine's speed drifts by a quarter between runs):
- throughput at 16 clients, uncached: the anchor-shop searches, and the same with `filter: category = …`
  (an indexed column; the category cycles through the commonest ones);
- p50 at one client: the searches, and the same with `facets: [category, price]` (counts and price stats);
  the searches in relevance order, and with `sort: [price:asc]`;
- p50 at one client of browse: `query: ""`, `filter: category = …`, `sort: [created_at:desc]`, over the 100k
  products.
Writes bench/results/structured.json and prints a markdown table with a PASS/FAIL line per target.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from drivers import Searches, http_load, wrk_available  # noqa: E402
from run import (  # noqa: E402
    ANCHOR_DB,
    RESULTS,
    account,
    build_anchor_shop,
    datasets_dir,
    median,
    server_env,
    start_server,
    stop_server,
    warm_statistics,
    with_cpu,
)

from altus4.config import Settings  # noqa: E402
from altus4.db.migrate import Migrator  # noqa: E402
from altus4.loadtest import HttpClient  # noqa: E402

CATEGORIES = ["Electronics", "Books", "Home & Kitchen", "Clothing"]  # anchor-shop's commonest (Zipf)
TARGETS = {  # the targets: (what, ratio or ms, the bound, higher is better)
    "filter_throughput_vs_plain": ("uncached throughput with an equality filter on `category`", 0.9, True),
    "facets_p50_vs_plain": ("p50 with facets on category + stats on price", 1.5, False),
    "sort_p50_vs_relevance": ("p50 with `sort: [price:asc]`", 1.3, False),
    "browse_p50_ms": ("browse p50 at 100k rows (filter category, sort created_at:desc), ms", 20.0, False),
}


def p50(client: HttpClient, bodies: list[dict], count: int) -> float:
    """p50 (ms) of `count` sequential searches cycling through `bodies`, after 10 unmeasured ones."""
    for body in bodies[-10:]:
        client.request("POST", "/api/v1/search", body)
    times = []
    for i in range(count):
        started = time.perf_counter()
        status = client.request("POST", "/api/v1/search", bodies[i % len(bodies)])
        if status != "200":
            raise SystemExit(f"search failed ({status}): {bodies[i % len(bodies)]}")
        times.append((time.perf_counter() - started) * 1000)
    return median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per throughput measurement")
    parser.add_argument("--count", type=int, default=100, help="searches per one-client p50")
    parser.add_argument("--users", type=int, default=16)
    args = parser.parse_args()
    dataset = datasets_dir()
    if dataset is None:
        print("the anchor-shop dataset is not found (set ALTUS4_DATASETS): structured search is not measured")
        return
    env = server_env(2)
    settings = Settings.from_env({**os.environ, **env})
    Migrator(settings).migrate()
    build_anchor_shop(settings, dataset / "anchor-shop")
    queries = [q for q in (dataset / "anchor-shop" / "queries.txt").read_text().splitlines() if q]
    searches = Searches(dataset / "anchor-shop" / "queries.txt", tables=("products",))
    server = start_server({**env, "SEARCH_CACHE_TTL": "0"}, 3992, RESULTS / "gunicorn.log")
    base = "http://127.0.0.1:3992"
    try:
        key, _ = account(base, settings, [ANCHOR_DB])
        warm_statistics(base, key, searches)
        client = HttpClient(base, {"Authorization": f"Bearer {key}"})
        plain = [{"query": q, "tables": ["products"], "limit": 20} for q in queries]
        faceted = [{**b, "facets": ["category", "price"]} for b in plain]
        sorted_ = [{**b, "sort": ["price:asc"]} for b in plain]
        browse = [
            {"query": "", "tables": ["products"], "filter": f'category = "{c}"', "sort": ["created_at:desc"]}
            for c in CATEGORIES
        ]
        rounds: dict[str, list[float]] = {
            name: [] for name in ("plain_rps", "filter_rps", "plain_p50", "facets_p50", "sort_p50", "browse_p50")
        }
        cpu: dict[str, list[float]] = {"plain": [], "filter": []}
        use_wrk = wrk_available()
        for n in range(args.rounds):
            if use_wrk:
                for name, extra in (("plain", None), ("filter", {"filter": f'category = "{CATEGORIES[n % 4]}"'})):
                    summary = with_cpu(
                        server,
                        lambda e=extra: http_load(base, args.users, args.duration, "wrk", key, searches, extra=e),
                    )
                    rounds[f"{name}_rps"].append(summary.throughput_rps)
                    cpu[name].append(summary.cpu_ms_per_request or 0.0)
            rounds["plain_p50"].append(p50(client, plain, args.count))
            rounds["facets_p50"].append(p50(client, faceted, args.count))
            rounds["sort_p50"].append(p50(client, sorted_, args.count))
            rounds["browse_p50"].append(p50(client, browse, args.count))
            print(f"round {n + 1}/{args.rounds}: {json.dumps({k: v[-1] for k, v in rounds.items() if v})}", flush=True)
        client.close()
    finally:
        stop_server(server)

    def ratio(a: str, b: str) -> float | None:
        pairs = list(zip(rounds[a], rounds[b], strict=True))
        return median([x / y for x, y in pairs]) if pairs else None

    measured = {
        "filter_throughput_vs_plain": ratio("filter_rps", "plain_rps"),
        "facets_p50_vs_plain": ratio("facets_p50", "plain_p50"),
        "sort_p50_vs_relevance": ratio("sort_p50", "plain_p50"),
        "browse_p50_ms": median(rounds["browse_p50"]),
    }
    results = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} CPUs",
        "rounds": rounds,
        "cpu_ms_per_request": {k: median(v) for k, v in cpu.items() if v},
        "measured": measured,
    }
    (RESULTS / "structured.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n| structured search (anchor-shop) | median of rounds | rounds | target |\n|---|---|---|---|")
    print(
        f"| plain search, 16 clients, req/s | {median(rounds['plain_rps']) if rounds['plain_rps'] else '—'} |"
        f" {rounds['plain_rps']} | |"
    )
    print(
        f"| with `filter: category = …`, req/s | {median(rounds['filter_rps']) if rounds['filter_rps'] else '—'} |"
        f" {rounds['filter_rps']} | |"
    )
    for name in ("plain_p50", "facets_p50", "sort_p50", "browse_p50"):
        print(f"| {name.replace('_', ' ')} ms, one client | {median(rounds[name])} | {rounds[name]} | |")
    for name, (what, bound, higher) in TARGETS.items():
        value = measured[name]
        verdict = "n/a" if value is None else "PASS" if (value >= bound if higher else value <= bound) else "FAIL"
        print(f"{verdict}: {what}: {value} ({'≥' if higher else '≤'} {bound})")


if __name__ == "__main__":
    main()
