"""JWT access tokens (HS256). Each carries a `jti` so logout can revoke exactly that token."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ISSUER = "altus4"


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    jti: str
    issued_at: float
    expires_at: float


def issue(
    user_id: str, role: str, secret: str, ttl_seconds: int, jti: str | None = None, issued_ms: int | None = None
) -> tuple[str, TokenClaims]:
    """A signed token; with `jti` and `issued_ms` (a refresh's recorded successor) the same claims, and so the
    same token, as when they were first issued."""
    issued_ms = int(time.time() * 1000) if issued_ms is None else issued_ms
    now = issued_ms / 1000
    claims = TokenClaims(user_id=user_id, jti=jti or str(uuid.uuid4()), issued_at=now, expires_at=now + ttl_seconds)
    payload = {
        "sub": user_id,
        "role": role,
        "jti": claims.jti,
        "iss": ISSUER,
        "iat": int(now),
        "iat_ms": issued_ms,
        "exp": int(claims.expires_at),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def decode(token: str, secret: str) -> TokenClaims:
    """Raises jwt.InvalidTokenError (expired, bad signature, malformed, missing or mistyped claims)."""
    payload = jwt.decode(
        token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["sub", "jti", "exp", "iat"]}
    )
    issued_ms = payload.get("iat_ms", payload["iat"] * 1000)
    if isinstance(issued_ms, bool) or not isinstance(issued_ms, int | float) or not math.isfinite(issued_ms):
        raise jwt.InvalidTokenError("iat_ms must be a number")  # signed with our secret, but not by us
    issued = issued_ms / 1000
    return TokenClaims(
        user_id=str(payload["sub"]), jti=str(payload["jti"]), issued_at=issued, expires_at=float(payload["exp"])
    )
