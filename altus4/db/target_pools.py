"""Pools for users' databases: one per connected database, created lazily, LRU-bounded.

A pool is keyed by the connection id and its schema version, which changes with
host, port, credentials or TLS, so a pool never outlives the settings it was
opened with; `discard()` closes a connection's pool when it is changed or deleted.
Each new connection carries a server-side statement time limit, set the way
the server understands it (MariaDB `max_statement_time`, MySQL `max_execution_time`).

A sick database fails fast: an endpoint that could not be connected to, or whose
connection broke mid-query, is not tried again for TARGET_RETRY_SECONDS. Until then
it is answered at once with the error it last gave (a black-holed server would
otherwise hold every search for the connect timeout); after it, one caller probes
while the others keep failing fast, and a success closes the circuit.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace

import pymysql

from altus4.config import Settings
from altus4.db import targets
from altus4.db.pool import Pool
from altus4.errors import DatabaseUnavailable
from altus4.metrics import Metrics


def time_limit_statement(version: str, milliseconds: int) -> str:
    if "mariadb" in version.lower():
        return f"SET SESSION max_statement_time = {milliseconds / 1000:.3f}"
    return f"SET SESSION max_execution_time = {int(milliseconds)}"


@dataclass
class _Circuit:
    """An endpoint that failed: answered with `error` until `retry_at`, then probed by one caller."""

    error: str
    retry_at: float
    probing: bool = False


class TargetPools:
    def __init__(self, settings: Settings, metrics: Metrics | None = None):
        self.settings = settings
        self.metrics = metrics or Metrics()
        self._pools: OrderedDict[tuple, Pool] = OrderedDict()
        self._circuits: dict[tuple[str, str, int], _Circuit] = {}  # (connection id, host, port) that failed
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._opening: dict[tuple, threading.Lock] = {}  # one opener per pool key: others wait, then share

    def _open(self, spec: targets.TargetSpec) -> Pool:
        probe = targets.connect(spec, self.settings)  # also learns which server this is
        try:
            version = probe.get_server_info()
        finally:
            probe.close()
        kwargs = targets.connect_kwargs(spec, self.settings, read_timeout=self.settings.search_timeout_ms / 1000 + 1)
        return Pool(
            f"database {spec.id} at {spec.host}:{spec.port}",
            self.settings.target_pool_size,
            self.settings.db_pool_timeout,
            metrics=self.metrics,
            label=spec.id,
            setsession=[time_limit_statement(version, self.settings.search_timeout_ms)],
            **kwargs,
        )

    def _pool(self, spec: targets.TargetSpec, version: int) -> Pool:
        key = (spec.id, version, spec.host, spec.port)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
        with self._lock:
            opening = self._opening.setdefault(key, threading.Lock())
        with opening:
            existing = self._pools.get(key)
            if existing is not None:  # another greenlet opened it while this one waited
                return existing
            failed = self._circuits.get((spec.id, spec.host, spec.port))
            if failed is not None and not failed.probing:  # the opener this one waited for has just failed
                raise targets.TargetError(failed.error)
            pool = self._open(spec)
            with self._lock:
                self._opening.pop(key, None)
                self._pools[key] = pool
                closing = [self._pools.pop(k) for k in list(self._pools) if k[0] == spec.id and k[1] != version]
                while len(self._pools) > self.settings.target_pools_max:
                    closing.append(self._pools.popitem(last=False)[1])  # least recently used
        for old in closing:
            old.close()
        return pool

    def _endpoints(self, spec: targets.TargetSpec) -> list[targets.TargetSpec]:
        """The database's replicas (rotating), then the database itself."""
        replicas = list(spec.replicas)
        if replicas:
            start = next(self._turn) % len(replicas)
            replicas = replicas[start:] + replicas[:start]
        return [replace(spec, host=h, port=p, replicas=()) for h, p in replicas] + [spec]

    def _admitted(self, where: tuple[str, str, int]) -> _Circuit | None:
        """None when the endpoint may be tried (healthy, or this caller is its one probe); else its circuit."""
        circuit = self._circuits.get(where)
        if circuit is None:
            return None
        with self._lock:
            if not circuit.probing and time.monotonic() >= circuit.retry_at:
                circuit.probing = True
                return None
        return circuit

    def _failed(self, where: tuple[str, str, int], error: str) -> None:
        with self._lock:
            self._circuits[where] = _Circuit(error, time.monotonic() + self.settings.target_retry_seconds)

    @contextmanager
    def connection(self, spec: targets.TargetSpec, version: int) -> Iterator[pymysql.Connection]:
        """:raise targets.TargetError: unreachable, refused, failing fast, or the connection broke mid-query."""
        endpoints = self._endpoints(spec)
        for endpoint in endpoints:
            last = endpoint is endpoints[-1]
            where = (spec.id, endpoint.host, endpoint.port)
            circuit = self._admitted(where)
            if circuit is not None:
                if last:
                    wait = max(0.0, circuit.retry_at - time.monotonic())
                    raise targets.TargetError(f"{circuit.error} (not retried for another {wait:.0f} s)")
                continue
            try:
                pool = self._pool(endpoint, version)
                stack = ExitStack()
                conn = stack.enter_context(pool.connection())
            except targets.TargetError as exc:
                self._failed(where, str(exc))
                if last:
                    raise
                continue
            except DatabaseUnavailable as exc:
                message = targets.describe_error(exc.__cause__ or exc, endpoint)
                if exc.code != "POOL_EXHAUSTED":  # busy is not sick
                    self._failed(where, message)
                if last:
                    raise targets.TargetError(message) from None
                continue
            if where in self._circuits:
                self._circuits.pop(where, None)
            try:
                with stack:
                    yield conn
            except DatabaseUnavailable as exc:  # the pool's word for a connection that broke mid-query
                message = targets.describe_error(exc.__cause__ or exc, endpoint)
                self._failed(where, message)
                raise targets.TargetError(message) from None
            return

    def served(self, connection_id: str) -> dict[str, int]:
        """Connections handed out per endpoint of a connected database (observability, tests)."""
        return {f"{k[2]}:{k[3]}": pool.served for k, pool in self._pools.items() if k[0] == connection_id}

    def discard(self, connection_id: str) -> None:
        with self._lock:
            closing = [self._pools.pop(k) for k in list(self._pools) if k[0] == connection_id]
            for where in [w for w in self._circuits if w[0] == connection_id]:
                del self._circuits[where]  # changed settings deserve a fresh try
        for pool in closing:
            pool.close()

    def close(self) -> None:
        with self._lock:
            closing = list(self._pools.values())
            self._pools.clear()
        for pool in closing:
            pool.close()
