"""What keeps AI trouble from becoming search trouble: a circuit breaker per worker, and a token-bucket
rate limit shared by every worker and host through Redis (a global per-minute budget and an hourly budget
per tier), with a short bounded wait for bursts."""

from __future__ import annotations

import threading
import time

import redis
from redis.commands.core import Script

from altus4.ai.provider import AIUnavailable
from altus4.redis_store import RedisStore

CLOSED, HALF_OPEN, OPEN = 0, 1, 2


class CircuitBreaker:
    """Opens after `failures` consecutive failures or when `error_rate` of the last `window` calls failed
    (with at least `min_calls`); after `reset_after` seconds one probe is let through (half-open): success
    closes it, failure opens it again."""

    def __init__(
        self,
        failures: int = 5,
        error_rate: float = 0.5,
        window: int = 20,
        min_calls: int = 10,
        reset_after: float = 15.0,
    ):
        self.failures, self.error_rate, self.window, self.min_calls = failures, error_rate, window, min_calls
        self.reset_after = reset_after
        self.state = CLOSED
        self._consecutive = 0
        self._recent: list[bool] = []
        self._opened_at = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        with self._lock:
            if self.state == CLOSED:
                return True
            if self.state == OPEN and time.monotonic() - self._opened_at >= self.reset_after:
                self.state = HALF_OPEN
                self._probing = False
            if self.state == HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def record(self, success: bool) -> None:
        with self._lock:
            self._recent = (self._recent + [success])[-self.window :]
            if success:
                self._consecutive = 0
                if self.state == HALF_OPEN:
                    self.state, self._recent = CLOSED, []
                return
            self._consecutive += 1
            failed = self._recent.count(False)
            too_many = self._consecutive >= self.failures or (
                len(self._recent) >= self.min_calls and failed / len(self._recent) >= self.error_rate
            )
            if self.state == HALF_OPEN or too_many:
                self.state, self._opened_at, self._probing = OPEN, time.monotonic(), False


# KEYS[1] bucket; ARGV: capacity, refill per second, now (seconds), cost. Returns {granted, wait_ms}.
_TAKE = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or capacity
local at = tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local granted = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  granted = 1
else
  wait = math.ceil((cost - tokens) / rate * 1000)
end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return {granted, wait}
"""


class SharedLimiter:
    """Token buckets in Redis. A caller that finds a bucket empty waits (at most `max_wait` seconds in
    total, polling when the next token is due) and then gives up with `rate_limited`."""

    def __init__(self, store: RedisStore, per_minute: int, hourly_by_tier: dict[str, int], max_wait: float):
        self.store = store
        self.per_minute = per_minute
        self.hourly_by_tier = hourly_by_tier
        self.max_wait = max_wait
        self._script: Script | None = None

    def _take(self, key: str, capacity: int, per_second: float) -> tuple[bool, float]:
        with self.store.guard() as client:
            script = self._script or client.register_script(_TAKE)
            self._script = script
            granted, wait_ms = script(keys=[key], args=[capacity, per_second, f"{time.time():.3f}", 1])
        return bool(granted), int(wait_ms) / 1000

    def acquire(self, user_id: str | None, tier: str, max_wait: float | None = None) -> None:
        """Take one call from the fleet's budget and, for a user's request, from theirs.

        A job (`user_id=None`, e.g. `altus4 index`) spends only the fleet's budget and may wait longer.
        :raise AIUnavailable('rate_limited'): the budgets could not grant a call within the wait.
        """
        deadline = time.monotonic() + (self.max_wait if max_wait is None else max_wait)
        buckets = [(self.store.key("ai:{bucket}:global"), self.per_minute, self.per_minute / 60)]
        if user_id is not None:
            hourly = self.hourly_by_tier.get(tier, self.hourly_by_tier["free"])
            buckets.append((self.store.key(f"ai:{{user:{user_id}}}:hourly"), hourly, hourly / 3600))
        for key, capacity, rate in buckets:
            while True:
                try:
                    granted, wait = self._take(key, capacity, rate)
                except redis.RedisError:
                    return  # no Redis: the breaker and the provider's own 429s still protect
                if granted:
                    break
                left = deadline - time.monotonic()
                if wait > left:
                    raise AIUnavailable("rate_limited", f"AI budget for {key.split(':')[1]} exhausted")
                time.sleep(max(0.005, wait))
