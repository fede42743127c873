"""Key revocations that take effect at once and survive a metadata-primary outage.

Revoking turns the key's Redis cache entry into a tombstone, which every worker's key check honours on
its next request, then marks the key inactive in MySQL. When MySQL cannot take that write, the revocation
is queued in Redis and the write-behind thread applies it once MySQL answers again: it is never forgotten.
Only with MySQL and Redis both unavailable is a revocation refused (503), as before.
"""

from __future__ import annotations

import logging

from altus4.db.pool import Database
from altus4.errors import DatabaseUnavailable
from altus4.redis_store import RedisStore
from altus4.services.key_admission import KeyAdmission
from altus4.write_behind import Sink, WriteBehind

log = logging.getLogger("altus4.keys")

_PENDING = "revocations:{pending}"  # key id -> owner id, not yet written to MySQL
_FLUSH_LOCK = "revocations:flush-lock"
_UPDATE = "UPDATE api_keys SET is_active = 0 WHERE id = %s AND user_id = %s"


class Revocations:
    def __init__(self, db: Database, store: RedisStore, admission: KeyAdmission, write_behind: WriteBehind):
        self.db = db
        self.store = store
        self.admission = admission
        self.write_behind = write_behind
        write_behind.register(
            "revocations",
            Sink(
                stage=lambda pipe, items: pipe.hset(write_behind.key(_PENDING), mapping=dict(items)),
                write_direct=self._write,
                flush=self.flush,
                lock=_FLUSH_LOCK,
                lock_seconds=2,
            ),
        )

    def revoke(self, key_id: str, user_id: str, digest: str) -> None:
        """:raise DatabaseUnavailable: neither MySQL nor Redis could record it."""
        buried = self.admission.bury(digest)
        try:
            self._write([(key_id, user_id)])
        except DatabaseUnavailable:
            pending = self.write_behind.key(_PENDING)  # known once this process has pushed anything
            if not (buried and self.store.safe(lambda r: r.hset(pending, key_id, user_id) >= 0, False)):
                raise
            log.warning("key %s revoked in Redis; MySQL will be updated when it answers", key_id)
            self.write_behind.retry_later("revocations")

    def flush(self) -> int:
        """Apply queued revocations to MySQL; returns how many."""
        try:
            key = self.write_behind.key(_PENDING)
        except DatabaseUnavailable:
            self.write_behind.retry_later("revocations")
            return 0
        pending: dict = self.store.safe(lambda r: r.hgetall(key), {})  # decoded: key id -> user id
        if not pending:
            return 0
        try:
            self._write(list(pending.items()))
        except DatabaseUnavailable:
            self.write_behind.retry_later("revocations")
            return 0
        self.store.safe(lambda r: r.hdel(key, *pending), 0)
        log.info("%d queued key revocations written to MySQL", len(pending))
        return len(pending)

    def _write(self, items: list[tuple[str, str]]) -> None:
        """Mark the keys inactive; a key that no longer exists (deleted since) is counted as unapplied."""
        found = [0]

        def write(cur) -> None:
            marks = ", ".join(["(%s, %s)"] * len(items))
            cur.execute(
                f"SELECT COUNT(*) AS n FROM api_keys WHERE (id, user_id) IN ({marks})",
                [v for item in items for v in item],
            )
            found[0] = int(cur.fetchone()["n"])
            cur.executemany(_UPDATE, items)

        self.db.write_retrying(write, idempotent=True)  # ids: a repeat changes nothing
        self.write_behind.unapplied("revocations", len(items) - found[0], "their API key no longer exists")
