"""API keys: lifecycle for their owners, and authentication on the request path.

The request path never writes to MySQL: a key is validated from a Redis cache
(dropped at once on revoke/update, so every worker sees it), and usage is
counted through the write-behind buffer (`altus4.write_behind`): batched into
Redis by each worker, then flushed to MySQL by whichever worker takes the lock.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from altus4.config import Limit, Settings
from altus4.db.pool import Database
from altus4.errors import Conflict, Forbidden, InvalidApiKey, NotFound
from altus4.redis_store import RedisStore
from altus4.security import api_keys as keygen
from altus4.services.rate_limits import RateLimiter, Verdict
from altus4.services.users import iso, utcnow
from altus4.write_behind import Sink, WriteBehind

log = logging.getLogger("altus4.keys")

PERMISSIONS = ("search", "analytics", "admin")
TIERS = ("free", "pro", "enterprise")
KEY_CACHE_TTL = 60  # bounds staleness if an invalidation is lost while Redis is unreachable
LOCAL_TTL = 5.0  # in-process cache, used only while Redis is unavailable
_PENDING = "usage:{pending}"  # hash tag keeps both on one Cluster slot for MULTI
_LAST_USED = "usage:{pending}:last"
_FLUSH_LOCK = "usage:flush-lock"
FLUSH_INTERVAL = 10

_COLUMNS = (
    "id, user_id, name, key_prefix, key_hash, environment, permissions, rate_limit_tier, expires_at, "
    "last_used, last_used_ip, usage_count, is_active, created_at, updated_at"
)


@dataclass(frozen=True)
class ApiKeyPrincipal:
    """What a request authenticated with an API key may do."""

    id: str
    user_id: str
    permissions: tuple[str, ...]
    tier: str
    environment: str
    expires_at: float | None
    is_active: bool

    def require(self, permission: str) -> None:
        if permission not in self.permissions and "admin" not in self.permissions:
            raise Forbidden(
                f"API key lacks the '{permission}' permission",
                details={"required": permission, "granted": list(self.permissions)},
            )


def public_key(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "keyPrefix": row["key_prefix"],
        "environment": row["environment"],
        "permissions": row["permissions"].split(","),
        "rateLimitTier": row["rate_limit_tier"],
        "expiresAt": iso(row["expires_at"]),
        "lastUsed": iso(row["last_used"]),
        "lastUsedIp": row["last_used_ip"],
        "usageCount": int(row["usage_count"]),
        "isActive": bool(row["is_active"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


class ApiKeyService:
    def __init__(
        self, db: Database, store: RedisStore, limiter: RateLimiter, settings: Settings, write_behind: WriteBehind
    ):
        self.db = db
        self.store = store
        self.limiter = limiter
        self.write_behind = write_behind
        write_behind.register(
            "usage",
            Sink(
                stage=_stage_usage,
                write_direct=self._write_direct,
                flush=self.flush_usage,
                lock_key=_FLUSH_LOCK,
                lock_seconds=FLUSH_INTERVAL,
            ),
        )
        self._local: dict[str, tuple[float, ApiKeyPrincipal]] = {}
        self._seen: dict[str, tuple[str, str]] = {}  # digest -> (key id, tier): names its rate-limit counters
        self.tier_limits = {
            "free": (Limit(settings.rate_limit_free, 3600),),
            "pro": (Limit(settings.rate_limit_pro, 3600),),
            "enterprise": (Limit(settings.rate_limit_enterprise, 3600),),
        }

    # ---- owner-facing lifecycle -------------------------------------------------
    def create(
        self, user_id: str, name: str, environment: str, permissions: list[str], tier: str, expires_at: datetime | None
    ) -> tuple[dict[str, Any], str]:
        key_id, secret = str(uuid.uuid4()), keygen.generate(environment)
        self.db.execute(
            "INSERT INTO api_keys (id, user_id, name, key_prefix, key_hash, environment, permissions, rate_limit_tier,"
            " expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                key_id,
                user_id,
                name,
                keygen.display_prefix(secret),
                keygen.digest(secret),
                environment,
                ",".join(dict.fromkeys(permissions)),
                tier,
                _naive_utc(expires_at),
            ),
        )
        return self.get(user_id, key_id), secret

    def setup_first_key(self, user_id: str) -> tuple[dict[str, Any], str]:
        if self.db.fetch_one("SELECT id FROM api_keys WHERE user_id = %s LIMIT 1", (user_id,)):
            raise Conflict("API key already exists for this user", code="API_KEY_EXISTS")
        return self.create(user_id, "Default API Key", "test", ["search", "analytics"], "free", None)

    def list(self, user_id: str) -> list[dict[str, Any]]:
        return self.db.fetch_all(
            f"SELECT {_COLUMNS} FROM api_keys WHERE user_id = %s ORDER BY created_at DESC", (user_id,)
        )

    def get(self, user_id: str, key_id: str) -> dict[str, Any]:
        """:raise NotFound: the key does not exist or belongs to someone else (indistinguishable)."""
        row = self.db.fetch_one(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s AND user_id = %s", (key_id, user_id))
        if row is None:
            raise NotFound("API key not found")
        return row

    def update(self, user_id: str, key_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        row = self.get(user_id, key_id)
        columns = {
            "name": "name",
            "permissions": "permissions",
            "rateLimitTier": "rate_limit_tier",
            "expiresAt": "expires_at",
        }
        values = {}
        for field, column in columns.items():
            if field in changes:
                value = changes[field]
                if field == "permissions":
                    value = ",".join(dict.fromkeys(value))
                elif field == "expiresAt":
                    value = _naive_utc(value)
                values[column] = value
        if values:
            assignments = ", ".join(f"{column} = %s" for column in values)
            self.db.execute(
                f"UPDATE api_keys SET {assignments} WHERE id = %s AND user_id = %s", (*values.values(), key_id, user_id)
            )
            self._forget(row["key_hash"])
        return self.get(user_id, key_id)

    def revoke(self, user_id: str, key_id: str) -> None:
        row = self.get(user_id, key_id)
        self.db.execute("UPDATE api_keys SET is_active = 0 WHERE id = %s AND user_id = %s", (key_id, user_id))
        self._forget(row["key_hash"])

    def regenerate(self, user_id: str, key_id: str) -> tuple[dict[str, Any], str]:
        """A new secret under a new id with the same settings; the old key stops working at once."""
        old = self.get(user_id, key_id)
        new_id, secret = str(uuid.uuid4()), keygen.generate(old["environment"])
        with self.db.write() as cur:
            cur.execute("UPDATE api_keys SET is_active = 0 WHERE id = %s AND user_id = %s", (key_id, user_id))
            cur.execute(
                "INSERT INTO api_keys (id, user_id, name, key_prefix, key_hash, environment, permissions,"
                " rate_limit_tier, expires_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    new_id,
                    user_id,
                    old["name"],
                    keygen.display_prefix(secret),
                    keygen.digest(secret),
                    old["environment"],
                    old["permissions"],
                    old["rate_limit_tier"],
                    old["expires_at"],
                ),
            )
        self._forget(old["key_hash"])
        return self.get(user_id, new_id), secret

    def forget_all(self, user_id: str) -> None:
        """Drop every cached key of a user (before the account is deleted)."""
        for row in self.db.fetch_all("SELECT key_hash FROM api_keys WHERE user_id = %s", (user_id,)):
            self._forget(row["key_hash"])

    def usage(self, user_id: str, key_id: str, days: int) -> dict[str, Any]:
        row = self.get(user_id, key_id)
        self.flush_usage()
        since = (utcnow() - timedelta(days=days - 1)).date()
        daily = self.db.fetch_all(
            "SELECT day, request_count FROM api_key_usage WHERE api_key_id = %s AND day >= %s ORDER BY day",
            (key_id, since),
        )
        fresh = self.db.fetch_one("SELECT last_used, usage_count FROM api_keys WHERE id = %s", (key_id,))
        status = self.limiter.peek(f"key:{key_id}", self.tier_limits[row["rate_limit_tier"]])
        return {
            "apiKeyId": key_id,
            "requestCount": sum(int(d["request_count"]) for d in daily),
            "totalRequestCount": int(fresh["usage_count"]) if fresh else 0,
            "lastUsed": iso(fresh["last_used"]) if fresh else None,
            "days": days,
            "daily": [{"date": d["day"].isoformat(), "requests": int(d["request_count"])} for d in daily],
            "rateLimitStatus": {
                "tier": row["rate_limit_tier"],
                "limit": status.limit,
                "remaining": status.remaining,
                "resetTime": datetime.fromtimestamp(status.reset_at, UTC).isoformat().replace("+00:00", "Z"),
            },
        }

    # ---- request path -------------------------------------------------------------
    def admit(self, secret: str) -> tuple[ApiKeyPrincipal, Verdict]:
        """Authenticate the key and count the request against its rate limit.

        One Redis round trip once this worker has seen the key: a key's id never changes for its digest, so
        the rate-limit counters are known before the cached key is read, and both go in one pipeline.
        :raise InvalidApiKey: unknown, malformed, revoked or expired key.
        """
        if not keygen.looks_like_key(secret):
            raise InvalidApiKey("Invalid API key format")
        digest = keygen.digest(secret)
        known = self._seen.get(digest)  # (key id, tier) from an earlier request
        keys, counts = None, None
        if known is not None:
            keys = self.limiter.keys(f"key:{known[0]}", self.tier_limits[known[1]])

            def read(r) -> list:
                pipe = r.pipeline(transaction=False)
                pipe.get(f"apikey:{digest}")
                self.limiter.stage(pipe, keys)
                return pipe.execute()

            replies = self.store.safe(read, None)
            cached, counts = (replies[0], replies[1::2]) if replies else (None, None)
        else:
            cached = self.store.safe(lambda r: r.get(f"apikey:{digest}"), None)
        principal = self._principal(digest, cached)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[digest] = (principal.id, principal.tier)
        if counts is not None and known == (principal.id, principal.tier):
            return principal, self.limiter.judge(keys, counts)
        return principal, self.limiter.hit(f"key:{principal.id}", self.tier_limits[principal.tier])

    def _principal(self, digest: str, cached: bytes | None) -> ApiKeyPrincipal:
        local = self._local.get(digest)
        self.store.count_cache("api_key", bool(cached))
        if cached:
            data = json.loads(cached)
            principal = ApiKeyPrincipal(**{**data, "permissions": tuple(data["permissions"])})
        elif local and local[0] > time.monotonic() and not self.store.available:
            principal = local[1]
        else:
            principal = self._load(digest)
            if not self.store.available:
                if len(self._local) > 10_000:
                    self._local.clear()
                self._local[digest] = (time.monotonic() + LOCAL_TTL, principal)
        if not principal.is_active:
            raise InvalidApiKey("API key has been revoked")
        if principal.expires_at is not None and principal.expires_at <= time.time():
            raise InvalidApiKey("API key has expired")
        return principal

    def _load(self, digest: str) -> ApiKeyPrincipal:
        row = self.db.fetch_one(
            "SELECT k.id, k.user_id, k.permissions, k.rate_limit_tier, k.environment, k.expires_at, k.is_active,"
            " u.is_active AS user_active FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.key_hash = %s",
            (digest,),
            primary=True,
        )
        if row is None:
            raise InvalidApiKey("Invalid API key")
        expires = row["expires_at"].replace(tzinfo=UTC).timestamp() if row["expires_at"] else None
        principal = ApiKeyPrincipal(
            id=row["id"],
            user_id=row["user_id"],
            permissions=tuple(row["permissions"].split(",")),
            tier=row["rate_limit_tier"],
            environment=row["environment"],
            expires_at=expires,
            is_active=bool(row["is_active"] and row["user_active"]),
        )
        self.store.safe(lambda r: r.set(f"apikey:{digest}", json.dumps(asdict(principal)), ex=KEY_CACHE_TTL), None)
        return principal

    def _forget(self, digest: str) -> None:
        self._local.pop(digest, None)
        self.store.safe(lambda r: r.delete(f"apikey:{digest}"), 0)

    def record_use(self, principal: ApiKeyPrincipal, ip: str | None) -> None:
        """Count one request (buffered: see `altus4.write_behind`)."""
        self.write_behind.add("usage", (principal.id, utcnow().date().isoformat(), time.time(), ip))

    def _write_direct(self, uses: list[tuple[str, str, float, str | None]]) -> None:
        self._write_usage(*_tally(uses))

    def flush_usage(self) -> int:
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
        except Exception:
            log.exception("usage flush failed; %d counters put back", len(counts))
            self.store.safe(lambda r: [r.hincrby(_PENDING, f"{k}|{d}", n) for (k, d), n in counts.items()], None)
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
        with self.db.write() as cur:
            rows = [(k, d, n) for (k, d), n in counts.items() if k in existing]
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


def _tally(uses: list[tuple[str, str, float, str | None]]):
    """(requests per (key id, day), the latest (time, ip) per key id) of buffered uses."""
    counts: dict[tuple[str, str], int] = {}
    last_used: dict[str, tuple[float, str | None]] = {}
    for key_id, day, at, ip in uses:
        counts[(key_id, day)] = counts.get((key_id, day), 0) + 1
        last_used[key_id] = (at, ip)
    return counts, last_used


def _stage_usage(pipe, uses: list[tuple[str, str, float, str | None]]) -> None:
    counts, last_used = _tally(uses)
    for (key_id, day), n in counts.items():
        pipe.hincrby(_PENDING, f"{key_id}|{day}", n)
    pipe.hset(_LAST_USED, mapping={k: f"{at:.3f}|{ip or ''}" for k, (at, ip) in last_used.items()})
