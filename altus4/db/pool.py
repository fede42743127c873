"""The metadata database: DBUtils pools over PyMySQL, with the caller choosing read or write.

`db.write()` always uses the primary. `db.read()` uses a replica when one is
configured, except inside a request that has already written (read-your-writes).
A bounded semaphore caps the wait for a connection: an exhausted pool answers
503 with Retry-After instead of queueing requests forever.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
from dbutils.pooled_db import PooledDB
from flask import g, has_request_context
from pymysql.cursors import DictCursor

from altus4.config import Settings
from altus4.errors import DatabaseUnavailable

log = logging.getLogger("altus4.db")

# client errors that mean "the server went away", not "your SQL is wrong"
_CONNECTION_LOST = {1040, 1053, 2003, 2006, 2013, 2055}


def connect_kwargs(settings: Settings, host: str, port: int, database: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        host=host, port=port, user=settings.db_username, password=settings.db_password,
        charset="utf8mb4", cursorclass=DictCursor, autocommit=True,
        connect_timeout=settings.db_connect_timeout, read_timeout=30, write_timeout=30,
        init_command="SET time_zone = '+00:00'",
    )
    if database:
        kwargs["database"] = database
    return kwargs


class Pool:
    """One PooledDB plus the semaphore that bounds how long a caller waits for it."""

    def __init__(self, name: str, size: int, timeout: float, setsession: list[str] | None = None, **connect: Any):
        self.name = name
        self.size = size
        self.timeout = timeout
        self._slots = threading.BoundedSemaphore(size)
        self.in_use = 0  # connections checked out now (read by metrics and the admin endpoints)
        self._pool = PooledDB(
            creator=pymysql, maxconnections=size, maxcached=size, blocking=True, setsession=setsession,
            ping=0,  # SteadyDB reconnects on failure; a ping per checkout would double the round trips
            **connect,
        )

    @contextmanager
    def connection(self) -> Iterator[pymysql.Connection]:
        if not self._slots.acquire(timeout=self.timeout):
            raise DatabaseUnavailable(f"No {self.name} database connection free within {self.timeout}s",
                                      code="POOL_EXHAUSTED", retry_after=1)
        self.in_use += 1
        try:
            try:
                conn = self._pool.connection()
            except pymysql.MySQLError as exc:
                log.warning("cannot connect to %s database: %s", self.name, exc)
                raise DatabaseUnavailable() from exc
            try:
                yield conn
            except pymysql.err.OperationalError as exc:
                if exc.args and exc.args[0] in _CONNECTION_LOST:
                    log.warning("lost the %s database: %s", self.name, exc)
                    raise DatabaseUnavailable() from exc
                raise
            finally:
                conn.close()  # back to the pool
        finally:
            self.in_use -= 1
            self._slots.release()

    def close(self) -> None:
        self._pool.close()


class Database:
    def __init__(self, settings: Settings):
        self.settings = settings
        size, timeout = settings.db_pool_size, settings.db_pool_timeout
        self.primary = Pool("primary", size, timeout,
                            **connect_kwargs(settings, settings.db_host, settings.db_port, settings.db_database))
        self.replicas = [Pool(f"replica {h}:{p}", size, timeout, **connect_kwargs(settings, h, p, settings.db_database))
                         for h, p in settings.db_read_hosts]
        self._next_replica = itertools.cycle(self.replicas) if self.replicas else None

    @contextmanager
    def write(self) -> Iterator[DictCursor]:
        """A cursor in a transaction on the primary: committed on success, rolled back on error."""
        if has_request_context():
            g.db_wrote = True
        with self.primary.connection() as conn:
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

    @contextmanager
    def read(self) -> Iterator[DictCursor]:
        pool = self.primary
        if self._next_replica is not None and not (has_request_context() and g.get("db_wrote")):
            pool = next(self._next_replica)
        with pool.connection() as conn:
            cursor = conn.cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    def fetch_one(self, sql: str, params: Any = None) -> dict[str, Any] | None:
        with self.read() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def fetch_all(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
        with self.read() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())

    def execute(self, sql: str, params: Any = None) -> int:
        """Run one write statement; returns the affected row count."""
        with self.write() as cur:
            return cur.execute(sql, params)

    def close(self) -> None:
        for pool in (self.primary, *self.replicas):
            pool.close()
