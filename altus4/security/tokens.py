"""JWT access tokens (HS256). Each carries a `jti` so logout can revoke exactly that token."""

from __future__ import annotations

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


def issue(user_id: str, role: str, secret: str, ttl_seconds: int) -> tuple[str, TokenClaims]:
    now = time.time()
    claims = TokenClaims(user_id=user_id, jti=str(uuid.uuid4()), issued_at=now, expires_at=now + ttl_seconds)
    payload = {
        "sub": user_id,
        "role": role,
        "jti": claims.jti,
        "iss": ISSUER,
        "iat": int(now),
        "iat_ms": int(now * 1000),
        "exp": int(claims.expires_at),
    }
    return jwt.encode(payload, secret, algorithm=ALGORITHM), claims


def decode(token: str, secret: str) -> TokenClaims:
    """Raises jwt.InvalidTokenError (expired, bad signature, malformed, missing claims)."""
    payload = jwt.decode(
        token, secret, algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["sub", "jti", "exp", "iat"]}
    )
    issued = payload.get("iat_ms", payload["iat"] * 1000) / 1000
    return TokenClaims(
        user_id=str(payload["sub"]), jti=str(payload["jti"]), issued_at=issued, expires_at=float(payload["exp"])
    )
