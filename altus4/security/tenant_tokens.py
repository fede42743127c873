"""Tenant tokens: search keys an application mints for one tenant, offline, as Meilisearch's are.

A tenant token is a JWT (HS256) signed with an API key's own secret, claiming `apiKeyId` (that key's id),
`searchRules` and, optionally, `exp`. The rules say which databases the holder may search and with what
filter: `{"*": {"filter": "tenant_id = 42"}}`, or per database id, with `tables` too; a list of database
ids (or `["*"]`) means those, unfiltered. The holder can narrow a search but never widen its rule: the rule's
filter and the request's are both applied (`altus4.search.structured`).

The server verifies the signature with the key's secret, which it keeps encrypted at rest (AES-GCM, as
connection passwords are) from the key's creation on; a key made before tenant tokens must be regenerated
to mint them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"
ANY = "*"


class TenantTokenError(Exception):
    """The token is not one this key signed, is expired, or says nothing usable; `code` for the API."""

    def __init__(self, message: str, code: str = "INVALID_TENANT_TOKEN"):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class TenantClaims:
    api_key_id: str
    rules: dict[str, dict[str, Any]]  # database id (lower case) or "*" -> {"filter": ..., "tables": [...]}
    expires_at: float | None


def mint(api_key: str, api_key_id: str, search_rules: dict | list, expires_at: int | None = None) -> str:
    """What an application does (here for `altus4 tenant-token` and the tests; any JWT library will do)."""
    claims: dict[str, Any] = {"apiKeyId": api_key_id, "searchRules": search_rules}
    if expires_at is not None:
        claims["exp"] = int(expires_at)
    return jwt.encode(claims, api_key, algorithm=ALGORITHM)


def looks_like_tenant_token(token: str) -> bool:
    """A JWT naming an API key (no signature checked): the only kind of JWT search takes."""
    return api_key_id(token) is not None


def api_key_id(token: str) -> str | None:
    """The `apiKeyId` a JWT claims, unverified (which key to verify it with), or None for anything else."""
    if token.count(".") != 2:
        return None
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return None
    value = claims.get("apiKeyId") if isinstance(claims, dict) else None
    return value.lower() if isinstance(value, str) and 0 < len(value) <= 64 else None


def verify(token: str, secret: str) -> TenantClaims:
    """:raise TenantTokenError: a signature that is not the key's, an expired token, malformed rules."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise TenantTokenError("Tenant tokens are signed with HS256")
        claims = jwt.decode(token, secret, algorithms=[ALGORITHM], options={"require": ["apiKeyId", "searchRules"]})
    except jwt.ExpiredSignatureError:
        raise TenantTokenError("The tenant token has expired", "TOKEN_EXPIRED") from None
    except jwt.InvalidTokenError as exc:
        raise TenantTokenError(f"Invalid tenant token: {exc}") from None
    expires = claims.get("exp")
    if expires is not None and float(expires) <= time.time():
        raise TenantTokenError("The tenant token has expired", "TOKEN_EXPIRED")
    return TenantClaims(str(claims["apiKeyId"]).lower(), _rules(claims["searchRules"]), expires)


def _rules(raw: Any) -> dict[str, dict[str, Any]]:
    if isinstance(raw, list):
        if not all(isinstance(name, str) for name in raw):
            raise TenantTokenError("searchRules as a list holds database ids or '*'")
        return {name.lower(): {} for name in raw}
    if not isinstance(raw, dict) or not raw:
        raise TenantTokenError("searchRules must map '*' or database ids to rules")
    rules: dict[str, dict[str, Any]] = {}
    for name, rule in raw.items():
        if rule is None:
            rule = {}
        if not isinstance(rule, dict):
            raise TenantTokenError(f"the rule for {name!r} must be an object (or null)")
        unknown = set(rule) - {"filter", "tables"}
        if unknown:
            raise TenantTokenError(f"the rule for {name!r} has unknown fields: {', '.join(sorted(unknown))}")
        tables = rule.get("tables")
        if tables is not None and (not isinstance(tables, list) or not all(isinstance(t, str) for t in tables)):
            raise TenantTokenError(f"the rule for {name!r}: tables is a list of table names")
        rules[str(name).lower()] = {"filter": rule.get("filter"), "tables": tables}
    return rules
