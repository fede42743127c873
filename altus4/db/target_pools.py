"""Pools for users' databases: one per connected database, created lazily, LRU-bounded.

A pool is keyed by the connection id and its schema version, which changes with
host, port, credentials or TLS, so a pool never outlives the settings it was
opened with; `discard()` closes a connection's pool when it is changed or deleted.
Each new connection carries a server-side statement time limit, set the way
the server understands it (MariaDB `max_statement_time`, MySQL `max_execution_time`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager

import pymysql

from altus4.config import Settings
from altus4.db import targets
from altus4.db.pool import Pool
from altus4.errors import DatabaseUnavailable


def time_limit_statement(version: str, milliseconds: int) -> str:
    if "mariadb" in version.lower():
        return f"SET SESSION max_statement_time = {milliseconds / 1000:.3f}"
    return f"SET SESSION max_execution_time = {int(milliseconds)}"


class TargetPools:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._pools: OrderedDict[tuple[str, int], Pool] = OrderedDict()
        self._lock = threading.Lock()

    def _open(self, spec: targets.TargetSpec) -> Pool:
        probe = targets.connect(spec, self.settings)  # also learns which server this is
        try:
            version = probe.get_server_info()
        finally:
            probe.close()
        kwargs = targets.connect_kwargs(spec, self.settings, read_timeout=self.settings.search_timeout_ms / 1000 + 1)
        return Pool(f"database {spec.id}", self.settings.target_pool_size, self.settings.db_pool_timeout,
                    setsession=[time_limit_statement(version, self.settings.search_timeout_ms)], **kwargs)

    def _pool(self, spec: targets.TargetSpec, version: int) -> Pool:
        key = (spec.id, version)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
        pool = self._open(spec)
        with self._lock:
            existing = self._pools.get(key)
            if existing is not None:  # another greenlet opened it meanwhile
                pool.close()
                return existing
            self._pools[key] = pool
            closing = [self._pools.pop(k) for k in list(self._pools) if k[0] == spec.id and k != key]
            while len(self._pools) > self.settings.target_pools_max:
                closing.append(self._pools.popitem(last=False)[1])  # least recently used
        for old in closing:
            old.close()
        return pool

    @contextmanager
    def connection(self, spec: targets.TargetSpec, version: int) -> Iterator[pymysql.Connection]:
        """:raise targets.TargetError: unreachable, refused, or the connection broke mid-query."""
        pool = self._pool(spec, version)
        try:
            with pool.connection() as conn:
                yield conn
        except DatabaseUnavailable as exc:
            cause = exc.__cause__ or exc
            raise targets.TargetError(targets.describe_error(cause, spec)) from None

    def discard(self, connection_id: str) -> None:
        with self._lock:
            closing = [self._pools.pop(k) for k in list(self._pools) if k[0] == connection_id]
        for pool in closing:
            pool.close()

    def __len__(self) -> int:
        return len(self._pools)

    def close(self) -> None:
        with self._lock:
            closing = list(self._pools.values())
            self._pools.clear()
        for pool in closing:
            pool.close()
