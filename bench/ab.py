"""Two checkouts of Altus 4 side by side under the same load: what a change costs or saves, measured in
the same minutes, free of the drift that moves a whole `make bench` run by a third on this machine.

    git worktree add ../altus4-before HEAD~1                  # the code to compare against
    .venv/bin/python bench/ab.py ../altus4-before             # uncached anchor-shop searches, 4 rounds
    .venv/bin/python bench/ab.py ../altus4-before --cached --rounds 6

Both servers run the benchmark's settings (`run.server_env`) with this checkout's virtualenv; each round
measures both, in alternating order, with wrk (16 connections, `--duration` seconds) on anchor-shop (one of
its first 10 pages), and reports req/s, p95 and the workers' CPU per request. Needs one `make bench`
first (it loads anchor-shop and installs wrk).
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

from drivers import Searches, http_load
from run import (  # puts this checkout on sys.path too
    ANCHOR_DB,
    RESULTS,
    ROOT,
    account,
    datasets_dir,
    server_env,
    start_server,
    stop_server,
    warm_cache,
    warm_statistics,
    with_cpu,
)

from altus4.config import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="the other checkout (its app.py and altus4/ are served)")
    parser.add_argument("--cached", action="store_true", help="cached searches (default: uncached)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--ranking", default="", help="bm25 or mysql (default: the service's)")
    args = parser.parse_args()
    dataset = datasets_dir()
    if dataset is None:
        raise SystemExit("the anchor-shop dataset is not found (set ALTUS4_DATASETS)")
    env = {**server_env(2), "SEARCH_CACHE_TTL": "3600" if args.cached else "0"}
    settings = Settings.from_env({**os.environ, **env})
    searches = Searches(dataset / "anchor-shop" / "queries.txt", pages=10, tables=("products",))
    trees = {"other": args.other.resolve(), "this": ROOT}
    servers = {}
    try:
        for port, (name, root) in enumerate(trees.items(), start=3996):
            servers[name] = (start_server(env, port, RESULTS / f"ab-{name}.log", root), f"http://127.0.0.1:{port}")
        keys = {}
        for name, (_, base) in servers.items():
            keys[name] = account(base, settings, [ANCHOR_DB])[0]
            if args.cached:
                warm_cache(base, keys[name], searches)
            else:
                warm_statistics(base, keys[name], searches)
            http_load(base, 16, 5, "wrk", keys[name], searches, ranking=args.ranking)  # pools, statistics warm
        seen: dict[str, list] = {name: [] for name in servers}
        for n in range(args.rounds):
            for name in list(servers)[:: 1 if n % 2 == 0 else -1]:
                proc, base = servers[name]
                summary = with_cpu(
                    proc,
                    lambda b=base, k=keys[name]: http_load(
                        b, 16, args.duration, "wrk", k, searches, ranking=args.ranking
                    ),
                )
                seen[name].append(summary)
                print(f"round {n + 1} {name}: {summary.as_dict()}", flush=True)
    finally:
        for proc, _ in servers.values():
            stop_server(proc)
    for name, summaries in seen.items():
        rps = [s.throughput_rps for s in summaries]
        cpu = [s.cpu_ms_per_request for s in summaries if s.cpu_ms_per_request is not None]
        print(
            f"{name} ({trees[name]}): req/s median {statistics.median(rps):.1f} {sorted(rps)};"
            f" CPU ms/request median {statistics.median(cpu):.3f} {sorted(cpu)}"
        )


if __name__ == "__main__":
    main()
