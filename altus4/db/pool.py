"""The metadata database: DBUtils pools over PyMySQL, with the caller choosing read or write.

`db.write()` always uses the primary. `db.read()` uses a healthy replica when
replicas are configured (`DB_READ_HOSTS`), and the primary otherwise. Reads stay
consistent with writes (read-your-writes), using the request's `altus4.context.Scope`:
- inside a request that has written, reads go to the primary;
- across requests, a write records the primary's GTID position under the
  writer's id in Redis for a few seconds, and that subject's reads on a replica
  first wait (briefly) for the replica to reach it (`MASTER_GTID_WAIT` on
  MariaDB, `WAIT_FOR_EXECUTED_GTID_SET` on MySQL), or go to the primary;
- a point lookup that finds nothing on a replica is asked again on the primary.

Replicas are health-checked lazily (at most every DB_REPLICA_CHECK_INTERVAL):
one whose replication threads stopped, or that lags more than DB_REPLICA_MAX_LAG,
or that cannot be reached, is taken out and put back once it is healthy again.
A bounded semaphore caps the wait for a connection: an exhausted pool answers
503 with Retry-After instead of queueing requests forever.

Reads outlive the primary. A server that refused a connection is answered at once
as unavailable for DB_RETRY_SECONDS (then one caller probes it), so an outage
costs no reconnect storm. While the primary is unavailable, reads go to any
replica that still applies what it has (its SQL thread runs, its IO thread lost
the primary): it is as fresh as the primary's last write it received, which is
what every reader saw before the outage; a reader who wrote in the last seconds
is served there only once the replica has applied that write (GTID wait), else 503.

"The primary" is the server DB_HOST names, or, when it lists a Galera cluster's nodes, the node writes go
to now (`altus4.db.nodes`); a write that node's death interrupted is retried on the next one only where it
is safe to repeat (`write_retrying`).
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pymysql
from dbutils.pooled_db import PooledDB
from pymysql.cursors import DictCursor

from altus4 import context
from altus4.config import Settings
from altus4.db import sql
from altus4.db.nodes import LOCK_WAIT_TIMEOUT, Nodes
from altus4.errors import DatabaseUnavailable, WriteInterrupted
from altus4.metrics import Metrics

log = logging.getLogger("altus4.db")

# client errors that mean "the server went away", not "your SQL is wrong"
# (and 1047: a Galera node outside the Primary component, which serves nothing until it rejoins)
_CONNECTION_LOST = {1040, 1047, 1053, 2003, 2006, 2013, 2055}
# lock wait timeout, deadlock (and a Galera certification conflict): the transaction was rolled back, run it
# again (a 1205 from a Galera node that has lost its Primary component is the node's loss: see nodes.py)
_RETRYABLE = {LOCK_WAIT_TIMEOUT, 1213}
RYW_TTL = 10  # seconds a writer's reads wait for replicas to catch up
GTID_WAIT_SECONDS = 0.5


def connect_kwargs(
    settings: Settings, host: str, port: int, database: str | None, user: str | None = None, password: str | None = None
) -> dict[str, Any]:
    """Options for a metadata-database connection (the primary, a replica, migrations), times in UTC."""
    options = sql.client_options(
        host,
        port,
        user or settings.db_username,
        settings.db_password if password is None else password,
        database,
        settings.db_connect_timeout,
    )
    options["init_command"] = "SET time_zone = '+00:00'"
    return options


class Pool:
    """One PooledDB plus the semaphore that bounds how long a caller waits for it."""

    def __init__(
        self,
        name: str,
        size: int,
        timeout: float,
        setsession: list[str] | None = None,
        ping: int = 0,
        metrics: Metrics | None = None,
        label: str | None = None,
        retry_seconds: float = 0.0,
        **connect: Any,
    ):
        self.name = name
        self.connect = connect  # what a health check connects with, beside the pool
        self.retry_seconds = retry_seconds  # > 0: fail fast this long after a refused connection
        self.down_until = 0.0  # while in the future, connections are refused without trying
        self._probing = threading.Lock()
        self.metrics = metrics or Metrics()  # unexported unless the app serves it
        self.label = label or name
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self.in_use = 0  # connections checked out now (read by metrics and the admin endpoints)
        self.served = 0  # connections handed out since start
        self._pool = PooledDB(
            creator=pymysql,
            maxconnections=size,
            maxcached=size,
            blocking=True,
            setsession=setsession,
            reset=False,  # connections run in autocommit and write() ends its own transactions: no ROLLBACK per use
            ping=ping,  # 0: reads reconnect and retry by themselves (SteadyDB); 1: check at checkout
            **connect,
        )

    @contextmanager
    def connection(self) -> Iterator[pymysql.Connection]:
        started = time.perf_counter()
        acquired = self._slots.acquire(timeout=self.timeout)
        self.metrics.pool_wait.labels(self.label).observe(time.perf_counter() - started)
        if not acquired:
            self.metrics.pool_exhausted.labels(self.label).inc()
            raise DatabaseUnavailable(
                f"No {self.name} database connection free within {self.timeout}s", code="POOL_EXHAUSTED", retry_after=1
            )
        self.in_use += 1
        self.served += 1
        active = self.metrics.connections_active.labels(self.label)
        active.inc()
        probe = False
        try:
            if self.down_until:
                probe = time.monotonic() >= self.down_until and self._probing.acquire(blocking=False)
                if not probe:
                    raise DatabaseUnavailable(f"The {self.name} database is unavailable", retry_after=1)
            conn = None
            try:
                conn = self._pool.connection()
                if probe:  # DBUtils may hand out a dead connection: ask the server, reconnecting if need be
                    conn.ping(True)
            except pymysql.MySQLError as exc:
                if conn is not None:
                    conn.close()
                log.warning("cannot connect to %s database: %s", self.name, exc)
                self.metrics.connect_failures.labels(self.label).inc()
                if self.retry_seconds:
                    self.down_until = time.monotonic() + self.retry_seconds
                raise DatabaseUnavailable() from exc
            if self.down_until:
                log.info("%s database is back", self.name)
                self.down_until = 0.0
            try:
                yield conn
            except pymysql.err.InterfaceError as exc:  # PyMySQL's "this connection is already closed"
                raise self._lost(exc) from exc
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in _CONNECTION_LOST:
                    raise self._lost(exc) from exc
                raise
            finally:
                conn.close()  # back to the pool
        finally:
            if probe:
                self._probing.release()
            self.in_use -= 1
            active.dec()
            self._slots.release()

    def _lost(self, exc: Exception) -> DatabaseUnavailable:
        """A connection that broke in use. The checkout's ping had found it alive or reconnected it, so the
        server has just gone: it is answered as down at once too, until a probe finds it back."""
        log.warning("lost the %s database: %s", self.name, exc)
        self.metrics.connect_failures.labels(self.label).inc()
        if self.retry_seconds:
            self.down_until = time.monotonic() + self.retry_seconds
        return DatabaseUnavailable()

    def close(self) -> None:
        self._pool.close()


def _status_value(row: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in row:
            return row[name]
    return None


class Replica:
    def __init__(self, pool: Pool, interval: float, max_lag: float):
        self.pool = pool
        self.interval = interval
        self.max_lag = max_lag
        self.healthy = True
        self.detached = False  # applying what it has, cut off from the primary: a reader of last resort
        self.lag: float | None = None
        self.reason: str | None = None
        self._next_check = 0.0
        self.checked = False  # until the first check, a read checks first (later checks run in the background)
        self._checking = threading.Lock()

    def mark_down(self, reason: str, detached: bool = False) -> None:
        if self.healthy:
            log.warning("replica %s taken out: %s", self.pool.name, reason)
        self.healthy, self.reason, self.detached = False, reason, detached
        self._next_check = time.monotonic() + self.interval

    def check_if_due(self) -> None:
        if time.monotonic() < self._next_check or not self._checking.acquire(blocking=False):
            return
        try:
            self._check()
        finally:
            self._next_check = time.monotonic() + self.interval
            self.checked = True
            self._checking.release()

    def _check(self) -> None:
        try:
            with self.pool.connection() as conn, conn.cursor() as cur:
                try:
                    cur.execute("SHOW REPLICA STATUS")
                except pymysql.err.ProgrammingError:
                    cur.execute("SHOW SLAVE STATUS")  # MySQL before 8.0.22
                status = cur.fetchone()
        except (DatabaseUnavailable, pymysql.MySQLError) as exc:
            self.mark_down(f"unreachable: {exc}")
            return
        if status is None:  # not replicating from anyone: as fresh as it gets
            lag, io, sql = 0, "Yes", "Yes"
        else:
            lag = _status_value(status, "Seconds_Behind_Master", "Seconds_Behind_Source")
            io = _status_value(status, "Slave_IO_Running", "Replica_IO_Running")
            sql = _status_value(status, "Slave_SQL_Running", "Replica_SQL_Running")
        self.lag = None if lag is None else float(lag)
        if sql == "Yes" and io != "Yes":
            self.mark_down(f"cut off from the primary (IO {io}): serves reads only while the primary is down", True)
        elif io != "Yes" or sql != "Yes" or self.lag is None:
            self.mark_down(f"replication not running (IO {io}, SQL {sql})")
        elif self.lag > self.max_lag:
            self.mark_down(f"lagging {self.lag:.0f}s > {self.max_lag:.0f}s")
        else:
            if not self.healthy:
                log.info("replica %s back in (lag %.0fs)", self.pool.name, self.lag)
            self.healthy, self.reason, self.detached = True, None, False


class Database:
    def __init__(self, settings: Settings, store=None, metrics: Metrics | None = None):
        metrics = self.metrics = metrics or Metrics()
        self.settings = settings
        self.store = store  # RedisStore, for read-your-writes across requests
        size, timeout = settings.db_pool_size, settings.db_pool_timeout
        # Galera: a node's first answer may wait for the cluster's apply queue (read your own writes after a
        # failover); the variable exists on MariaDB and Percona XtraDB Cluster, which is what a list is for
        init = "SET time_zone = '+00:00'" + (", wsrep_sync_wait = 1" if len(settings.db_nodes) > 1 else "")
        self.nodes = Nodes(
            [
                Pool(
                    "primary" if len(settings.db_nodes) == 1 else f"node {host}:{port}",
                    size,
                    timeout,
                    ping=1,
                    metrics=metrics,
                    label="primary" if len(settings.db_nodes) == 1 else f"node:{host}:{port}",
                    retry_seconds=settings.db_retry_seconds,
                    **{**connect_kwargs(settings, host, port, settings.db_database), "init_command": init},
                )
                for host, port in settings.db_nodes
            ],
            settings.db_failover_wait,
        )
        self.replicas = [
            Replica(
                Pool(
                    f"replica {h}:{p}",
                    size,
                    timeout,
                    metrics=metrics,
                    label=f"replica:{h}:{p}",
                    retry_seconds=settings.db_retry_seconds,
                    **connect_kwargs(
                        settings,
                        h,
                        p,
                        settings.db_database,
                        settings.db_read_username or None,
                        settings.db_read_password,
                    ),
                ),
                settings.db_replica_check_interval,
                settings.db_replica_max_lag,
            )
            for h, p in settings.db_read_hosts
        ]
        self._turn = itertools.count()
        self._deployment: str | None = None
        self.flavor: str | None = None  # "mariadb" or "mysql", learnt from the first write
        self._watcher: int | None = None  # pid whose replica-check thread runs (a forked worker starts its own)
        self._closed = threading.Event()

    @property
    def primary(self) -> Pool:
        """The pool of the server writes go to (with a Galera list: the writing node now)."""
        return self.nodes.writer

    # ---- writes ------------------------------------------------------------------------
    @contextmanager
    def write(self) -> Iterator[DictCursor]:
        """A cursor in a transaction on the primary: committed on success, rolled back on error.
        :raise WriteInterrupted: the server went away once the transaction had begun (it may have committed)."""
        scope = context.current()
        if scope is not None:
            scope.wrote = True
        self._watch_servers()
        began, tries = False, len(self.nodes.nodes)
        while True:
            try:
                with self._transaction(scope) as cursor:
                    began = True
                    yield cursor
                return
            except DatabaseUnavailable as exc:
                if exc.code == "POOL_EXHAUSTED" or isinstance(exc, WriteInterrupted):
                    raise
                if began:
                    raise WriteInterrupted(retry_after=2) from exc
                tries -= 1
                if tries <= 0:  # a dead pooled connection failed BEGIN: nothing ran, the next node may take it
                    raise

    @contextmanager
    def _transaction(self, scope: context.Scope | None) -> Iterator[DictCursor]:
        with self.nodes.connection() as conn:
            conn.begin()
            cursor = conn.cursor()
            try:
                yield cursor
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()
            if self.replicas and scope is not None:
                scope.position = self._position(conn) or scope.position
                self.publish(scope)

    def write_retrying(
        self,
        work: Callable[[DictCursor], None],
        attempts: int = 3,
        *,
        idempotent: bool = False,
        landed: tuple[str, Any] | None = None,
    ) -> None:
        """`work` in a write transaction, run again (after a short pause) when MySQL picked it as a deadlock
        victim or its lock wait timed out: batched upserts from several workers, or a Galera certification
        conflict, can collide.

        With a Galera list, a write the dying node interrupted (it may have committed) is run once more on
        the next node where that is safe: `idempotent` work (absolute updates, batches that carry their ids),
        or work whose `landed` query (SQL, params) finds nothing of it yet. Otherwise the caller gets
        `WriteInterrupted`: a 503 with Retry-After, never a silent loss or a write applied twice."""
        failed_over = False
        attempt = 0
        while True:
            try:
                with self.write() as cur:
                    if failed_over and landed is not None and cur.execute(*landed):
                        return  # the interrupted attempt had committed, and the cluster has it
                    work(cur)
                return
            except WriteInterrupted:
                if failed_over or not self.nodes.clustered or not (idempotent or landed):
                    raise
                failed_over = True
                self.metrics.write_failovers.inc()
                log.warning("a write interrupted by its node's loss is retried on the next node")
            except pymysql.err.OperationalError as exc:
                attempt += 1
                if not exc.args or exc.args[0] not in _RETRYABLE:
                    raise
                if attempt >= attempts:  # rolled back, nothing applied: the client may send it again
                    log.warning("a write gave up after MySQL error %s: %s", exc.args[0], exc.args[-1])
                    raise DatabaseUnavailable(
                        "The metadata database could not take this write now (lock wait timeout or conflict);"
                        " nothing was applied, retry it",
                        retry_after=1,
                    ) from exc
                log.info("write retried after MySQL error %s", exc.args[0])
                time.sleep(0.02 * attempt)

    def _position(self, conn) -> str | None:
        with conn.cursor() as cur:
            if self.flavor is None:
                cur.execute("SELECT VERSION() AS v")
                self.flavor = "mariadb" if "mariadb" in cur.fetchone()["v"].lower() else "mysql"
            cur.execute(
                "SELECT @@last_gtid AS pos" if self.flavor == "mariadb" else "SELECT @@global.gtid_executed AS pos"
            )
            return (cur.fetchone() or {}).get("pos")

    def publish(self, scope: context.Scope) -> None:
        """Let the scope's subject's next requests wait for its last write: at the write when the subject is
        known, else when the scope ends (register and login learn theirs after writing)."""
        position, subject = scope.position, scope.subject
        if position and subject and self.store is not None:
            self.store.safe(lambda r: r.set(self.store.key(f"ryw:{subject}"), position, ex=RYW_TTL), None)
            scope.position = None

    def execute(
        self, sql: str, params: Any = None, *, idempotent: bool = False, landed: tuple[str, Any] | None = None
    ) -> int:
        """Run one write statement; returns the affected row count. `idempotent` and `landed`: may it be run
        again on the next Galera node when its node dies under it (see `write_retrying`)."""
        counts: list[int] = []
        self.write_retrying(
            lambda cur: counts.append(cur.execute(sql, params)), 1, idempotent=idempotent, landed=landed
        )
        return counts[-1] if counts else 1  # none: an interrupted attempt had landed

    # ---- reads ---------------------------------------------------------------------------
    def _replica(self) -> Replica | None:
        scope = context.current()
        if not self.replicas or (scope is not None and scope.wrote):
            return None
        self._watch_servers()
        start = next(self._turn)
        for i in range(len(self.replicas)):
            replica = self.replicas[(start + i) % len(self.replicas)]
            if not replica.checked:
                replica.check_if_due()
            if replica.healthy:
                return replica
        return None

    def _wait_position(self) -> str | None:
        """The GTID position this request's subject must see, if they wrote in the last few seconds."""
        scope = context.current()
        if scope is None or not scope.subject or self.store is None:
            return None
        subject = scope.subject
        if scope.awaited is None or scope.awaited[0] != subject:
            scope.awaited = (subject, self.store.safe(lambda r: r.get(self.store.key(f"ryw:{subject}")), None))
        return scope.awaited[1]

    def _caught_up(self, conn) -> bool:
        """Whether this replica connection has applied the subject's last write (waiting briefly for it)."""
        position = self._wait_position()
        if not position:
            return True
        wait = (
            "SELECT MASTER_GTID_WAIT(%s, %s) AS r"
            if self.flavor != "mysql"
            else "SELECT WAIT_FOR_EXECUTED_GTID_SET(%s, %s) AS r"
        )
        with conn.cursor() as cur:
            cur.execute(wait, (position, GTID_WAIT_SECONDS))
            return (cur.fetchone() or {}).get("r") == 0

    @contextmanager
    def _reader(self) -> Iterator[tuple[DictCursor, Replica | None]]:
        """A read cursor and the replica it is on (None: the primary)."""
        self._watch_servers()
        replica = self._replica()
        with ExitStack() as stack:
            chosen, conn = None, None
            if replica is not None:
                conn = self._on_replica(stack, replica)
                chosen = replica if conn is not None else None
            if conn is None:
                try:
                    conn = stack.enter_context(self.nodes.connection())
                except DatabaseUnavailable as exc:
                    conn, chosen = self._stand_in(stack, exc)
            cursor = stack.enter_context(conn.cursor())
            yield cursor, chosen

    def _on_replica(self, stack: ExitStack, replica: Replica) -> pymysql.Connection | None:
        """A connection on `replica`, entered on `stack`, once it has applied this reader's last write; None when
        it has not (in time) or failed (then it is taken out).
        :raise DatabaseUnavailable: its pool is exhausted."""
        attempt = ExitStack()
        try:
            conn = attempt.enter_context(replica.pool.connection())
            if self._caught_up(conn):
                stack.push(attempt.pop_all())
                return conn
        except DatabaseUnavailable as exc:
            if exc.code == "POOL_EXHAUSTED":
                raise
            replica.mark_down(str(exc.__cause__ or exc))
        except pymysql.MySQLError as exc:  # the GTID wait failed on a dead connection
            replica.mark_down(str(exc))
        finally:
            attempt.close()
        return None

    def _stand_in(self, stack: ExitStack, unavailable: DatabaseUnavailable) -> tuple[pymysql.Connection, Replica]:
        """A replica connection for a read the primary cannot serve: a healthy replica, or one cut off from
        the primary that still applies what it received, once it has applied this reader's own last write.
        :raise DatabaseUnavailable: `unavailable` (why the primary could not) when no replica can."""
        if unavailable.code == "POOL_EXHAUSTED":
            raise unavailable
        self._watch_servers()
        for replica in self.replicas:
            if not replica.checked:
                replica.check_if_due()
            if (replica.healthy or replica.detached) and (conn := self._on_replica(stack, replica)) is not None:
                return conn, replica
        raise unavailable

    @contextmanager
    def read(self) -> Iterator[DictCursor]:
        with self._reader() as (cursor, _):
            yield cursor

    def _query(self, sql: str, params: Any, fetch) -> Any:
        """Run a read; a replica that fails mid-query is taken out and the read retried on the primary, and a
        primary that fails mid-query, on a replica standing in for it."""
        replica = None
        try:
            with self._reader() as (cursor, replica):
                cursor.execute(sql, params)
                return fetch(cursor), replica
        except DatabaseUnavailable as exc:
            if exc.code == "POOL_EXHAUSTED":
                raise
            if replica is not None:
                replica.mark_down(str(exc.__cause__ or exc))
        return self._query_primary(sql, params, fetch)  # or a replica standing in for it

    def fetch_one(self, sql: str, params: Any = None, primary: bool = False) -> dict[str, Any] | None:
        """One row; a miss on a replica is asked again on the primary (it may be replication lag).

        `primary=True` for reads that fill a cache, whose staleness would outlive the replica's lag.
        """
        if primary:
            return self._query_primary(sql, params, lambda c: c.fetchone())[0]
        row, replica = self._query(sql, params, lambda c: c.fetchone())
        if row is None and replica is not None:
            row, _ = self._query_primary(sql, params, lambda c: c.fetchone())
        return row

    def fetch_aggregate(self, sql: str, params: Any = None) -> dict[str, Any]:
        """The one row an aggregate without GROUP BY (COUNT, SUM, AVG...) always returns."""
        row, _ = self._query(sql, params, lambda c: c.fetchone())
        if row is None:
            raise RuntimeError(f"an aggregate returned no row: {sql[:80]}")
        return row

    def _query_primary(self, sql: str, params: Any, fetch) -> Any:
        """A read on the primary; while it is unavailable, on a replica that can stand in for it."""
        try:
            with self.nodes.connection() as conn, conn.cursor() as cursor:
                cursor.execute(sql, params)
                return fetch(cursor), None
        except DatabaseUnavailable as exc:
            with ExitStack() as stack:
                conn, replica = self._stand_in(stack, exc)
                with conn.cursor() as cursor:
                    cursor.execute(sql, params)
                    return fetch(cursor), replica

    def fetch_all(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        rows, _ = self._query(sql, params, lambda c: list(c.fetchall()))
        return rows

    def deployment_id(self) -> str:
        """The id migration 0006 gave this metadata database, read once per process (a replica will do): the
        Redis queues of what belongs in this database carry it (`altus4.write_behind`).
        :raise DatabaseUnavailable: no metadata server answers, or the schema predates the migration."""
        if self._deployment is None:
            try:
                row = self.fetch_one("SELECT id FROM deployment WHERE singleton = 1")
            except pymysql.err.ProgrammingError:  # 1146: no such table
                row = None
            if row is None:
                raise DatabaseUnavailable("The metadata database has no deployment id: run `altus4 migrate`")
            self._deployment = str(row["id"])
        return self._deployment

    def _watch_servers(self) -> None:
        """Check every replica, and every node of a Galera list, each DB_REPLICA_CHECK_INTERVAL in a background
        thread (a greenlet under gevent), started by the first use of each process: a request never waits for
        a check, and a worker that serves no reads still knows at once when a server is back or gone."""
        if self._watcher == os.getpid() or self._closed.is_set() or not (self.replicas or self.nodes.clustered):
            return
        self._watcher = os.getpid()
        interval = self.settings.db_replica_check_interval

        def run() -> None:
            while not self._closed.wait(interval / 2):
                for replica in self.replicas:
                    try:
                        replica.check_if_due()
                    except Exception:
                        log.exception("checking replica %s failed", replica.pool.name)
                try:
                    self.nodes.check_all()
                except Exception:
                    log.exception("checking the metadata nodes failed")

        threading.Thread(target=run, name="altus4-server-checks", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        self.nodes.close()
        for replica in self.replicas:
            replica.pool.close()
