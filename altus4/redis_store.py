"""The one Redis access layer: cache, rate limiter and counters all go through here.

Topology comes from configuration: a single node (`REDIS_HOST`/`REDIS_PORT`),
Sentinel (`REDIS_SENTINELS` + `REDIS_SENTINEL_MASTER`: writes to the master,
cache reads may go to a replica) or Cluster (`REDIS_CLUSTER_NODES`; keys that
must share a slot carry a `{hash tag}`). Every key is named through `key()`,
which puts `REDIS_PREFIX` before it.

Redis is an accelerator, never a dependency of correctness: callers use
`safe()` (or `guard()` around pipelines), so an outage degrades to "no cache,
local rate limits" rather than to a 500. After a failure Redis is skipped for
a short back-off, so a dead or black-holed Redis costs one timeout per
back-off window, not one per operation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

from altus4.config import Settings
from altus4.metrics import Metrics

log = logging.getLogger("altus4.redis")
T = TypeVar("T")
BACKOFF_SECONDS = 1.0


class RedisStore:
    def __init__(self, settings: Settings, metrics: Metrics | None = None):
        self.settings = settings
        self.prefix = settings.redis_prefix
        self.metrics = metrics or Metrics()  # unexported unless the app serves it
        self._down_until = 0.0
        self._lock = threading.Lock()
        common: dict[str, Any] = dict(
            socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_socket_timeout,
            decode_responses=True,
            password=settings.redis_password or None,
        )
        if settings.redis_cluster_nodes:
            self.topology = "cluster"
            # used only through the commands a cluster client shares with a single-node one
            self.client: redis.Redis = cast(
                redis.Redis,
                RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in settings.redis_cluster_nodes], **common),
            )
            self.reader = self.client
        elif settings.redis_sentinels:
            self.topology = "sentinel"
            sentinel = Sentinel(
                list(settings.redis_sentinels),
                sentinel_kwargs={
                    "socket_timeout": settings.redis_socket_timeout,
                    "socket_connect_timeout": settings.redis_socket_timeout,
                },
                **common,
            )
            self.client = sentinel.master_for(settings.redis_sentinel_master, db=settings.redis_db)
            self.reader = sentinel.slave_for(settings.redis_sentinel_master, db=settings.redis_db)
        else:
            self.topology = "single"
            common.pop("password")
            self.client = redis.Redis.from_url(settings.redis_url, health_check_interval=30, **common)
            self.reader = self.client

    def key(self, name: str) -> str:
        """The Redis key for `name` in this deployment's namespace."""
        return self.prefix + name

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        self.metrics.redis_errors.inc()
        with self._lock:
            first = self.available
            self._down_until = time.monotonic() + BACKOFF_SECONDS
        if first:
            log.warning("redis unavailable (%s); skipping it for %.1fs", exc, BACKOFF_SECONDS)

    @contextmanager
    def guard(self) -> Iterator[redis.Redis]:
        """The client, or redis.ConnectionError at once while backing off; failures start a back-off."""
        if not self.available:
            raise redis.ConnectionError("redis skipped during back-off")
        try:
            yield self.client
        except redis.RedisError as exc:
            self._failed(exc)
            raise

    def safe(self, operation: Callable[[redis.Redis], T], default: T, read: bool = False) -> T:
        """Run `operation(client)`; on any Redis error (or during back-off) return `default`.

        `read=True` lets Sentinel deployments serve the call from a replica (cache reads, which tolerate
        replication lag), falling back to the master if no replica answers.
        """
        if not self.available:
            return default
        if read and self.reader is not self.client:
            try:
                return operation(self.reader)
            except redis.RedisError:
                pass  # no replica reachable: ask the master
        try:
            return operation(self.client)
        except redis.RedisError as exc:
            self._failed(exc)
            return default

    def count_cache(self, kind: str, hit: bool) -> None:
        """Record a cache lookup (altus4_cache_requests_total / altus4_cache_hit_ratio)."""
        self.metrics.cache(kind, hit)

    def ping(self) -> bool:
        """A live check that ignores the back-off (health endpoints want the truth)."""
        try:
            return bool(self.client.ping())
        except redis.RedisError as exc:
            self._failed(exc)
            return False

    def close(self) -> None:
        self.client.close()
        if self.reader is not self.client:
            self.reader.close()
