"""API-key admission, the hot path: is this key valid, within its tier's limit, and allowed this?

The request path never writes to MySQL: a key is validated from a Redis cache (dropped at once on
update through `forget`, replaced by a tombstone on revoke through `bury`, so every worker sees it) in
the same round trip that counts the request against the key's rate limit and reads what the request
needs next (a search: the user's connection list and the cached page). Only while Redis is
unavailable does each worker keep keys for a few seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC
from typing import Any

import orjson

from altus4.config import Limit, Settings
from altus4.db.pool import Database
from altus4.errors import Forbidden, InvalidApiKey
from altus4.redis_store import RedisStore
from altus4.security import api_keys as keygen
from altus4.security import tenant_tokens
from altus4.security.secrets_box import DecryptionError, SecretBox
from altus4.services.rate_limits import RateLimiter, Verdict

KEY_CACHE_TTL = 60  # bounds staleness if an invalidation is lost while Redis is unreachable
LOCAL_TTL = 5.0  # in-process cache, used only while Redis is unavailable
TOMBSTONE_TTL = 7 * 86400  # a revoked key's entry: far longer than any outage its MySQL write may wait out


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
    sealed: str | None = None  # the secret, encrypted: tenant tokens are signed with it (None: an older key)

    def require(self, permission: str) -> None:
        if permission not in self.permissions and "admin" not in self.permissions:
            raise Forbidden(
                f"API key lacks the '{permission}' permission",
                details={"required": permission, "granted": list(self.permissions)},
            )


TIERS = ("free", "pro", "enterprise")  # lowest first


def effective_tier(key_tier: str, account_tier: str) -> str:
    """A key's tier as it counts: never above its account's (a key made before accounts had tiers may ask for
    more; it keeps asking, and gets it back if an admin raises the account)."""
    return min(key_tier, account_tier, key=lambda t: TIERS.index(t) if t in TIERS else 0)


def tier_limits(settings: Settings) -> dict[str, tuple[Limit, ...]]:
    """Requests per hour by rate-limit tier."""
    return {
        "free": (Limit(settings.rate_limit_free, 3600),),
        "pro": (Limit(settings.rate_limit_pro, 3600),),
        "enterprise": (Limit(settings.rate_limit_enterprise, 3600),),
    }


class KeyAdmission:
    def __init__(self, db: Database, store: RedisStore, limiter: RateLimiter, settings: Settings, box: SecretBox):
        self.box = box
        self.db = db
        self.store = store
        self.limiter = limiter
        self.tier_limits = tier_limits(settings)
        self._local: dict[str, tuple[float, ApiKeyPrincipal]] = {}
        self._seen: dict[str, tuple[str, str, str]] = {}  # digest -> (key id, tier, user id), for `admit`

    def admit(
        self, secret: str, prefetch: Callable[[str], list[str]] | None = None
    ) -> tuple[ApiKeyPrincipal, Verdict, dict[str, Any]]:
        """Authenticate the key and count the request against its rate limit; with `prefetch`, also read the
        Redis keys it names for the key's user (what the request reads next), returned by key.

        One Redis round trip once this worker has seen the key: a key's id, tier and user never change for
        its digest, so the rate-limit counters and the user's keys are known before the cached key is read,
        and all go in one pipeline. The prefetched values are returned only for the user the key turned out
        to belong to. :raise InvalidApiKey: unknown, malformed, revoked or expired key.
        """
        if not keygen.looks_like_key(secret):
            raise InvalidApiKey("Invalid API key format")
        digest = keygen.digest(secret)
        known = self._seen.get(digest)  # (key id, tier, user id) from an earlier request
        keys, counts, extra, values = None, None, [], None
        if known is not None:
            keys = self.limiter.keys(f"key:{known[0]}", self.tier_limits[known[1]])
            extra = prefetch(known[2]) if prefetch else []

            def read(r) -> list:
                pipe = r.pipeline(transaction=False)
                pipe.get(self._entry(digest))
                self.limiter.stage(pipe, keys)
                for key in extra:
                    pipe.get(key)
                return pipe.execute()

            replies = self.store.safe(read, None)
            if replies:
                staged = 1 + 2 * len(keys)
                cached, counts, values = replies[0], replies[1:staged:2], replies[staged:]
            else:
                cached = None
        else:
            cached = self.store.safe(lambda r: r.get(self._entry(digest)), None)
        principal = self._principal(digest, cached)
        if len(self._seen) > 10_000:
            self._seen.clear()
        self._seen[digest] = (principal.id, principal.tier, principal.user_id)
        same = known == self._seen[digest]
        prefetched = dict(zip(extra, values, strict=True)) if same and values is not None else {}
        if counts is not None and same:
            return principal, self.limiter.judge(keys, counts), prefetched
        return principal, self.limiter.hit(f"key:{principal.id}", self.tier_limits[principal.tier]), prefetched

    def admit_tenant_token(self, token: str) -> tuple[ApiKeyPrincipal, Verdict, tenant_tokens.TenantClaims]:
        """A tenant token: its parent key (valid, with the search permission), the token's signature by that
        key's secret, and the request counted against the key's rate limit.
        :raise InvalidApiKey: the parent key is unknown, revoked or expired, lacks `search`, or predates
        tenant tokens; or the token is tampered with or expired (its `code` says which)."""
        key_id = tenant_tokens.api_key_id(token)
        digest = self._digest_of(key_id) if key_id else None
        if digest is None:
            raise InvalidApiKey("The tenant token's API key does not exist", code="INVALID_TENANT_TOKEN")
        principal = self._principal(digest, self.store.safe(lambda r: r.get(self._entry(digest)), None))
        if "search" not in principal.permissions and "admin" not in principal.permissions:
            raise InvalidApiKey("The tenant token's API key lacks the search permission", code="INVALID_TENANT_TOKEN")
        if not principal.sealed:
            raise InvalidApiKey(
                "The tenant token's API key was made before tenant tokens: regenerate it to sign them",
                code="INVALID_TENANT_TOKEN",
            )
        try:
            claims = tenant_tokens.verify(
                token, self.box.decrypt(principal.sealed, keygen.sealing_context(principal.id))
            )
        except tenant_tokens.TenantTokenError as exc:
            raise InvalidApiKey(exc.message, code=exc.code) from None
        except DecryptionError:
            raise InvalidApiKey("The tenant token's API key cannot be read", code="INVALID_TENANT_TOKEN") from None
        return principal, self.limiter.hit(f"key:{principal.id}", self.tier_limits[principal.tier]), claims

    def _digest_of(self, key_id: str) -> str | None:
        """A key's digest from its id (immutable: cached in Redis for a day)."""
        entry = self.store.key(f"apikey-id:{key_id}")
        digest = self.store.safe(lambda r: r.get(entry), None)
        if digest:
            return digest.decode() if isinstance(digest, bytes) else digest
        row = self.db.fetch_one("SELECT key_hash FROM api_keys WHERE id = %s", (key_id,))
        if row is None:
            return None
        self.store.safe(lambda r: r.set(entry, row["key_hash"], ex=86400), None)
        return row["key_hash"]

    def _principal(self, digest: str, cached: bytes | str | None) -> ApiKeyPrincipal:
        local = self._local.get(digest)
        self.store.count_cache("api_key", bool(cached))
        if cached:
            data = orjson.loads(cached)  # per request: orjson's parse is a fraction of json's
            if data.get("revoked"):  # a tombstone (`bury`)
                raise InvalidApiKey("API key has been revoked")
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
            " k.sealed_secret, u.is_active AS user_active, u.tier AS account_tier FROM api_keys k"
            " JOIN users u ON u.id = k.user_id WHERE k.key_hash = %s",
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
            tier=effective_tier(row["rate_limit_tier"], row["account_tier"]),
            environment=row["environment"],
            expires_at=expires,
            is_active=bool(row["is_active"] and row["user_active"]),
            sealed=row["sealed_secret"],
        )
        entry = json.dumps(asdict(principal))
        # nx: a tombstone written while this look-up ran (a revocation) is never overwritten
        self.store.safe(lambda r: r.set(self._entry(digest), entry, ex=KEY_CACHE_TTL, nx=True), None)
        return principal

    def _entry(self, digest: str) -> str:
        """The Redis key of a key's cached entry (or tombstone)."""
        return self.store.key(f"apikey:{digest}")

    def bury(self, digest: str) -> bool:
        """Refuse a revoked key everywhere from the next request on, whatever MySQL says or whether it
        answers: its cache entry becomes a tombstone. False when Redis is unavailable."""
        self._local.pop(digest, None)
        tombstone = json.dumps({"revoked": True})
        return self.store.safe(lambda r: bool(r.set(self._entry(digest), tombstone, ex=TOMBSTONE_TTL)), False)

    def forget(self, digest: str) -> None:
        """Stop accepting a key's cached entry everywhere (revoke, update, regenerate, account deletion)."""
        self._local.pop(digest, None)
        self.store.safe(lambda r: r.delete(self._entry(digest)), 0)
