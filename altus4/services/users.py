"""Accounts: registration, login, profile, password changes, token revocation, deletion."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pymysql

from altus4.config import Settings
from altus4.db.pool import Database
from altus4.db.sql import set_clause
from altus4.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from altus4.security import passwords, tokens
from altus4.services.password_guard import PasswordGuard
from altus4.times import utcnow

_USER_COLUMNS = "id, email, name, role, tier, is_active, password_changed_at, created_at, last_active"


class UserService:
    def __init__(self, db: Database, settings: Settings, guard: PasswordGuard):
        self.db = db
        self.settings = settings
        self.guard = guard  # every check of an account's password takes a try there first

    def issue_token(self, user: dict[str, Any], jti: str | None = None, issued_ms: int | None = None) -> str:
        token, _ = tokens.issue(
            user["id"], user["role"], self.settings.jwt_secret, self.settings.jwt_expires_in, jti, issued_ms
        )
        return token

    def refresh(self, user: dict[str, Any], claims: tokens.TokenClaims) -> str:
        """The presented token's successor, revoking it after JWT_REFRESH_GRACE. A token has one successor:
        refreshing it again within the grace gives the same token back (once, 20 refreshes of one token made
        20 live tokens, and logging out ended only one of them)."""
        jti, issued_ms = str(uuid.uuid4()), int(time.time() * 1000)
        expires = datetime.fromtimestamp(claims.expires_at, UTC).replace(tzinfo=None)
        effective = utcnow() + timedelta(seconds=self.settings.jwt_refresh_grace)
        found: list[dict[str, Any]] = []

        def write(cur) -> None:  # the row lock makes concurrent refreshes of one token agree
            cur.execute(
                "INSERT INTO revoked_tokens (jti, user_id, expires_at, effective_at, successor_jti, successor_iat_ms)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON DUPLICATE KEY UPDATE effective_at = LEAST(effective_at, %s),"
                " successor_jti = COALESCE(successor_jti, %s), successor_iat_ms = COALESCE(successor_iat_ms, %s)",
                (claims.jti, claims.user_id, expires, effective, jti, issued_ms, effective, jti, issued_ms),
            )
            cur.execute("SELECT successor_jti, successor_iat_ms FROM revoked_tokens WHERE jti = %s", (claims.jti,))
            found.append(cur.fetchone())

        self.db.write_retrying(write, 1, idempotent=True)  # the first successor stays: a repeat returns it
        row = found[-1]
        return self.issue_token(user, row["successor_jti"], int(row["successor_iat_ms"]))

    def register(self, email: str, password: str, name: str, role: str = "user") -> dict[str, Any]:
        user_id = str(uuid.uuid4())
        try:
            self.db.execute(
                "INSERT INTO users (id, email, name, password_hash, role, tier) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    user_id,
                    email.lower(),
                    name,
                    passwords.hash_password(password),
                    role,
                    self.settings.default_account_tier,
                ),
                landed=("SELECT 1 FROM users WHERE id = %s", (user_id,)),
            )
        except pymysql.err.IntegrityError:
            raise Conflict("User with this email already exists", code="USER_EXISTS") from None
        return self.get(user_id)

    def authenticate(self, email: str, password: str) -> dict[str, Any]:
        """:raise RateLimited: too many wrong passwords for this e-mail lately (`PasswordGuard`)."""
        self.guard.attempt(email)
        row = self.db.fetch_one(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE email = %s", (email.lower(),))
        matches = passwords.verify_password(row["password_hash"] if row else None, password)  # hashes either way
        if row is None or not matches or not row["is_active"]:
            raise Unauthorized("Invalid email or password", code="INVALID_CREDENTIALS")
        self.guard.succeeded(email)
        self.db.execute("UPDATE users SET last_active = %s WHERE id = %s", (utcnow(), row["id"]), idempotent=True)
        return self.get(row["id"])

    def get(self, user_id: str) -> dict[str, Any]:
        row = self.db.fetch_one(f"SELECT {_USER_COLUMNS} FROM users WHERE id = %s", (user_id,))
        if row is None:
            raise NotFound("User not found")
        return row

    def decode_token(self, token: str) -> tokens.TokenClaims:
        """:raise Unauthorized: expired, forged or malformed token."""
        try:
            return tokens.decode(token, self.settings.jwt_secret)
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Token has expired", code="TOKEN_EXPIRED") from None
        except jwt.InvalidTokenError:
            raise Unauthorized("Invalid token", code="INVALID_TOKEN") from None

    def live_user(self, claims: tokens.TokenClaims) -> dict[str, Any]:
        """The user behind valid claims, in one query.

        :raise Unauthorized: the user is gone or disabled, the token was revoked or predates a password change.
        """
        row = self.db.fetch_one(
            f"SELECT {_USER_COLUMNS}, "
            "EXISTS(SELECT 1 FROM revoked_tokens WHERE jti = %s AND effective_at <= %s) AS revoked "
            "FROM users WHERE id = %s",
            (claims.jti, utcnow(), claims.user_id),
        )
        if row is None or not row["is_active"] or row["revoked"]:
            raise Unauthorized("Token is no longer valid", code="INVALID_TOKEN")
        changed = row["password_changed_at"]
        if changed and claims.issued_at < changed.replace(tzinfo=UTC).timestamp():
            raise Unauthorized("Token predates a password change", code="INVALID_TOKEN")
        return row

    def connected_database_ids(self, user_id: str) -> list[str]:
        rows = self.db.fetch_all(
            "SELECT id FROM database_connections WHERE user_id = %s AND is_active = 1 ORDER BY created_at", (user_id,)
        )
        return [r["id"] for r in rows]

    def update_profile(self, user_id: str, name: str | None, email: str | None) -> dict[str, Any]:
        changes = {k: v for k, v in (("name", name), ("email", email.lower() if email else None)) if v is not None}
        if changes:
            assignments, params = set_clause(changes)
            try:
                self.db.execute(f"UPDATE users SET {assignments} WHERE id = %s", (*params, user_id), idempotent=True)
            except pymysql.err.IntegrityError:
                raise Conflict("User with this email already exists", code="USER_EXISTS") from None
        return self.get(user_id)

    def confirm_password(self, user: dict[str, Any], password: str) -> None:
        """For changes only the account's owner may make (password, e-mail, deletion), even with its token.
        :raise Unauthorized: the password is wrong. :raise RateLimited: too many wrong ones lately."""
        self.guard.attempt(user["email"])
        row = self.db.fetch_one("SELECT password_hash FROM users WHERE id = %s", (user["id"],))
        if row is None or not passwords.verify_password(row["password_hash"], password):
            raise Unauthorized("Current password is incorrect", code="INVALID_CREDENTIALS")
        self.guard.succeeded(user["email"])

    def change_password(self, user: dict[str, Any], current: str, new: str) -> dict[str, Any]:
        """The user, with the password changed; every token issued before now stops working."""
        self.confirm_password(user, current)
        user_id = user["id"]
        if current == new:
            raise ValidationFailed(
                "New password must differ from the current one",
                details=[{"field": "newPassword", "code": "unchanged", "message": "must differ from currentPassword"}],
            )
        # whole milliseconds, as stored (MySQL 8 rounds, MariaDB truncates): a token issued after this
        # instant (iat_ms, truncated) is never taken for an earlier one by live_user
        now = utcnow()
        changed = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self.db.execute(
            "UPDATE users SET password_hash = %s, password_changed_at = %s WHERE id = %s",
            (passwords.hash_password(new), changed, user_id),
            idempotent=True,
        )
        return self.get(user_id)

    def revoke_token(self, claims: tokens.TokenClaims, grace_seconds: int = 0) -> None:
        """Revoke the token, `grace_seconds` from now; revoking it again never extends the grace."""
        expires = datetime.fromtimestamp(claims.expires_at, UTC).replace(tzinfo=None)
        effective = utcnow() + timedelta(seconds=grace_seconds)

        def write(cur) -> None:
            cur.execute(
                "INSERT INTO revoked_tokens (jti, user_id, expires_at, effective_at) VALUES (%s, %s, %s, %s) "
                "ON DUPLICATE KEY UPDATE effective_at = LEAST(effective_at, %s)",
                (claims.jti, claims.user_id, expires, effective, effective),
            )
            cur.execute("DELETE FROM revoked_tokens WHERE expires_at < %s LIMIT 100", (utcnow(),))

        self.db.write_retrying(write, 1, idempotent=True)  # LEAST: a repeat never extends the grace

    def delete(self, user_id: str) -> None:
        """Remove the account; foreign keys cascade to keys, connections, analytics and tokens."""
        self.db.execute("DELETE FROM users WHERE id = %s", (user_id,), idempotent=True)

    def set_tier(self, user_id: str, tier: str) -> dict[str, Any]:
        """An admin's decision: the account's rate-limit tier, which caps its keys' (see `effective_tier`).
        :raise NotFound: no such user."""
        self.get(user_id)
        self.db.execute("UPDATE users SET tier = %s WHERE id = %s", (tier, user_id), idempotent=True)
        return self.get(user_id)

    def by_email(self, email: str) -> dict[str, Any]:
        """:raise NotFound: no user with that e-mail."""
        row = self.db.fetch_one(f"SELECT {_USER_COLUMNS} FROM users WHERE email = %s", (email.lower(),))
        if row is None:
            raise NotFound(f"No user with email {email}")
        return row

    def promote(self, email: str) -> dict[str, Any]:
        """Make an existing user an admin (CLI only: nobody becomes admin through the API)."""
        if not self.db.execute("UPDATE users SET role = 'admin' WHERE email = %s", (email.lower(),)):
            row = self.db.fetch_one("SELECT id FROM users WHERE email = %s", (email.lower(),))
            if row is None:
                raise NotFound(f"No user with email {email}")
        promoted = self.db.fetch_one(f"SELECT {_USER_COLUMNS} FROM users WHERE email = %s", (email.lower(),))
        if promoted is None:
            raise NotFound(f"No user with email {email}")
        return promoted
