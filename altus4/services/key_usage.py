"""API-key usage counts: buffered per worker, queued in Redis, flushed to MySQL in batches.

Counting a request costs no MySQL write: `record_use` goes through the write-behind buffer
(`altus4.write_behind`), which queues one batch per worker push in Redis; whichever worker takes the flush
lock moves the queue to MySQL. Each batch is applied once (its id goes in `write_batches`), so a batch
pushed again after Redis lost its data is not counted twice. Without Redis the counts go straight to MySQL.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import redis

from altus4.db.pool import Database
from altus4.errors import DatabaseUnavailable
from altus4.redis_store import RedisStore
from altus4.services.key_admission import ApiKeyPrincipal
from altus4.times import utcnow
from altus4.write_behind import Sink, Taken, WriteBehind

log = logging.getLogger("altus4.keys")

_BATCHES = "usage:{pending}:batches"  # JSON batches, one per worker push; the hash tag keeps one slot
_EPOCH = "usage:{pending}:epoch"  # moved by each flush as it takes the queue (`altus4.write_behind`)
# hashes of versions before 1.0 (which had no REDIS_PREFIX), drained by the flush of an unprefixed deployment
_LEGACY = ("usage:{pending}", "usage:{pending}:last")
_FLUSH_LOCK = "usage:flush-lock"
FLUSH_INTERVAL = 10
BATCH_MEMORY_DAYS = 1  # applied batch ids are remembered this long (write_batches)

Uses = list[tuple[str, str, float, str | None, str]]  # (key id, day, time, ip, use id) per request


@dataclass
class Tally:
    """Requests per (key id, day) and the latest (time, ip) per key id, of one batch or several."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    last_used: dict[str, tuple[float, str | None]] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        for key, n in other.counts.items():
            self.counts[key] = self.counts.get(key, 0) + n
        for key_id, (at, ip) in other.last_used.items():
            if at >= self.last_used.get(key_id, (0.0, None))[0]:
                self.last_used[key_id] = (at, ip)


def _tally(uses: Uses) -> Tally:
    tally = Tally()
    for key_id, day, at, ip, _ in uses:
        tally.counts[(key_id, day)] = tally.counts.get((key_id, day), 0) + 1
        tally.last_used[key_id] = (at, ip)
    return tally


def _batch(uses: Uses) -> str:
    """One push's uses as a queued batch. Its id is derived from the uses' ids, so the same batch pushed
    again (after Redis lost it) has the same id and is counted once, and two batches are never taken for
    one because their counts and times happen to match."""
    tally = _tally(uses)
    body = {
        "counts": [[k, d, n] for (k, d), n in tally.counts.items()],
        "last": {k: [at, ip] for k, (at, ip) in tally.last_used.items()},
    }
    ids = "|".join(use[4] for use in uses)
    return json.dumps({"id": hashlib.sha1(ids.encode()).hexdigest(), **body})  # noqa: S324 - an id, not a secret


def _parse(raw: str) -> tuple[str | None, Tally]:
    data = json.loads(raw)
    tally = Tally(
        {(k, d): int(n) for k, d, n in data["counts"]}, {k: (float(at), ip) for k, (at, ip) in data["last"].items()}
    )
    return data.get("id"), tally


