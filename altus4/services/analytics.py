"""Search analytics: every search recorded, per-user history, trends and performance.

Recording is off the request path: a search's entry goes through the
write-behind buffer (`altus4.write_behind`) to a Redis list, and a batch INSERT
moves the list to MySQL (whichever worker takes the flush lock). Every read
flushes first, so a search is in this worker's reads as soon as it has been
answered, and in every worker's within the buffer's interval. Without Redis,
entries are written directly.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from altus4.db.pool import Database
from altus4.db.sql import escape_like
from altus4.errors import DatabaseUnavailable
from altus4.redis_store import RedisStore
from altus4.times import iso
from altus4.write_behind import Sink, WriteBehind

log = logging.getLogger("altus4.analytics")

_PENDING = "analytics:{pending}"
_EPOCH = "analytics:{pending}:epoch"  # moved by each flush as it takes the queue (`altus4.write_behind`)
_FLUSH_LOCK = "analytics:flush-lock"
FLUSH_INTERVAL = 5
BATCH = 500
# IGNORE: an entry already written (a flush taken over, a batch pushed again) is not written twice; entries for
# users that no longer exist are left out before (`_insert`), counted, not swallowed by IGNORE
_INSERT = (
    "INSERT IGNORE INTO search_analytics (id, user_id, api_key_id, query_text, search_mode, database_ids,"
    " categories, result_count, execution_time_ms, cache_hit, created_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


@dataclass(frozen=True)
class Scope:
    """Which of one user's searches an analytics view counts: a span of time (`start` inclusive, `end`
    exclusive, naive UTC), and optionally only one API key's or one database's."""

    user_id: str
    start: datetime | None = None
    end: datetime | None = None
    api_key_id: str | None = None
    database_id: str | None = None

    def where(self) -> tuple[str, tuple]:
        """The WHERE clause over `search_analytics` and its parameters (always the user's own rows)."""
        clauses: list[str] = ["user_id = %s"]
        params: list[object] = [self.user_id]
        for clause, value in (
            ("created_at >= %s", self.start),
            ("created_at < %s", self.end),
            ("api_key_id = %s", self.api_key_id),
            # database_ids is a JSON list of ids as text: LIKE works on MySQL 8 and MariaDB alike, and a row
            # that is not JSON cannot fail the query as JSON_CONTAINS would on MySQL
            ("database_ids LIKE %s", self.database_id and f'%"{escape_like(self.database_id)}"%'),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return " AND ".join(clauses), tuple(params)


def _row(entry: dict[str, Any]) -> tuple:
    return (
        entry["id"],
        entry["userId"],
        entry["apiKeyId"],
        entry["query"][:500],
        entry["mode"],
        json.dumps(entry["databases"]),
        json.dumps(entry.get("categories", []))[:1000],
        entry["results"],
        entry["ms"],
        entry["cacheHit"],
        datetime.fromtimestamp(entry["at"], UTC).replace(tzinfo=None),
    )


class AnalyticsService:
    def __init__(self, db: Database, store: RedisStore, write_behind: WriteBehind):
        self.db = db
        self.store = store
        self.write_behind = write_behind
        write_behind.register(
            "analytics",
            Sink(
                stage=lambda pipe, entries: pipe.rpush(write_behind.key(_PENDING), *(json.dumps(e) for e in entries)),
                write_direct=lambda entries: self._insert([_row(e) for e in entries]),
                flush=lambda: self.flush(settle=False),
                lock=_FLUSH_LOCK,
                lock_seconds=FLUSH_INTERVAL,
                epoch=_EPOCH,
            ),
        )

    def record(
        self,
        user_id: str,
        api_key_id: str | None,
        query: str,
        mode: str,
        database_ids: list[str],
        categories: list[str],
        result_count: int,
        execution_ms: float,
        cache_hit: bool,
    ) -> None:
        """Queue one search (buffered: see `altus4.write_behind`)."""
        self.write_behind.add(
            "analytics",
            {
                "id": str(uuid.uuid4()),
                "userId": user_id,
                "apiKeyId": api_key_id,
                "query": query,
                "mode": mode,
                "databases": database_ids,
                "categories": categories[:20],
                "results": result_count,
                "ms": round(execution_ms, 3),
                "cacheHit": cache_hit,
                "at": datetime.now(UTC).timestamp(),
            },
        )

    def flush(self, settle: bool = True) -> int:
        """Move the queued entries to MySQL (the whole queue, taken in one MULTI that also moves the epoch the
        write-behind buffers watch), in batches; returns how many were written. With `settle` (a reader),
        then wait for another process's flush still writing entries it took (`WriteBehind.settle`)."""
        try:
            taken = self.write_behind.take(_PENDING, _EPOCH)
        except (redis.RedisError, DatabaseUnavailable) as exc:
            log.warning("analytics flush skipped: %s", exc)
            return 0
        entries = taken.items
        for start in range(0, len(entries), BATCH):
            batch = entries[start : start + BATCH]
            try:
                self._insert([_row(json.loads(e)) for e in batch])
            except Exception as exc:
                self.write_behind.give_back(taken, entries[start:])  # readers read what is in MySQL
                if not isinstance(exc, DatabaseUnavailable):
                    raise
                log.warning("analytics flush postponed: %s", exc.message)
                return start
        self.write_behind.done(taken)
        if settle:
            self.write_behind.settle(_PENDING)
        return len(entries)

    def _insert(self, rows: list[tuple]) -> None:
        """Write the entries whose user exists (on the primary, in the same transaction); the others (a user
        deleted since) are counted as unapplied."""
        users = sorted({r[1] for r in rows})
        left_out = [0]

        def write(cur) -> None:
            # shared locks: a user deleted now waits for this batch (LOCK IN SHARE MODE: MySQL 8 and MariaDB)
            marks = ", ".join(["%s"] * len(users))
            cur.execute(f"SELECT id FROM users WHERE id IN ({marks}) LOCK IN SHARE MODE", users)
            existing = {r["id"] for r in cur.fetchall()}
            keep = [r for r in rows if r[1] in existing]
            left_out[0] = len(rows) - len(keep)
            if keep:
                cur.executemany(_INSERT, keep)

        if rows:
            self.db.write_retrying(write, idempotent=True)  # ids: a repeat changes nothing
            self.write_behind.unapplied("analytics", left_out[0], "their user no longer exists")

    def history(self, scope: Scope, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        self.flush()
        where, params = scope.where()
        rows = self.db.fetch_all(
            "SELECT id, query_text, search_mode, database_ids, result_count, execution_time_ms, cache_hit, created_at"
            f" FROM search_analytics WHERE {where} ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
            (*params, limit, offset),
        )
        total = self.db.fetch_aggregate(f"SELECT COUNT(*) AS n FROM search_analytics WHERE {where}", params)["n"]
        items = []
        for r in rows:
            databases = json.loads(r["database_ids"] or "[]")
            items.append(
                {
                    "id": r["id"],
                    "query": r["query_text"],
                    "searchMode": r["search_mode"],
                    # the original's single id: the first database searched (`databases` has them all)
                    "database": databases[0] if databases else "",
                    "databases": databases,
                    "resultCount": r["result_count"],
                    "executionTime": round(float(r["execution_time_ms"]), 2),
                    "cacheHit": bool(r["cache_hit"]),
                    "timestamp": iso(r["created_at"]),
                }
            )
        return items, int(total)

    def popular_prefix(self, user_id: str, prefix: str, limit: int) -> list[dict[str, Any]]:
        """The user's own past queries starting with `prefix`, most frequent first."""
        return self.db.fetch_all(
            "SELECT query_text, COUNT(*) AS n FROM search_analytics WHERE user_id = %s AND query_text LIKE %s"
            " GROUP BY query_text ORDER BY n DESC, query_text LIMIT %s",
            (user_id, escape_like(prefix) + "%", limit),
        )
