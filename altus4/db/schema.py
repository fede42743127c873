"""Schema discovery for connected databases: tables, columns, FULLTEXT indexes, row estimates.

The discovered schema is the whitelist every user-supplied identifier is
checked against before it is quoted into SQL. It is cached in Redis under the
connection's schema version (bumped when the connection changes) and in
process for a short while, so the search path does not query
information_schema per request.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pymysql

from altus4.redis_store import RedisStore

TEXT_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}
LOCAL_TTL = 30.0


@dataclass(frozen=True)
class FullTextIndex:
    name: str
    columns: tuple[str, ...]
    cardinality: int | None = None


@dataclass
class TableSchema:
    name: str
    engine: str | None
    row_estimate: int
    columns: dict[str, str]  # name -> data type, in ordinal order
    primary_key: tuple[str, ...] = ()
    fulltext_indexes: list[FullTextIndex] = field(default_factory=list)
    column_types: dict[str, str] = field(default_factory=dict)  # name -> full type: enum('a','b'), int unsigned

    @property
    def text_columns(self) -> list[str]:
        return [name for name, kind in self.columns.items() if kind in TEXT_TYPES]

    def is_fulltext_indexed(self, column: str) -> bool:
        return any(column in index.columns for index in self.fulltext_indexes)


@dataclass
class DatabaseSchema:
    database: str
    tables: dict[str, TableSchema]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> DatabaseSchema:
        raw = json.loads(text)
        tables = {}
        for name, t in raw["tables"].items():
            indexes = [
                FullTextIndex(i["name"], tuple(i["columns"]), i.get("cardinality")) for i in t["fulltext_indexes"]
            ]
            tables[name] = TableSchema(
                t["name"],
                t["engine"],
                t["row_estimate"],
                t["columns"],
                tuple(t["primary_key"]),
                indexes,
                t.get("column_types", {}),  # absent from entries cached before filters
            )
        return cls(raw["database"], tables)


def discover(conn: pymysql.Connection, database: str) -> DatabaseSchema:
    with conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME AS table_name, ENGINE AS engine, TABLE_ROWS AS table_rows"
            " FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'"
            " ORDER BY TABLE_NAME",
            (database,),
        )
        tables = {
            r["table_name"]: TableSchema(r["table_name"], r["engine"], int(r["table_rows"] or 0), {})
            for r in cur.fetchall()
        }
        cur.execute(
            "SELECT TABLE_NAME AS table_name, COLUMN_NAME AS column_name, DATA_TYPE AS data_type,"
            " COLUMN_TYPE AS column_type FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s"
            " ORDER BY TABLE_NAME, ORDINAL_POSITION",
            (database,),
        )
        for r in cur.fetchall():
            if r["table_name"] in tables:
                found = tables[r["table_name"]]
                found.columns[r["column_name"]] = r["data_type"].lower()
                full = r["column_type"]  # bytes on some servers (a LONGTEXT in information_schema)
                found.column_types[r["column_name"]] = full.decode() if isinstance(full, bytes) else full
        cur.execute(
            "SELECT TABLE_NAME AS table_name, INDEX_NAME AS index_name, COLUMN_NAME AS column_name,"
            " INDEX_TYPE AS index_type, CARDINALITY AS cardinality FROM information_schema.STATISTICS"
            " WHERE TABLE_SCHEMA = %s AND (INDEX_TYPE = 'FULLTEXT' OR INDEX_NAME = 'PRIMARY')"
            " ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX",
            (database,),
        )
        grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in cur.fetchall():
            grouped.setdefault((r["table_name"], r["index_name"]), []).append(r)
    for (table, index), rows in grouped.items():
        if table not in tables:
            continue
        columns = tuple(r["column_name"] for r in rows)
        if index == "PRIMARY":
            tables[table].primary_key = columns
        else:
            card = rows[0]["cardinality"]
            cardinality = int(card) if card is not None else None
            tables[table].fulltext_indexes.append(FullTextIndex(index, columns, cardinality))
    return DatabaseSchema(database, tables)


class SchemaCache:
    """Redis-backed, with a short in-process layer; keyed by connection id and schema version."""

    def __init__(self, store: RedisStore, ttl: int):
        self.store = store
        self.ttl = ttl
        self._local: dict[str, tuple[float, DatabaseSchema]] = {}
        self._lock = threading.Lock()

    def key(self, connection_id: str, version: int) -> str:
        return self.store.key(f"schema:{connection_id}:{version}")

    def peek(self, connection_id: str, version: int) -> DatabaseSchema | None:
        """The schema if this process holds it (no I/O)."""
        hit = self._local.get(self.key(connection_id, version))
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def get(self, connection_id: str, version: int) -> DatabaseSchema | None:
        local = self.peek(connection_id, version)
        if local is not None:
            return local
        key = self.key(connection_id, version)
        text = self.store.safe(lambda r: r.get(key), None, read=True)
        self.store.count_cache("schema", text is not None)
        if text is None:
            return None
        schema = DatabaseSchema.from_json(text)
        self._remember(key, schema)
        return schema

    def put(self, connection_id: str, version: int, schema: DatabaseSchema) -> None:
        key = self.key(connection_id, version)
        self._remember(key, schema)
        if self.ttl:
            self.store.safe(lambda r: r.set(key, schema.to_json(), ex=self.ttl), None)

    def forget(self, connection_id: str, version: int) -> None:
        key = self.key(connection_id, version)
        with self._lock:
            self._local.pop(key, None)
        self.store.safe(lambda r: r.delete(key), 0)

    def _remember(self, key: str, schema: DatabaseSchema) -> None:
        with self._lock:
            if len(self._local) > 1000:
                self._local.clear()
            self._local[key] = (time.monotonic() + LOCAL_TTL, schema)