class UsageLedger:
    def __init__(self, db: Database, store: RedisStore, write_behind: WriteBehind):
        self.db = db
        self.store = store
        self.write_behind = write_behind
        self._origin: tuple[int, str] | None = None  # (pid, random): use ids unique across processes and hosts
        self._sequence = itertools.count()
        write_behind.register(
            "usage",
            Sink(
                stage=lambda pipe, uses: pipe.rpush(write_behind.key(_BATCHES), _batch(uses)),
                write_direct=lambda uses: self._write([_parse(_batch(uses))]),  # the id it has when queued
                flush=lambda: self.flush(settle=False),
                lock=_FLUSH_LOCK,
                lock_seconds=FLUSH_INTERVAL,
                epoch=_EPOCH,
            ),
        )

    def record_use(self, principal: ApiKeyPrincipal, ip: str | None) -> None:
        """Count one request (buffered: see `altus4.write_behind`)."""
        if self._origin is None or self._origin[0] != os.getpid():  # a forked worker gets its own
            self._origin = (os.getpid(), uuid.uuid4().hex)
        use_id = f"{self._origin[1]}:{next(self._sequence)}"
        self.write_behind.add("usage", (principal.id, utcnow().date().isoformat(), time.time(), ip, use_id))

    def flush(self, settle: bool = True) -> int:
        """Move the queued batches from Redis to MySQL (the worker that took the flush lock, or a usage read);
        returns how many batches were taken. With `settle` (a reader), then wait for another process's flush
        still writing batches it took (`WriteBehind.settle`)."""

        def legacy(pipe) -> None:
            pipe.hgetall(_LEGACY[0])
            pipe.hgetall(_LEGACY[1])
            pipe.delete(*_LEGACY)

        try:
            taken = self.write_behind.take(_BATCHES, _EPOCH, None if self.store.prefix else legacy)
        except (redis.RedisError, DatabaseUnavailable) as exc:
            log.warning("usage flush skipped: %s", exc)
            return 0
        raw = list(taken.items)
        legacy_counts, legacy_last, _ = taken.extras or ({}, {}, 0)
        if legacy_counts or legacy_last:
            raw.append(_legacy_batch(legacy_counts, legacy_last))
        if raw and not self._write_taken(taken, raw):
            return 0
        if settle:
            self.write_behind.settle(_BATCHES)
        return len(raw)

    def _write_taken(self, taken: Taken, raw: list) -> bool:
        """Write a flush's batches; False when MySQL is unavailable (they are back in Redis)."""
        try:
            self._write([_parse(r) for r in raw])
        except Exception as exc:
            self.write_behind.give_back(taken, raw)
            if isinstance(exc, DatabaseUnavailable):  # back in Redis for the next flush
                log.warning("usage flush postponed: %s", exc.message)
                return False
            log.exception("usage flush failed; %d batches put back", len(raw))
            raise
        self.write_behind.done(taken)
        return True

    def _write(self, batches: list[tuple[str | None, Tally]]) -> None:
        """Add the batches' counts in one transaction, skipping batches whose id was applied before."""
        key_ids = sorted({k for _, t in batches for k, _ in t.counts} | {k for _, t in batches for k in t.last_used})
        if not key_ids:
            return
        marks = ", ".join(["%s"] * len(key_ids))
        left_out = [0]

        def write(cur) -> None:
            cur.execute(f"SELECT id FROM api_keys WHERE id IN ({marks})", key_ids)  # on the primary: a new key too
            existing = {r["id"] for r in cur.fetchall()}
            total = Tally()
            for batch_id, tally in batches:
                if batch_id is None or cur.execute("INSERT IGNORE INTO write_batches (id) VALUES (%s)", (batch_id,)):
                    total.add(tally)
            left_out[0] = sum(n for (k, _), n in total.counts.items() if k not in existing)
            cur.execute(
                "DELETE FROM write_batches WHERE applied_at < %s LIMIT 1000",
                (utcnow() - timedelta(days=BATCH_MEMORY_DAYS),),
            )
            # rows in one order in every worker, so concurrent batches lock them in the same order
            rows = sorted((k, d, n) for (k, d), n in total.counts.items() if k in existing)
            if rows:
                # VALUES() in ON DUPLICATE KEY works on MariaDB and MySQL 8 (deprecated there, not removed)
                cur.executemany(
                    "INSERT INTO api_key_usage (api_key_id, day, request_count) VALUES (%s, %s, %s)"
                    " ON DUPLICATE KEY UPDATE request_count = request_count + VALUES(request_count)",
                    rows,
                )
            per_key: dict[str, int] = {}
            for (key_id, _), n in total.counts.items():
                per_key[key_id] = per_key.get(key_id, 0) + n
            for key_id in key_ids:
                if key_id not in existing or (key_id not in per_key and key_id not in total.last_used):
                    continue
                ts, ip = total.last_used.get(key_id, (None, None))
                when = datetime.fromtimestamp(ts, UTC).replace(tzinfo=None) if ts else None
                cur.execute(
                    "UPDATE api_keys SET usage_count = usage_count + %s,"
                    " last_used = COALESCE(GREATEST(last_used, %s), %s, last_used),"
                    " last_used_ip = COALESCE(%s, last_used_ip), updated_at = updated_at WHERE id = %s",
                    (per_key.get(key_id, 0), when, when, ip, key_id),
                )

        self.db.write_retrying(write, idempotent=True)  # ids: a repeat changes nothing
        self.write_behind.unapplied("usage", left_out[0], "requests of API keys that no longer exist")


def _legacy_batch(counts: dict[str, str], last: dict[str, str]) -> str:
    """What an earlier version queued as hashes (during a rolling upgrade), as a batch without an id."""
    body: dict = {"counts": [], "last": {}}
    for field_name, count in counts.items():
        key_id, _, day = field_name.partition("|")
        body["counts"].append([key_id, day, int(count)])
    for key_id, value in last.items():
        ts, _, ip = value.partition("|")
        body["last"][key_id] = [float(ts), ip or None]
    return json.dumps(body)
