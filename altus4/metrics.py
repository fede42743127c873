"""Prometheus metrics: the series every layer records into (served at /metrics by `altus4.api.metrics`).

Under gunicorn (`PROMETHEUS_MULTIPROC_DIR` set by config/gunicorn.conf.py) every
worker writes its samples to that directory and any worker's /metrics merges
them all; elsewhere (tests, `flask run`) each app has its own registry.

Route labels are URL rule templates (`/api/v1/keys/<uuid:key_id>`), never raw
paths, so label cardinality stays bounded. The cache hit ratio is derived at
scrape time from the merged hit/miss counters, so it is right across workers.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def multiprocess() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def merged(registry: CollectorRegistry) -> CollectorRegistry:
    """Every worker's samples under gunicorn (the multiprocess directory), else this app's own registry."""
    if not multiprocess():
        return registry
    out = CollectorRegistry()
    MultiProcessCollector(out)
    return out


def cache_ratios(families) -> dict[str, float]:
    """Cache hits / lookups by cache type, from collected metric families (merged across workers or not)."""
    hits: dict[str, float] = {}
    totals: dict[str, float] = {}
    for family in families:
        if family.name != "altus4_cache_requests":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            kind = sample.labels["cache_type"]
            totals[kind] = totals.get(kind, 0.0) + sample.value
            if sample.labels["result"] == "hit":
                hits[kind] = hits.get(kind, 0.0) + sample.value
    return {kind: hits.get(kind, 0.0) / total if total else 0.0 for kind, total in sorted(totals.items())}


class CacheRatio:
    """altus4_cache_hit_ratio{cache_type}, computed from the (merged) request counters at scrape time."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        ratio = GaugeMetricFamily(
            "altus4_cache_hit_ratio", "Cache hits / lookups since start, by cache", labels=["cache_type"]
        )
        for kind, value in cache_ratios(self.source.collect()).items():
            ratio.add_metric([kind], value)
        yield ratio


class Passthrough:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry

    def collect(self):
        yield from self.registry.collect()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.request_duration = Histogram(
            "altus4_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status_code"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.search_duration = Histogram(
            "altus4_search_duration_seconds",
            "Search latency (cached or not)",
            ["search_mode", "database_count"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.connections_active = Gauge(
            "altus4_database_connections_active",
            "Connections checked out of a pool now",
            ["database_id"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.pool_wait = Histogram(
            "altus4_db_pool_wait_seconds",
            "Time spent waiting for a pooled connection",
            ["pool"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0),
            registry=r,
        )
        self.pool_exhausted = Counter(
            "altus4_db_pool_exhausted", "Requests turned away because a pool stayed full", ["pool"], registry=r
        )
        self.connect_failures = Counter(
            "altus4_db_connect_failures",
            "Connections to a metadata database that failed or broke in use (a pool that is down tries again"
            " once per DB_RETRY_SECONDS, refusing requests meanwhile without a try)",
            ["pool"],
            registry=r,
        )
        self.write_failovers = Counter(
            "altus4_db_write_failovers",
            "Writes interrupted by a Galera node's loss and run again on the next node (safe to repeat)",
            registry=r,
        )
        self.cache_requests = Counter(
            "altus4_cache_requests", "Cache lookups by result", ["cache_type", "result"], registry=r
        )
        self.rate_limited = Counter("altus4_rate_limit_exceeded", "Requests refused with 429", ["scope"], registry=r)
        self.ai_fallbacks = Counter(
            "altus4_ai_fallback", "Searches answered without AI, by reason", ["reason"], registry=r
        )
        self.redis_errors = Counter("altus4_redis_errors", "Redis operations that failed", registry=r)
        self.vector_index_rows = Gauge(
            "altus4_vector_index_rows",
            "Rows in this node's vector index of a table",
            ["table"],
            multiprocess_mode="max",
            registry=r,
        )
        self.vector_index_bytes = Gauge(
            "altus4_vector_index_bytes",
            "Bytes of this node's vector index files of a table (memory-mapped, shared)",
            ["table"],
            multiprocess_mode="max",
            registry=r,
        )
        self.vector_index_build_seconds = Histogram(
            "altus4_vector_index_build_seconds",
            "Time to build a table's vector index on this node",
            ["table"],
            buckets=(0.1, 0.5, 1, 5, 15, 60, 180, 600, 1800),
            registry=r,
        )
        self.write_behind_unapplied = Counter(
            "altus4_write_behind_unapplied",
            "Queued items a flush could not apply to MySQL (their user or API key is gone), by sink",
            ["sink"],
            registry=r,
        )
        self.ai_calls = Counter(
            "altus4_ai_calls",
            "AI provider calls by outcome (ok or fallback reason)",
            ["operation", "outcome"],
            registry=r,
        )
        self.ai_tokens = Counter("altus4_ai_tokens", "Tokens spent on the AI provider", ["operation"], registry=r)
        self.ai_breaker_state = Gauge(
            "altus4_ai_breaker_state",
            "AI circuit breaker: 0 closed, 1 half-open, 2 open",
            multiprocess_mode="livemax",
            registry=r,
        )
        # series that alerts use exist from the start (at 0), so rate() and absent() behave
        self.ai_fallbacks.labels("ai_not_configured")
        self.pool_exhausted.labels("primary")
        for sink in ("analytics", "usage", "revocations"):
            self.write_behind_unapplied.labels(sink)
        for scope in ("ip", "user", "connection_test", "api_key_free", "api_key_pro", "api_key_enterprise"):
            self.rate_limited.labels(scope)
        for kind in ("search", "api_key", "schema", "embedding"):
            for result in ("hit", "miss"):
                self.cache_requests.labels(kind, result)

    def cache(self, kind: str, hit: bool) -> None:
        self.cache_requests.labels(kind, "hit" if hit else "miss").inc()

    def summary(self) -> dict:
        """Totals since this instance started (all its workers): requests, the 5xx share, cache hit ratios."""
        families = list(merged(self.registry).collect())
        requests = errors = 0.0
        for family in families:
            if family.name != "altus4_request_duration_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_count"):
                    requests += sample.value
                    errors += sample.value if sample.labels["status_code"].startswith("5") else 0.0
        return {
            "requests": int(requests),
            "errorRate": round(errors / requests, 6) if requests else 0.0,
            "cacheHitRatio": {kind: round(value, 4) for kind, value in cache_ratios(families).items()},
        }
