"""Connected databases: CRUD for their owners, credentials sealed at rest, reachability and schema.

A password is encrypted the moment it arrives and decrypted only to open a
connection; no read path returns it. A connection that cannot be reached is
still saved, with its status and the reason.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pymysql

from altus4.config import Settings
from altus4.db import targets
from altus4.db.host_policy import check_host_allowed
from altus4.db.pool import Database
from altus4.db.schema import DatabaseSchema, SchemaCache, discover
from altus4.db.sql import set_clause
from altus4.errors import NotFound
from altus4.redis_store import RedisStore
from altus4.security.secrets_box import DecryptionError, SecretBox
from altus4.times import iso, utcnow

_COLUMNS = (
    "id, user_id, name, host, port, database_name, username, password_encrypted, ssl_enabled, read_replicas,"
    " is_active,"
    " connection_status, last_error, last_tested, schema_version, created_at, updated_at"
)
# fields that change where or as whom we connect: changing one re-tests and invalidates caches
_ENDPOINT_FIELDS = {"host", "port", "database", "username", "password", "ssl", "readReplicas"}


CONNECTIONS_CACHE_TTL = 300
# the columns a search uses (spec(), cache keys, names in results): no timestamps, no plaintext anything
_SEARCH_FIELDS = (
    "id",
    "user_id",
    "name",
    "host",
    "port",
    "database_name",
    "username",
    "password_encrypted",
    "ssl_enabled",
    "read_replicas",
    "schema_version",
)


def parse_replicas(stored: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in filter(None, stored.split(",")):
        host, _, port = item.rpartition(":")
        out.append((host, int(port)))
    return tuple(out)


class ConnectionService:
    def __init__(self, db: Database, box: SecretBox, schemas: SchemaCache, settings: Settings, store: RedisStore):
        self.db = db
        self.store = store
        self.box = box
        self.schemas = schemas
        self.settings = settings
        self.listeners: list = []  # callables(connection_id) told when a connection changes or goes

    def _check_host(self, host: str) -> None:
        """:raise HostNotAllowed: outside ALLOWED_DATABASE_HOSTS, or one of this service's own servers."""
        check_host_allowed(host, self.settings)

    def _replicas(self, replicas: list[str] | None) -> str:
        """Validated `host:port,host:port` for storage; every host passes the allowlist."""
        for item in replicas or []:
            self._check_host(item.rpartition(":")[0])
        return ",".join(replicas or [])

    def create(self, user_id: str, data: dict[str, Any]) -> dict[str, Any]:
        self._check_host(data["host"])
        replicas = self._replicas(data.get("readReplicas"))
        conn_id = str(uuid.uuid4())
        sealed = self.box.encrypt(data.get("password") or "", conn_id)
        self.db.execute(
            "INSERT INTO database_connections (id, user_id, name, host, port, database_name, username,"
            " password_encrypted, ssl_enabled, read_replicas) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                conn_id,
                user_id,
                data["name"],
                data["host"],
                data["port"],
                data["database"],
                data["username"],
                sealed,
                bool(data.get("ssl")),
                replicas,
            ),
            landed=("SELECT 1 FROM database_connections WHERE id = %s", (conn_id,)),
        )
        self._forget_user(user_id)
        self.test(user_id, conn_id)
        return self.get(user_id, conn_id)

    def owned_by(self, user_id: str) -> list[dict[str, Any]]:
        return self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM database_connections WHERE user_id = %s ORDER BY created_at", (user_id,)
        )

    def get(self, user_id: str, conn_id: str) -> dict[str, Any]:
        """:raise NotFound: no such connection for this user (another user's looks the same)."""
        row = self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM database_connections WHERE id = %s AND user_id = %s", (conn_id, user_id)
        )
        if row is None:
            raise NotFound("Database connection not found")
        return row

    def list_key(self, user_id: str) -> str:
        """The Redis key of the user's cached list of active connections."""
        return self.store.key(f"conns:{user_id}")

    def _active_rows(
        self, user_id: str, also: str | None = None, prefetched: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], Any]:
        """What a search needs of the user's active connections, and the value of Redis key `also` read in the
        same round trip (the search cache), unless both were `prefetched`. The list is cached in Redis (the
        search hot path reads it on every request) and dropped whenever one of the user's connections is
        created, changed or deleted."""
        key = self.list_key(user_id)

        def read(r) -> list:
            pipe = r.pipeline(transaction=False)
            pipe.get(key)
            if also is not None:
                pipe.get(also)
            return pipe.execute()

        wanted = [key] if also is None else [key, also]
        if prefetched and all(k in prefetched for k in wanted):
            cached, *other = [prefetched[k] for k in wanted]
        else:
            cached, *other = self.store.safe(read, [None, None])
        value = other[0] if other else None
        if cached is not None:
            return orjson.loads(cached), value  # per search: orjson's parse is a fraction of json's
        rows = [{k: r[k] for k in _SEARCH_FIELDS} for r in self.owned_by(user_id) if r["is_active"]]
        self.store.safe(lambda r: r.set(key, json.dumps(rows), ex=CONNECTIONS_CACHE_TTL), None)
        return rows, value

    def _forget_user(self, user_id: str) -> None:
        self.store.safe(lambda r: r.delete(self.list_key(user_id)), 0)

    def active_for(self, user_id: str, ids: list[str] | None) -> list[dict[str, Any]]:
        """The user's active connections, all of them or the named ones (unknown ids → 404)."""
        return self.active_and_get(user_id, ids, None)[0]

    def active_and_get(
        self, user_id: str, ids: list[str] | None, also: str | None, prefetched: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], Any]:
        """`active_for`, plus the value of Redis key `also` fetched in the same round trip (or `prefetched`)."""
        rows, value = self._active_rows(user_id, also, prefetched)
        if ids is None:
            return rows, value
        by_id = {r["id"]: r for r in rows}
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise NotFound("Database connection not found", details={"databases": missing})
        return [by_id[i] for i in dict.fromkeys(ids)], value

    def update(self, user_id: str, conn_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        row = self.get(user_id, conn_id)
        if "host" in changes:
            self._check_host(changes["host"])
        columns = {
            "name": "name",
            "host": "host",
            "port": "port",
            "database": "database_name",
            "username": "username",
            "ssl": "ssl_enabled",
            "isActive": "is_active",
        }
        values = {columns[k]: v for k, v in changes.items() if k in columns}
        if "readReplicas" in changes:
            values["read_replicas"] = self._replicas(changes["readReplicas"])
        if "password" in changes:
            values["password_encrypted"] = self.box.encrypt(changes["password"] or "", conn_id)
        if values:
            # any change gets a new version: cached schema, cached results and the pool all key on it
            assignments, params = set_clause(values)
            self.db.execute(
                f"UPDATE database_connections SET {assignments}, schema_version = schema_version + 1"
                " WHERE id = %s AND user_id = %s",
                (*params, conn_id, user_id),
            )
            self._changed(row)
        if _ENDPOINT_FIELDS & changes.keys():
            self.test(user_id, conn_id)
        return self.get(user_id, conn_id)

    def delete(self, user_id: str, conn_id: str) -> None:
        row = self.get(user_id, conn_id)
        self.db.execute(
            "DELETE FROM database_connections WHERE id = %s AND user_id = %s", (conn_id, user_id), idempotent=True
        )
        self._changed(row)

    def _changed(self, row: dict[str, Any]) -> None:
        self._forget_user(row["user_id"])
        self.schemas.forget(row["id"], row["schema_version"])
        for listener in self.listeners:
            listener(row["id"])

    def spec(self, row: dict[str, Any]) -> targets.TargetSpec:
        try:
            password = self.box.decrypt(row["password_encrypted"], row["id"]) if row["password_encrypted"] else ""
        except DecryptionError:
            raise targets.TargetError("Stored credentials cannot be decrypted (was ENCRYPTION_KEY changed?)") from None
        return targets.TargetSpec(
            row["id"],
            row["host"],
            int(row["port"]),
            row["database_name"],
            row["username"],
            password,
            bool(row["ssl_enabled"]),
            parse_replicas(row["read_replicas"]),
        )

    def test(self, user_id: str, conn_id: str) -> dict[str, Any]:
        row = self.get(user_id, conn_id)
        started = time.perf_counter()
        try:
            targets.ping(self.spec(row), self.settings)
            status, error = "connected", None
        except targets.TargetError as exc:
            status, error = "failed", str(exc)[:512]
        tested = utcnow()
        self.db.execute(
            "UPDATE database_connections SET connection_status = %s, last_error = %s, last_tested = %s,"
            " updated_at = updated_at WHERE id = %s",
            (status, error, tested, conn_id),
            idempotent=True,
        )
        return {
            "connected": status == "connected",
            "message": "Connection successful" if error is None else error,
            "responseTime": round((time.perf_counter() - started) * 1000, 2),
            "timestamp": iso(tested),
        }

    def statuses(self, user_id: str) -> dict[str, bool]:
        rows = self.owned_by(user_id)
        if not rows:
            return {}
        with ThreadPoolExecutor(max_workers=min(8, len(rows))) as pool:
            results = pool.map(lambda r: self.test(user_id, r["id"])["connected"], rows)
            return dict(zip((r["id"] for r in rows), results, strict=False))

    def schema(self, user_id: str, conn_id: str, refresh: bool = False) -> DatabaseSchema:
        """:raise targets.TargetError: the database cannot be reached."""
        return self.schema_for(self.get(user_id, conn_id), refresh)

    def schema_for(self, row: dict[str, Any], refresh: bool = False) -> DatabaseSchema:
        if not refresh:
            cached = self.schemas.get(row["id"], row["schema_version"])
            if cached is not None:
                return cached
        spec = self.spec(row)
        conn = targets.connect(spec, self.settings)
        try:
            found = discover(conn, spec.database)
        except pymysql.MySQLError as exc:
            raise targets.TargetError(targets.describe_error(exc, spec)) from None
        finally:
            conn.close()
        self.schemas.put(row["id"], row["schema_version"], found)
        return found
