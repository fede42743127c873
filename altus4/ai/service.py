"""The AI layer as search sees it: budgeted, rate-limited, breaker-guarded calls with cached embeddings.

Every method either returns a validated answer within its time budget or raises `AIUnavailable` with
a reason; callers then use their non-AI answer. Query and row embeddings are cached in Redis by model
and text hash, so a repeated query costs no model call.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import time
from collections.abc import Callable
from typing import Any

from altus4.ai.provider import AIUnavailable, NullProvider, OpenAIProvider
from altus4.ai.resilience import CircuitBreaker, SharedLimiter
from altus4.config import Settings
from altus4.redis_store import RedisStore

EMBEDDING_TTL = 7 * 86400
MIN_USEFUL_BUDGET = 0.05  # seconds: below this an AI call cannot finish, so do not start one


def _pack(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class AIService:
    def __init__(self, settings: Settings, store: RedisStore, metrics=None, provider=None):
        self.settings = settings
        self.store = store
        self.metrics = metrics
        if provider is not None:
            self.provider = provider
        elif settings.openai_api_key:
            self.provider = OpenAIProvider(settings.openai_api_key, settings.openai_base_url, settings.openai_model,
                                           settings.openai_embedding_model)
        else:
            self.provider = NullProvider()
        self.breaker = CircuitBreaker(failures=settings.ai_breaker_failures, reset_after=settings.ai_breaker_reset)
        self.limiter = SharedLimiter(store, settings.ai_rate_limit_per_minute, {
            "free": settings.ai_hourly_free, "pro": settings.ai_hourly_pro, "enterprise": settings.ai_hourly_enterprise,
        }, settings.ai_queue_wait_ms / 1000)

    @property
    def enabled(self) -> bool:
        return not isinstance(self.provider, NullProvider)

    def status(self) -> dict[str, Any]:
        if not self.enabled:
            return {"status": "disabled", "reason": "OPENAI_API_KEY is not set; search runs without AI features"}
        state = {0: "closed", 1: "half_open", 2: "open"}[self.breaker.state]
        return {"status": "configured" if state == "closed" else "degraded", "circuit": state,
                "model": self.settings.openai_model, "embeddingModel": self.settings.openai_embedding_model}

    def _observe(self, operation: str, outcome: str, tokens: int = 0) -> None:
        if self.metrics is None:
            return
        self.metrics.ai_calls.labels(operation, outcome).inc()
        if tokens:
            self.metrics.ai_tokens.labels(operation).inc(tokens)
        self.metrics.ai_breaker_state.set(self.breaker.state)

    def _run(self, operation: str, call: Callable[[float], tuple[Any, int]], user_id: str, tier: str,
             budget: float) -> Any:
        started = time.monotonic()
        try:
            if not self.enabled:
                raise AIUnavailable("not_configured", "OPENAI_API_KEY is not set")
            if budget < MIN_USEFUL_BUDGET:
                raise AIUnavailable("budget_exhausted", "no time left in the search budget")
            if not self.breaker.allow():
                raise AIUnavailable("circuit_open", "too many recent AI failures")
            self.limiter.acquire(user_id, tier)
            left = min(budget - (time.monotonic() - started), self.settings.ai_timeout_ms / 1000)
            if left < MIN_USEFUL_BUDGET:
                raise AIUnavailable("budget_exhausted", "waited for the AI rate limit past the budget")
            try:
                result, tokens = call(left)
            except AIUnavailable:
                self.breaker.record(False)
                raise
            self.breaker.record(True)
            self._observe(operation, "ok", tokens)
            return result
        except AIUnavailable as exc:
            self._observe(operation, exc.reason)
            raise

    def embed(self, texts: list[str], user_id: str, tier: str, budget: float) -> list[list[float]]:
        """Unit vectors for `texts`, from the cache where possible and one batched call for the rest."""
        model = self.settings.openai_embedding_model
        keys = [f"emb:{model}:{hashlib.sha256(t.encode()).hexdigest()}" for t in texts]
        cached = self.store.safe(lambda r: r.mget(keys), [None] * len(keys), read=True)
        vectors: list[list[float] | None] = [_unpack(c) if c else None for c in cached]
        missing = [i for i, v in enumerate(vectors) if v is None]
        self.store.count_cache("embedding", not missing)
        if missing:
            fresh = self._run("embed", lambda t: self.provider.embed([texts[i] for i in missing], t), user_id, tier,
                              budget)
            for i, vector in zip(missing, fresh):
                vectors[i] = vector

            def remember(r):
                pipe = r.pipeline(transaction=False)
                for i in missing:
                    pipe.set(keys[i], _pack(vectors[i]), ex=EMBEDDING_TTL)
                pipe.execute()

            self.store.safe(remember, None)
        return vectors  # type: ignore[return-value]
