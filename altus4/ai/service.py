"""The AI layer as search sees it: budgeted, rate-limited, breaker-guarded calls with cached embeddings.

Every method either returns a validated answer within its time budget or raises `AIUnavailable` with
a reason; callers then use their non-AI answer. Embeddings are looked up by model and text hash in
Redis, then in the metadata database (where `altus4 index` puts them ahead of time), and only the rest
go to the model, in one batch; so a repeated query, or an indexed row, costs no model call.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from altus4.ai.provider import AIUnavailable, NullProvider, OpenAIProvider
from altus4.ai.resilience import CircuitBreaker, SharedLimiter
from altus4.ai.store import EmbeddingStore, content_hash, from_bytes, to_bytes
from altus4.config import Settings
from altus4.metrics import Metrics
from altus4.redis_store import RedisStore

log = logging.getLogger("altus4.ai")
EMBEDDING_TTL = 7 * 86400
MIN_USEFUL_BUDGET = 0.05  # seconds: below this an AI call cannot finish, so do not start one


def _pack(vector: list[float]) -> str:
    return base64.b64encode(to_bytes(vector)).decode()


def _unpack(text: str) -> list[float]:
    return from_bytes(base64.b64decode(text))


class AIService:
    def __init__(
        self,
        settings: Settings,
        store: RedisStore,
        metrics: Metrics | None = None,
        provider=None,
        embeddings: EmbeddingStore | None = None,
    ):
        self.settings = settings
        self.store = store
        self.metrics = metrics or Metrics()
        self.embeddings = embeddings
        if provider is not None:
            self.provider = provider
        elif settings.openai_api_key:
            self.provider = OpenAIProvider(
                settings.openai_api_key,
                settings.openai_base_url,
                settings.openai_model,
                settings.openai_embedding_model,
            )
        else:
            self.provider = NullProvider()
        self.breaker = CircuitBreaker(failures=settings.ai_breaker_failures, reset_after=settings.ai_breaker_reset)
        self.limiter = SharedLimiter(
            store,
            settings.ai_rate_limit_per_minute,
            {
                "free": settings.ai_hourly_free,
                "pro": settings.ai_hourly_pro,
                "enterprise": settings.ai_hourly_enterprise,
            },
            settings.ai_queue_wait_ms / 1000,
        )

    @property
    def enabled(self) -> bool:
        return not isinstance(self.provider, NullProvider)

    def status(self) -> dict[str, Any]:
        if not self.enabled:
            return {"status": "disabled", "reason": "OPENAI_API_KEY is not set; search runs without AI features"}
        state = {0: "closed", 1: "half_open", 2: "open"}[self.breaker.state]
        return {
            "status": "configured" if state == "closed" else "degraded",
            "circuit": state,
            "model": self.settings.openai_model,
            "embeddingModel": self.settings.openai_embedding_model,
        }

    def _observe(self, operation: str, outcome: str, tokens: int = 0) -> None:
        self.metrics.ai_calls.labels(operation, outcome).inc()
        if tokens:
            self.metrics.ai_tokens.labels(operation).inc(tokens)
        self.metrics.ai_breaker_state.set(self.breaker.state)

    def _run(
        self,
        operation: str,
        call: Callable[[float], tuple[Any, int]],
        user_id: str | None,
        tier: str,
        budget: float,
        queue_wait: float | None = None,
    ) -> Any:
        started = time.monotonic()
        try:
            if not self.enabled:
                raise AIUnavailable("not_configured", "OPENAI_API_KEY is not set")
            if budget < MIN_USEFUL_BUDGET:
                raise AIUnavailable("budget_exhausted", "no time left in the search budget")
            if not self.breaker.allow():
                raise AIUnavailable("circuit_open", "too many recent AI failures")
            self.limiter.acquire(user_id, tier, queue_wait)
            left = budget - (time.monotonic() - started)
            if queue_wait is None:  # a request's call; a job's keeps its whole budget
                left = min(left, self.settings.ai_timeout_ms / 1000)
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

    @staticmethod
    def _durable(operation, default):
        """The embeddings table is an accelerator too: if the metadata database fails here, carry on."""
        try:
            return operation()
        except Exception:  # noqa: BLE001 - logged; search must not fail over a cache
            log.warning("embedding store unavailable", exc_info=True)
            return default

    def embed(self, texts: list[str], user_id: str, tier: str, budget: float) -> list[list[float]]:
        """Unit vectors for `texts`, from the cache where possible and one batched call for the rest."""
        if not self.enabled:
            self._observe("embed", "not_configured")
            raise AIUnavailable("not_configured", "OPENAI_API_KEY is not set")
        model = self.settings.openai_embedding_model
        hashes = [content_hash(t) for t in texts]
        keys = [self.store.key(f"emb:{model}:{h}") for h in hashes]
        none: list[Any] = [None] * len(keys)
        cached = self.store.safe(lambda r: r.mget(keys), none, read=True)
        vectors: list[list[float] | None] = [_unpack(c) if c else None for c in cached]
        missing = [i for i, v in enumerate(vectors) if v is None]
        self.store.count_cache("embedding", not missing)
        if missing and self.embeddings is not None:
            stored = self._durable(lambda: self.embeddings.get(model, [hashes[i] for i in missing]), {})
            for i in missing:
                vectors[i] = stored.get(hashes[i])
        unembedded = [i for i in missing if vectors[i] is None]
        if unembedded:
            fresh = self._run(
                "embed", lambda t: self.provider.embed([texts[i] for i in unembedded], t), user_id, tier, budget
            )
            for i, vector in zip(unembedded, fresh):
                vectors[i] = vector
            store = self.embeddings
            if store is not None:
                self._durable(lambda: store.put(model, dict(zip([hashes[i] for i in unembedded], fresh))), None)
        complete = [v for v in vectors if v is not None]
        if len(complete) != len(vectors):
            raise AIUnavailable("invalid_response", "the provider returned fewer vectors than texts")
        if missing:

            def remember(r):
                pipe = r.pipeline(transaction=False)
                for i in missing:
                    pipe.set(keys[i], _pack(complete[i]), ex=EMBEDDING_TTL)
                pipe.execute()

            self.store.safe(remember, None)
        return complete

    def embed_job(self, texts: list[str], timeout: float = 120.0) -> list[list[float]]:
        """Vectors for a batch job (`altus4 index`): one model call through the breaker and the fleet's budget,
        waiting up to `timeout` for both, with no per-user budget and no cache look-up (the job has its own).

        :raise AIUnavailable: not configured, breaker open, budget not granted in time, or the call failed.
        """
        return self._run(
            "index", lambda left: self.provider.embed(texts, left), None, "enterprise", timeout, queue_wait=timeout
        )

    # ---- chat features: each validated here, each with a non-AI answer at the caller ----------------
    def _chat(self, operation: str, system: str, payload: dict, validate, user_id: str, tier: str, budget: float):
        def call(timeout: float):
            parsed, tokens = self.provider.chat_json(system, json.dumps(payload), timeout)
            try:
                return validate(parsed), tokens
            except (KeyError, TypeError, ValueError) as exc:
                raise AIUnavailable("invalid_response", f"{operation}: {exc}") from None

        return self._run(operation, call, user_id, tier, budget)

    def expand(self, query: str, user_id: str, tier: str, budget: float) -> list[str]:
        """Up to 5 extra search terms (synonyms, related words) to widen the lexical candidate set."""

        def valid(parsed: dict) -> list[str]:
            terms = [str(t).strip().lower() for t in parsed["terms"][:5]]
            if any(not re.fullmatch(r"[\w' -]{1,40}", t, re.UNICODE) for t in terms):
                raise ValueError("expansion terms must be short words")
            return [t for t in terms if t and t not in query.lower()]

        return self._chat("expand", EXPAND_PROMPT, {"query": query}, valid, user_id, tier, budget)

    def suggest(self, query: str, vocabulary: list[str], user_id: str, tier: str, budget: float) -> list[dict]:
        """Spelling corrections and related queries for `query`."""

        def valid(parsed: dict) -> list[dict]:
            out = []
            for item in parsed["suggestions"][:5]:
                text, kind = str(item["text"]).strip(), item.get("type", "semantic")
                if not 0 < len(text) <= 100 or kind not in ("spelling", "semantic"):
                    raise ValueError("suggestion outside the allowed shape")
                out.append({"text": text, "type": kind})
            return out

        return self._chat(
            "suggest", SUGGEST_PROMPT, {"query": query, "vocabulary": vocabulary[:50]}, valid, user_id, tier, budget
        )

    def insights(self, stats: dict, user_id: str, tier: str, budget: float) -> list[dict]:
        """Findings about a user's search analytics, beyond the rule-based ones."""

        def valid(parsed: dict) -> list[dict]:
            out = []
            for item in parsed["insights"][:3]:
                kind = item["type"]
                if kind not in ("query_optimization", "trend_analysis", "semantic_enhancement"):
                    raise ValueError(f"unknown insight type {kind!r}")
                description = str(item["description"]).strip()[:500]
                confidence = float(item.get("confidence", 0.5))
                if not description or not 0 <= confidence <= 1:
                    raise ValueError("insight outside the allowed shape")
                out.append(
                    {
                        "type": kind,
                        "description": description,
                        "confidence": round(confidence, 3),
                        "actionable": bool(item.get("actionable", False)),
                        "data": {},
                        "source": "ai",
                    }
                )
            return out

        return self._chat("insights", INSIGHTS_PROMPT, stats, valid, user_id, tier, budget)

    def optimisation(self, report: dict, user_id: str, tier: str, budget: float) -> list[dict]:
        """Advice on a query analysis (the EXPLAIN plans and the rule-based findings)."""

        def valid(parsed: dict) -> list[dict]:
            out = []
            for item in parsed["optimization"][:5]:
                kind, impact = item["type"], item.get("impact", "medium")
                description = str(item["description"]).strip()[:500]
                if (
                    kind not in ("index", "query", "schema")
                    or impact not in ("low", "medium", "high")
                    or not description
                ):
                    raise ValueError("optimisation item outside the allowed shape")
                out.append(
                    {
                        "type": kind,
                        "impact": impact,
                        "description": description,
                        "sqlSuggestion": str(item.get("sqlSuggestion", ""))[:1000],
                        "source": "ai",
                    }
                )
            return out

        return self._chat("optimise", OPTIMISE_PROMPT, report, valid, user_id, tier, budget)

    def categorise(self, results: list[dict], user_id: str, tier: str, budget: float) -> list[dict]:
        """Topic categories for a page of results: [{name, count, confidence}] over the given snippets."""

        def valid(parsed: dict) -> list[dict]:
            out = []
            for item in parsed["categories"][:5]:
                name = str(item["name"]).strip()[:60]
                members = sorted({int(i) for i in item.get("results", [])})
                if not name or any(not 0 <= i < len(results) for i in members):
                    raise ValueError("category outside the allowed shape")
                out.append(
                    {
                        "name": name,
                        "count": len(members),
                        "members": members,  # indexes into the page; the caller hands them to the results
                        "confidence": round(min(1.0, max(0.0, float(item.get("confidence", 0.5)))), 3),
                        "source": "ai",
                    }
                )
            return out

        payload = {
            "results": [{"i": i, "table": r["table"], "text": r["snippet"][:300]} for i, r in enumerate(results)]
        }
        return self._chat("categorise", CATEGORISE_PROMPT, payload, valid, user_id, tier, budget)


