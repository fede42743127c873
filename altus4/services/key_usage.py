"""API-key usage counts: buffered per worker, queued in Redis, flushed to MySQL in batches.

Counting a request costs no MySQL write: `record_use` goes through the write-behind buffer
(`altus4.write_behind`), which batches into Redis per worker; whichever worker takes the flush lock moves
the queue to MySQL. Without Redis the counts go straight to MySQL.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import redis

from altus4.db.pool import Database
from altus4.errors import DatabaseUnavailable
from altus4.redis_store import RedisStore
from altus4.services.key_admission import ApiKeyPrincipal
from altus4.times import utcnow
from altus4.write_behind import Sink, WriteBehind

log = logging.getLogger("altus4.keys")

_PENDING = "usage:{pending}"  # hash tag keeps both on one Cluster slot for MULTI
_LAST_USED = "usage:{pending}:last"
_FLUSH_LOCK = "usage:flush-lock"
FLUSH_INTERVAL = 10


class UsageLedger:
    def __init__(self, db: Database, store: RedisStore, write_behind: WriteBehind):
        self.db = db
        self.store = store
        self.write_behind = write_behind
        write_behind.register(
            "usage",
            Sink(
                stage=_stage_usage,
                write_direct=self._write_direct,
                flush=self.flush,
                lock_key=_FLUSH_LOCK,
                lock_seconds=FLUSH_INTERVAL,
            ),
        )

    def record_use(self, principal: ApiKeyPrincipal, ip: str | None) -> None:
        """Count one request (buffered: see `altus4.write_behind`)."""
        self.write_behind.add("usage", (principal.id, utcnow().date().isoformat(), time.time(), ip))

    def _write_direct(self, uses: list[tuple[str, str, float, str | None]]) -> None:
        self._write_usage(*_tally(uses))

    def flush(self) -> int:
        """Move pending usage counters from Redis to MySQL (the worker that took the flush lock, or a usage
        read); returns how many keys were updated."""
        self.write_behind.push(flush=False)
        try:
            with self.store.guard() as client:
                pipe = client.pipeline(transaction=True)
                pipe.hgetall(_PENDING)
                pipe.delete(_PENDING)
                pipe.hgetall(_LAST_USED)
                pipe.delete(_LAST_USED)
                pending, _, last, _ = pipe.execute()
        except redis.RedisError as exc:
            log.warning("usage flush skipped: %s", exc)
            return 0
        counts = {}
        for field, count in pending.items():
            key_id, _, day = field.partition("|")
            counts[(key_id, day)] = int(count)
        last_used = {}
        for key_id, value in last.items():
            ts, _, ip = value.partition("|")
            last_used[key_id] = (float(ts), ip or None)
        try:
            self._write_usage(counts, last_used)
        except Exception as exc:
            self.store.safe(
                lambda r: _stage_tallies(r.pipeline(transaction=False), counts, last_used, keep_newer=True).execute(),
                None,
            )
            if isinstance(exc, DatabaseUnavailable):  # kept in Redis for the next flush
                log.warning("usage flush postponed: %s", exc.message)
                return 0
            log.exception("usage flush failed; %d counters put back", len(counts))
            raise
        return len(last_used)

    def _write_usage(self, counts: dict[tuple[str, str], int], last_used: dict[str, tuple[float, str | None]]) -> None:
        if not counts and not last_used:
            return
        ids = sorted({k for k, _ in counts} | set(last_used))
        marks = ", ".join(["%s"] * len(ids))
        existing = {r["id"] for r in self.db.fetch_all(f"SELECT id FROM api_keys WHERE id IN ({marks})", ids)}
        totals: dict[str, int] = {}
        for (key_id, _), n in counts.items():
            totals[key_id] = totals.get(key_id, 0) + n
        # rows in one order in every worker, so concurrent batches lock them in the same order
        rows = sorted((k, d, n) for (k, d), n in counts.items() if k in existing)

        def write(cur) -> None:
            if rows:
                # VALUES() in ON DUPLICATE KEY works on MariaDB and MySQL 8 (deprecated there, not removed)
                cur.executemany(
                    "INSERT INTO api_key_usage (api_key_id, day, request_count) VALUES (%s, %s, %s)"
                    " ON DUPLICATE KEY UPDATE request_count = request_count + VALUES(request_count)",
                    rows,
                )
            for key_id in ids:
                if key_id not in existing:
                    continue
                ts, ip = last_used.get(key_id, (None, None))
                when = datetime.fromtimestamp(ts, UTC).replace(tzinfo=None) if ts else None
                cur.execute(
                    "UPDATE api_keys SET usage_count = usage_count + %s,"
                    " last_used = COALESCE(GREATEST(last_used, %s), %s, last_used),"
                    " last_used_ip = COALESCE(%s, last_used_ip), updated_at = updated_at WHERE id = %s",
                    (totals.get(key_id, 0), when, when, ip, key_id),
                )

        self.db.write_retrying(write)


def _tally(uses: list[tuple[str, str, float, str | None]]):
    """(requests per (key id, day), the latest (time, ip) per key id) of buffered uses."""
    counts: dict[tuple[str, str], int] = {}
    last_used: dict[str, tuple[float, str | None]] = {}
    for key_id, day, at, ip in uses:
        counts[(key_id, day)] = counts.get((key_id, day), 0) + 1
        last_used[key_id] = (at, ip)
    return counts, last_used


def _stage_usage(pipe, uses: list[tuple[str, str, float, str | None]]) -> None:
    _stage_tallies(pipe, *_tally(uses))


def _stage_tallies(
    pipe, counts: dict[tuple[str, str], int], last_used: dict[str, tuple[float, str | None]], keep_newer: bool = False
):
    """Stage the tallies on `pipe`; `keep_newer` (putting back a failed flush) leaves a newer last use alone."""
    for (key_id, day), n in counts.items():
        pipe.hincrby(_PENDING, f"{key_id}|{day}", n)
    for key_id, (at, ip) in last_used.items():
        (pipe.hsetnx if keep_newer else pipe.hset)(_LAST_USED, key_id, f"{at:.3f}|{ip or ''}")
    return pipe
