"""Password guessing bounded per account, whatever address it comes from.

The per-address limit on login (AUTH_RATE_LIMIT) does not stop a guesser with many addresses: 60 wrong
passwords for one account from 7 addresses were all answered 401, and a signed-in attacker could try
`currentPassword` on change-password without limit. Every check of an account's password (login,
change-password, e-mail change, account deletion) takes a try here first, counted per account in Redis:
the first PASSWORD_FREE_ATTEMPTS failures cost nothing; after them each try must wait a backoff that doubles
(2 s, 4 s, ... at most PASSWORD_MAX_BACKOFF), and a try during the wait is refused (429) without checking
the password. The right password, once the wait is over, clears the count, so nobody is locked out for good;
an account left alone for an hour starts afresh. Counted by e-mail, for accounts that do not exist too, so
the answers tell nothing about which exist. Without Redis the count is kept per worker.
"""

from __future__ import annotations

import hashlib
import threading
import time

import redis
from redis.commands.core import Script

from altus4.errors import RateLimited
from altus4.redis_store import RedisStore

FORGET_AFTER = 3600  # seconds without a try after which an account's count starts afresh

# KEYS: the account's hash; ARGV: free attempts, max backoff. Returns {allowed, seconds to wait}.
_TRY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local blocked = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if blocked > now then return {0, math.ceil(blocked - now)} end
local n = redis.call('HINCRBY', KEYS[1], 'count', 1)
local free = tonumber(ARGV[1])
if n > free then
  redis.call('HSET', KEYS[1], 'until', tostring(now + math.min(2 ^ (n - free), tonumber(ARGV[2]))))
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, 0}
"""


class PasswordGuard:
    def __init__(self, store: RedisStore, free_attempts: int, max_backoff: int):
        self.store = store
        self.free = free_attempts
        self.max_backoff = max_backoff
        self._script: Script | None = None
        self._local: dict[str, tuple[int, float, float]] = {}  # key -> (count, until, last try), Redis down
        self._lock = threading.Lock()

    def _key(self, email: str) -> str:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()
        return self.store.key(f"pwtry:{{{digest}}}")

    def attempt(self, email: str) -> None:
        """Take a try at `email`'s password, counted as failed until `succeeded` says otherwise.
        :raise RateLimited: the account must wait before its password is checked again."""
        key = self._key(email)
        try:
            with self.store.guard() as client:
                script = self._script or client.register_script(_TRY)
                self._script = script
                allowed, wait = script(keys=[key], args=[self.free, self.max_backoff, FORGET_AFTER])
        except redis.RedisError:
            allowed, wait = self._attempt_locally(key)
        if not allowed:
            raise RateLimited(
                f"Too many wrong passwords for this account. Try again in {wait} seconds.",
                details={"retryAfter": int(wait)},
                headers={"Retry-After": str(int(wait))},
            )

    def succeeded(self, email: str) -> None:
        """The password was right: the account's count starts afresh."""
        key = self._key(email)
        self.store.safe(lambda r: r.delete(key), None)
        with self._lock:
            self._local.pop(key, None)

    def _attempt_locally(self, key: str) -> tuple[int, int]:
        now = time.time()
        with self._lock:
            if len(self._local) > 100_000:
                self._local.clear()
            count, until, last = self._local.get(key, (0, 0.0, now))
            if now - last > FORGET_AFTER:
                count, until = 0, 0.0
            if until > now:
                return 0, int(until - now) + 1
            count += 1
            if count > self.free:
                until = now + min(2 ** (count - self.free), self.max_backoff)
            self._local[key] = (count, until, now)
            return 1, 0
