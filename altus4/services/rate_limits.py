"""Fixed-window rate limits shared by every worker and host through Redis.

One pipelined round trip per request (INCR + EXPIRE for each window), keys
hash-tagged by bucket so a Redis Cluster keeps a bucket's windows on one slot.
If Redis is down, counting falls back to this process (limits then hold per
worker rather than per fleet, which is better than none).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import redis

from altus4.config import Limit
from altus4.redis_store import RedisStore


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # epoch seconds when the tightest window resets

    @property
    def retry_after(self) -> int:
        return max(1, self.reset_at - int(time.time()))

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


class RateLimiter:
    def __init__(self, store: RedisStore):
        self.store = store
        self._local: dict[str, int] = {}
        self._lock = threading.Lock()

    def keys(self, bucket: str, limits: tuple[Limit, ...]) -> list[tuple[str, Limit, int]]:
        """The bucket's counters for this moment (key, limit, reset time), for `stage` and `judge`."""
        now = time.time()
        out = []
        for limit in limits:
            window_start = int(now // limit.window) * limit.window
            key = self.store.key(f"rl:{{{bucket}}}:{limit.window}:{window_start}")
            out.append((key, limit, window_start + limit.window))
        return out

    @staticmethod
    def stage(pipe, keys) -> None:
        """Count one request on `pipe` (two replies per counter: the count, then EXPIRE's)."""
        for key, limit, _ in keys:
            pipe.incr(key)
            pipe.expire(key, limit.window + 1)

    def _count_in_redis(self, keys) -> list[int]:
        with self.store.guard() as client:
            pipe = client.pipeline(transaction=False)
            self.stage(pipe, keys)
            return pipe.execute()[::2]

    def _count_locally(self, keys) -> list[int]:
        with self._lock:
            if len(self._local) > 100_000:
                self._local.clear()
            counts = []
            for key, _, _ in keys:
                self._local[key] = self._local.get(key, 0) + 1
                counts.append(self._local[key])
            return counts

    def hit(self, bucket: str, limits: tuple[Limit, ...]) -> Verdict:
        keys = self.keys(bucket, limits)
        try:
            counts = self._count_in_redis(keys)
        except redis.RedisError:
            counts = self._count_locally(keys)
        return self.judge(keys, counts)

    @staticmethod
    def judge(keys, counts: list[int]) -> Verdict:
        """The verdict for counters `keys` now at `counts`: the blocking window that resets last, else the
        tightest one."""
        verdicts = [
            Verdict(count <= limit.amount, limit.amount, max(0, limit.amount - count), reset_at)
            for (_, limit, reset_at), count in zip(keys, counts, strict=False)
        ]
        blocked = [v for v in verdicts if not v.allowed]
        if blocked:
            return max(blocked, key=lambda v: v.reset_at)
        return min(verdicts, key=lambda v: v.remaining)

    def peek(self, bucket: str, limits: tuple[Limit, ...]) -> Verdict:
        """The state of the buckets without counting a request (for usage reports)."""
        keys = self.keys(bucket, limits)
        none: list[Any] = [None] * len(keys)
        values = self.store.safe(lambda r: r.mget([k for k, _, _ in keys]), none)
        verdicts = [
            Verdict(True, limit.amount, max(0, limit.amount - int(value or 0)), reset_at)
            for (_, limit, reset_at), value in zip(keys, values, strict=False)
        ]
        return min(verdicts, key=lambda v: v.remaining)
