"""The one Redis access layer: cache, rate limiter and counters all go through here.

Redis is an accelerator, never a dependency of correctness: callers use
`safe()` so that a Redis outage degrades to "no cache" rather than to a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import redis

from altus4.config import Settings

log = logging.getLogger("altus4.redis")
T = TypeVar("T")


class RedisStore:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.url = settings.redis_url
        self.client = redis.Redis.from_url(
            self.url, socket_timeout=settings.redis_socket_timeout,
            socket_connect_timeout=settings.redis_socket_timeout, decode_responses=True,
            health_check_interval=30,
        )

    def safe(self, operation: Callable[[redis.Redis], T], default: T) -> T:
        """Run `operation(client)`; on any Redis error log it once and return `default`."""
        try:
            return operation(self.client)
        except redis.RedisError as exc:
            log.warning("redis unavailable: %s", exc)
            return default

    def try_lock(self, name: str, seconds: int) -> bool:
        """True for the one caller fleet-wide that takes `name` in this window (False if Redis is down)."""
        return self.safe(lambda r: bool(r.set(name, "1", nx=True, ex=seconds)), False)

    def ping(self) -> bool:
        return self.safe(lambda r: bool(r.ping()), False)

    def close(self) -> None:
        self.client.close()
