"""API keys as their owners manage them: create, list, update, revoke, regenerate, read usage.

Every change that affects what a key may do drops its cached entry at once (`KeyAdmission.forget`), so
every worker stops honouring the old settings on its next request.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from altus4.db.pool import Database
from altus4.db.sql import set_clause
from altus4.errors import Conflict, NotFound, ValidationFailed
from altus4.security import api_keys as keygen
from altus4.security.secrets_box import SecretBox
from altus4.services.key_admission import TIERS, KeyAdmission, effective_tier
from altus4.services.key_usage import UsageLedger
from altus4.services.rate_limits import RateLimiter, Verdict
from altus4.services.revocations import Revocations
from altus4.times import naive_utc, utcnow

# a key's row as its owner sees it: `rate_limit_tier` is what counts (capped by the account's tier)
_SELECT = (
    "SELECT k.id, k.user_id, k.name, k.key_prefix, k.key_hash, k.environment, k.permissions, k.rate_limit_tier,"
    " k.expires_at, k.last_used, k.last_used_ip, k.usage_count, k.is_active, k.created_at, k.updated_at,"
    " u.tier AS account_tier FROM api_keys k JOIN users u ON u.id = k.user_id"
)


def _as_counted(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "rate_limit_tier": effective_tier(row["rate_limit_tier"], row["account_tier"])}


@dataclass(frozen=True)
class KeyUsage:
    key_id: str
    days: int
    daily: list[tuple[date, int]]  # (day, requests), days without requests left out
    total: int  # every request since the key was made
    last_used: datetime | None
    tier: str
    rate_limit: Verdict  # where the key stands in its current window


class ApiKeyService:
    def __init__(
        self,
        db: Database,
        limiter: RateLimiter,
        admission: KeyAdmission,
        usage_ledger: UsageLedger,
        revocations: Revocations,
        box: SecretBox,
    ):
        self.box = box  # seals each new key's secret: tenant tokens are signed with it
        self.db = db
        self.limiter = limiter
        self.admission = admission
        self.usage_ledger = usage_ledger
        self.revocations = revocations

    def create(
        self, user_id: str, name: str, environment: str, permissions: list[str], tier: str, expires_at: datetime | None
    ) -> tuple[dict[str, Any], str]:
        """:raise ValidationFailed: `tier` is above the account's."""
        self._check_tier(user_id, tier)
        key_id, secret = str(uuid.uuid4()), keygen.generate(environment)
        self.db.execute(
            "INSERT INTO api_keys (id, user_id, name, key_prefix, key_hash, environment, permissions, rate_limit_tier,"
            " expires_at, sealed_secret) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                key_id,
                user_id,
                name,
                keygen.display_prefix(secret),
                keygen.digest(secret),
                environment,
                ",".join(dict.fromkeys(permissions)),
                tier,
                naive_utc(expires_at),
                self.box.encrypt(secret, keygen.sealing_context(key_id)),
            ),
            landed=("SELECT 1 FROM api_keys WHERE id = %s", (key_id,)),
        )
        return self.get(user_id, key_id), secret

    def _check_tier(self, user_id: str, tier: str) -> None:
        """:raise ValidationFailed: `tier` is above the account's (users do not choose their own limits)."""
        row = self.db.fetch_one("SELECT tier FROM users WHERE id = %s", (user_id,))
        account = row["tier"] if row else TIERS[0]
        if TIERS.index(tier) > TIERS.index(account):
            raise ValidationFailed(
                f"Rate-limit tier {tier!r} is above this account's tier ({account!r}); an administrator sets it",
                details=[{"field": "rateLimitTier", "code": "above_account_tier", "message": f"at most {account!r}"}],
            )

    def setup_first_key(self, user_id: str) -> tuple[dict[str, Any], str]:
        if self.db.fetch_one("SELECT id FROM api_keys WHERE user_id = %s LIMIT 1", (user_id,)):
            raise Conflict("API key already exists for this user", code="API_KEY_EXISTS")
        return self.create(user_id, "Default API Key", "test", ["search", "analytics"], "free", None)

    def owned_by(self, user_id: str, current_usage: bool = False) -> list[dict[str, Any]]:
        """The user's keys, newest first; `current_usage` writes queued use counts first (what a list shows)."""
        if current_usage:
            self.usage_ledger.flush()
        rows = self.db.fetch_all(f"{_SELECT} WHERE k.user_id = %s ORDER BY k.created_at DESC", (user_id,))
        return [_as_counted(row) for row in rows]

    def get(self, user_id: str, key_id: str) -> dict[str, Any]:
        """:raise NotFound: the key does not exist or belongs to someone else (indistinguishable)."""
        row = self.db.fetch_one(f"{_SELECT} WHERE k.id = %s AND k.user_id = %s", (key_id, user_id))
        if row is None:
            raise NotFound("API key not found")
        return _as_counted(row)

    def update(self, user_id: str, key_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """:raise ValidationFailed: a tier above the account's."""
        row = self.get(user_id, key_id)
        if "rateLimitTier" in changes:
            self._check_tier(user_id, changes["rateLimitTier"])
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
                    value = naive_utc(value)
                values[column] = value
        if values:
            assignments, params = set_clause(values)
            self.db.execute(
                f"UPDATE api_keys SET {assignments} WHERE id = %s AND user_id = %s",
                (*params, key_id, user_id),
                idempotent=True,
            )
            self.admission.forget(row["key_hash"])
        return self.get(user_id, key_id)

    def revoke(self, user_id: str, key_id: str) -> None:
        """At once for every worker, even while MySQL is down (`altus4.services.revocations`)."""
        row = self.get(user_id, key_id)
        self.revocations.revoke(key_id, user_id, row["key_hash"])

    def regenerate(self, user_id: str, key_id: str) -> tuple[dict[str, Any], str]:
        """A new secret under a new id with the same settings; the old key stops working at once."""
        old = self.db.fetch_one("SELECT * FROM api_keys WHERE id = %s AND user_id = %s", (key_id, user_id))
        if old is None:
            raise NotFound("API key not found")
        new_id, secret = str(uuid.uuid4()), keygen.generate(old["environment"])

        def write(cur) -> None:
            cur.execute("UPDATE api_keys SET is_active = 0 WHERE id = %s AND user_id = %s", (key_id, user_id))
            cur.execute(
                "INSERT INTO api_keys (id, user_id, name, key_prefix, key_hash, environment, permissions,"
                " rate_limit_tier, expires_at, sealed_secret) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
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
                    self.box.encrypt(secret, keygen.sealing_context(new_id)),
                ),
            )

        self.db.write_retrying(write, 1, landed=("SELECT 1 FROM api_keys WHERE id = %s", (new_id,)))
        self.admission.forget(old["key_hash"])
        return self.get(user_id, new_id), secret

    def account_usage(self, user_id: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """Requests per key and day in [start, end), over every key of the user's (revoked ones too)."""
        self.usage_ledger.flush()
        return self.db.fetch_all(
            "SELECT k.id, k.name, u.day, u.request_count FROM api_key_usage u JOIN api_keys k ON k.id = u.api_key_id"
            " WHERE k.user_id = %s AND u.day >= %s AND u.day < %s ORDER BY u.day, k.id",
            (user_id, start.date(), end.date()),
        )

    def forget_all(self, user_id: str) -> None:
        """Drop every cached key of a user (before the account is deleted)."""
        for row in self.db.fetch_all("SELECT key_hash FROM api_keys WHERE user_id = %s", (user_id,)):
            self.admission.forget(row["key_hash"])

    def usage(self, user_id: str, key_id: str, days: int) -> KeyUsage:
        """Requests per day over the last `days` (today included), after flushing what is queued."""
        row = self.get(user_id, key_id)
        self.usage_ledger.flush()
        since = (utcnow() - timedelta(days=days - 1)).date()
        daily = self.db.fetch_all(
            "SELECT day, request_count FROM api_key_usage WHERE api_key_id = %s AND day >= %s ORDER BY day",
            (key_id, since),
        )
        fresh = self.db.fetch_one("SELECT last_used, usage_count FROM api_keys WHERE id = %s", (key_id,))
        tier = row["rate_limit_tier"]
        return KeyUsage(
            key_id=key_id,
            days=days,
            daily=[(d["day"], int(d["request_count"])) for d in daily],
            total=int(fresh["usage_count"]) if fresh else 0,
            last_used=fresh["last_used"] if fresh else None,
            tier=tier,
            rate_limit=self.limiter.peek(f"key:{key_id}", self.admission.tier_limits[tier]),
        )
