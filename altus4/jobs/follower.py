"""`altus4 index --follow`: keep the vectors of every table `altus4 index` embedded up to date with the table.

Each pass, for each followed table (`vector_tables`):
- **changes**, cheaply, through a watermark column: an `updated_at`-style DATETIME/TIMESTAMP column when the
  table has one (inserts and updates), else an AUTO_INCREMENT key (inserts); rows past the last value seen
  are read, and those whose text changed (their content hash) are embedded;
- **deletions**, every `deletions_every` seconds: the table's keys against the stored ones; the missing are
  marked deleted (every node's index then hides them);
- a **full reconciliation** every `reconcile_every` seconds, and every pass for a table with no watermark
  column: every row's hash against the stored one (`altus4.jobs.indexer.index_table`).
Each table that changed gets its vector version bumped: API workers read the change on their next search.
Embedding goes through the AI layer's fleet budget and breaker (`AIService.embed_job`).

One follower leads at a time across the fleet (a lease in Redis, renewed every pass), so running it as a
scaled service does not embed rows twice; without Redis no follower leads (nothing is embedded twice, and
nothing is lost: the next leader's passes find the changes). Its metrics (`altus4_vectors_*`) are served on
FOLLOW_METRICS_PORT.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from altus4.ai.provider import AIUnavailable
from altus4.ai.store import content_hash
from altus4.db import targets
from altus4.jobs.indexer import index_table, watermark_column
from altus4.search import plan as planner
from altus4.search.results import row_key
from altus4.search.semantic import row_text

log = logging.getLogger("altus4.jobs")
LEASE_KEY = "vectors:follower:lease"
BATCH = 256
KEYS_BATCH = 50_000

# KEYS: the lease; ARGV: this follower's id, the lease's milliseconds. Takes a free lease or renews our own.
_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == false then return redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) and 1 or 0 end
if holder == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""


@dataclass(frozen=True)
class FollowSettings:
    interval: float = 5.0  # seconds between passes
    deletions_every: float = 30.0
    reconcile_every: float = 3600.0
    lease_seconds: float = 30.0


class FollowerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.pending = Gauge(
            "altus4_vectors_pending_rows", "Rows changed and not embedded yet", ["table"], registry=self.registry
        )
        self.lag = Gauge(
            "altus4_vectors_lag_seconds",
            "Seconds since a table's last complete pass",
            ["table"],
            registry=self.registry,
        )
        self.rate = Gauge(
            "altus4_vectors_rows_per_second", "Rows embedded per second, last pass", registry=self.registry
        )
        self.leader = Gauge(
            "altus4_vectors_follower_leader", "1 while this follower holds the lease", registry=self.registry
        )


class Follower:
    def __init__(self, services, settings: FollowSettings | None = None, metrics: FollowerMetrics | None = None):
        self.svc = services
        self.settings = settings or FollowSettings()
        self.metrics = metrics or FollowerMetrics()
        self.identity = uuid.uuid4().hex
        self._script: Any = None
        self._done_at: dict[tuple[str, str, str], float] = {}

    # ---- leading --------------------------------------------------------------------------------
    def lead(self) -> bool:
        """Take or renew the fleet's lease; False when another follower holds it (or Redis is unavailable)."""
        store = self.svc.redis

        def take(r) -> bool:
            script = self._script or r.register_script(_LEASE)
            self._script = script
            return bool(
                script(keys=[store.key(LEASE_KEY)], args=[self.identity, int(self.settings.lease_seconds * 1000)])
            )

        leading = store.safe(take, False)
        self.metrics.leader.set(1 if leading else 0)
        return leading

    def run(self, stop: threading.Event, report: Callable[[dict[str, int]], None] | None = None) -> None:
        """Pass after pass until `stop`, while this process leads; `report` hears each pass's counts."""
        while not stop.is_set():
            started = time.monotonic()
            if self.lead():
                try:
                    done = self.pass_once()
                    if report:
                        report(done)
                except Exception:  # noqa: BLE001 - logged; the next pass tries again
                    log.exception("follower pass failed")
            stop.wait(max(0.0, self.settings.interval - (time.monotonic() - started)))

    # ---- a pass ---------------------------------------------------------------------------------
    def pass_once(self) -> dict[str, int]:
        """One pass over every followed table; (embedded, deleted) rows in all."""
        total = {"embedded": 0, "deleted": 0}
        for entry in self.svc.db.fetch_all(
            "SELECT connection_id, table_name, model, watermark_column, watermark_value, reconciled_at,"
            " deletions_checked_at FROM vector_tables"
        ):
            if entry["model"] != self.svc.settings.openai_embedding_model:
                continue
            try:
                embedded, deleted = self.follow(entry)
            except (targets.TargetError, AIUnavailable) as exc:
                log.warning("following %s: %s", entry["table_name"], exc)
                continue
            total["embedded"] += embedded
            total["deleted"] += deleted
        return total

    def follow(self, entry: dict[str, Any]) -> tuple[int, int]:
        key = (entry["connection_id"], entry["table_name"], entry["model"])
        started = time.monotonic()
        owner = self.svc.db.fetch_one("SELECT user_id FROM database_connections WHERE id = %s", (key[0],))
        if owner is None:
            return 0, 0
        connection = self.svc.connections.get(owner["user_id"], key[0])
        schema = self.svc.connections.schema_for(connection)
        table = next((t for name, t in schema.tables.items() if name.lower() == key[1].lower()), None)
        if table is None:
            return 0, 0
        q = planner.plan_table(table, None, explicit=True)
        if q is None:
            return 0, 0
        now = time.time()
        embedded = deleted = 0
        conn = targets.connect(self.svc.connections.spec(connection), self.svc.connections.settings)
        try:
            column, kind = watermark_column(conn, table)
            due = not entry["reconciled_at"] or now - _epoch(entry["reconciled_at"]) > self.settings.reconcile_every
            if column is None or due:  # index_table notes the reconciliation and where changes start now
                embedded, deleted = self._reconcile(connection, q)
            else:
                embedded = self._changes(conn, key, q, column, kind, entry["watermark_value"])
                checked = entry["deletions_checked_at"]
                if not checked or now - _epoch(checked) > self.settings.deletions_every:
                    deleted = self._deletions(conn, key, q)
                    self._note(key, deletions=True)
        finally:
            conn.close()
        if embedded or deleted:
            self.svc.search.vectors.bump(*key)
        seconds = time.monotonic() - started
        self.metrics.rate.set(round(embedded / seconds, 2) if seconds else 0.0)
        self.metrics.pending.labels(key[1]).set(0)
        if key not in self._done_at:
            self.metrics.lag.labels(key[1]).set_function(lambda: time.time() - self._done_at[key])
        self._done_at[key] = time.time()
        return embedded, deleted

    def _changes(
        self, conn, key: tuple[str, str, str], q: planner.TableQuery, column: str, kind: str, last: str | None
    ) -> int:
        """Embed the rows past the watermark whose text changed; move the watermark."""
        selected = ", ".join(planner.ident(c) for c in dict.fromkeys((*q.key, *q.searched_columns, column)))
        op = ">=" if kind == "time" else ">"  # timestamps tie: the last second is read again (hashes skip it)
        embedded = 0
        while True:
            with conn.cursor() as cur:
                if last is None:
                    cur.execute(
                        f"SELECT {selected} FROM {planner.ident(q.table)} ORDER BY {planner.ident(column)} LIMIT %s",
                        (BATCH,),
                    )
                else:
                    cur.execute(
                        f"SELECT {selected} FROM {planner.ident(q.table)} WHERE {planner.ident(column)} {op} %s"
                        f" ORDER BY {planner.ident(column)} LIMIT %s",
                        (last, BATCH),
                    )
                rows = list(cur.fetchall())
            self.metrics.pending.labels(key[1]).set(len(rows))
            embedded += self._embed(key, q, rows)
            if rows:
                newest = str(rows[-1][column])
                if newest == last:  # a whole batch of one timestamp: the next one starts after it
                    break
                last = newest
                self._note(key, watermark=(column, last))
            if len(rows) < BATCH:
                return embedded
        return embedded

    def _embed(self, key: tuple[str, str, str], q: planner.TableQuery, rows: list[dict[str, Any]]) -> int:
        """Embed the rows whose text is not what is stored for them (new, changed, or undeleted)."""
        if not rows:
            return 0
        stored = self.svc.ai.embeddings
        texts = {row_key(r, q.key): row_text(r, q.searched_columns) for r in rows}
        hashes = {k: content_hash(t) for k, t in texts.items()}
        known = stored.row_hashes(*key, list(hashes))
        changed = {k: h for k, h in hashes.items() if known.get(k) != h}
        if not changed:
            return 0
        model = key[2]
        have = stored.get(model, list(set(changed.values())))
        todo = {h: texts[k] for k, h in changed.items() if h not in have}
        if todo:
            vectors = self.svc.ai.embed_job(list(todo.values()))
            stored.put(model, dict(zip(todo, vectors, strict=True)))
        stored.map_rows(*key, list(changed.items()))
        return len(changed)

    def _deletions(self, conn, key: tuple[str, str, str], q: planner.TableQuery) -> int:
        """Mark deleted the stored rows whose key the table no longer has."""
        present: set[str] = set()
        columns = ", ".join(planner.ident(c) for c in q.key)
        last, offset = None, 0
        while True:
            with conn.cursor() as cur:
                if len(q.key) == 1 and last is not None:
                    table = planner.ident(q.table)
                    cur.execute(
                        f"SELECT {columns} FROM {table} WHERE {columns} > %s ORDER BY {columns} LIMIT %s",
                        (last, KEYS_BATCH),
                    )
                else:
                    cur.execute(
                        f"SELECT {columns} FROM {planner.ident(q.table)} ORDER BY {columns} LIMIT %s OFFSET %s",
                        (KEYS_BATCH, offset),
                    )
                rows = list(cur.fetchall())
            present.update(row_key(r, q.key) for r in rows)
            if len(rows) < KEYS_BATCH:
                break
            last, offset = rows[-1][q.key[0]], offset + len(rows)
        return self.svc.ai.embeddings.mark_deleted(*key, present)

    def _reconcile(self, connection: dict[str, Any], q: planner.TableQuery) -> tuple[int, int]:
        report = index_table(self.svc.connections, self.svc.ai, connection, q.table, vector_index=None)
        return report.embedded, report.deleted

    def _note(
        self, key, watermark: tuple[str, str] | None = None, reconciled: bool = False, deletions: bool = False
    ) -> None:
        sets, params = [], []
        if watermark is not None:
            sets += ["watermark_column = %s", "watermark_value = %s"]
            params += list(watermark)
        if reconciled:
            sets.append("reconciled_at = UTC_TIMESTAMP(3)")
        if deletions:
            sets.append("deletions_checked_at = UTC_TIMESTAMP(3)")
        if sets:
            where = "connection_id = %s AND table_name = %s AND model = %s"
            self.svc.db.execute(f"UPDATE vector_tables SET {', '.join(sets)} WHERE {where}", (*params, *key))


def _epoch(moment) -> float:
    from datetime import UTC

    return moment.replace(tzinfo=UTC).timestamp()