EXPAND_PROMPT = (
    "Give search terms that would find documents relevant to the user's query but not containing its words: "
    'synonyms and closely related terms. Answer only JSON: {"terms": ["...", ...]} with at most 5 terms.'
)
SUGGEST_PROMPT = (
    "You help users of a database search box. Given their query and words found in their data, answer only "
    'JSON: {"suggestions": [{"text": "...", "type": "spelling" | "semantic"}]} with at most 5 items: '
    "corrected spellings of the query and closely related queries. Prefer words from the vocabulary."
)
INSIGHTS_PROMPT = (
    "You analyse search analytics for a MySQL full-text search service. Given the statistics, answer only "
    'JSON: {"insights": [{"type": "query_optimization" | "trend_analysis" | "semantic_enhancement", '
    '"description": "...", "confidence": 0.0-1.0, "actionable": true | false}]} with at most 3 items, '
    "each a concrete recommendation."
)
OPTIMISE_PROMPT = (
    "You are a MySQL full-text search expert. Given EXPLAIN plans and findings for a search, answer only JSON: "
    '{"optimization": [{"type": "index" | "query" | "schema", "impact": "low" | "medium" | "high", '
    '"description": "...", "sqlSuggestion": "..."}]} with at most 5 items, each concrete.'
)
CATEGORISE_PROMPT = (
    "Group these search results into at most 5 topical categories. Answer only JSON: "
    '{"categories": [{"name": "...", "results": [indexes], "confidence": 0.0-1.0}]}.'
)
