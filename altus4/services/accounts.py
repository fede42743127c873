"""Account-wide changes that reach what the account owns: closing it, and its tier (which caps its keys)."""

from __future__ import annotations

from altus4.services.api_keys import ApiKeyService
from altus4.services.connections import ConnectionService
from altus4.services.users import UserService


class AccountService:
    def __init__(self, users: UserService, keys: ApiKeyService, connections: ConnectionService):
        self.users = users
        self.keys = keys
        self.connections = connections

    def close(self, user_id: str) -> None:
        """Delete the account and everything it owns.

        Keys leave every worker's cache first (so none works for a moment after), connections are deleted one
        by one (so their pools, caches and vectors are dropped), then the user row, whose foreign keys cascade
        to what is left: analytics, usage and revoked tokens.
        """
        self.keys.forget_all(user_id)
        for row in self.connections.owned_by(user_id):
            self.connections.delete(user_id, row["id"])
        self.users.delete(user_id)

    def set_tier(self, user_id: str, tier: str) -> dict:
        """An admin sets the account's tier; its keys' cached entries go, so the new cap counts at once."""
        user = self.users.set_tier(user_id, tier)
        self.keys.forget_all(user_id)
        return user
