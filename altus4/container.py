"""The services a running app holds, built once per app from its settings.

Routes reach them through `services()`; nothing is created at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from altus4.ai.ann import NodeIndexes
from altus4.ai.service import AIService
from altus4.ai.store import EmbeddingStore
from altus4.config import Settings
from altus4.db.pool import Database
from altus4.db.schema import SchemaCache
from altus4.db.target_pools import TargetPools
from altus4.metrics import Metrics
from altus4.redis_store import RedisStore
from altus4.search.assist import Assistant
from altus4.search.recorded import RecordedSearch
from altus4.search.service import SearchService
from altus4.security.secrets_box import SecretBox
from altus4.services.accounts import AccountService
from altus4.services.analytics import AnalyticsService
from altus4.services.api_keys import ApiKeyService
from altus4.services.connections import ConnectionService
from altus4.services.key_admission import KeyAdmission
from altus4.services.key_usage import UsageLedger
from altus4.services.password_guard import PasswordGuard
from altus4.services.rate_limits import RateLimiter
from altus4.services.reports import ReportService
from altus4.services.revocations import Revocations
from altus4.services.users import UserService
from altus4.write_behind import WriteBehind


@dataclass
class Services:
    settings: Settings
    metrics: Metrics
    db: Database
    redis: RedisStore
    limiter: RateLimiter
    users: UserService
    accounts: AccountService
    keys: ApiKeyService  # owners' lifecycle
    admission: KeyAdmission  # the hot path: key, limit, permission
    usage: UsageLedger  # counted requests, buffered
    connections: ConnectionService
    analytics: AnalyticsService
    write_behind: WriteBehind
    pools: TargetPools
    search: SearchService
    searches: RecordedSearch  # search as the API runs it: recorded, with analytics on request
    ai: AIService
    reports: ReportService
    assistant: Assistant

    @classmethod
    def build(cls, settings: Settings, started: float, metrics: Metrics) -> Services:
        store = RedisStore(settings, metrics)
        db = Database(settings, store, metrics)
        limiter = RateLimiter(store)
        schemas = SchemaCache(store, settings.schema_cache_ttl)
        box = SecretBox(settings.encryption_key)
        connections = ConnectionService(db, box, schemas, settings, store)
        pools = TargetPools(settings, metrics)
        connections.listeners.append(pools.discard)
        write_behind = WriteBehind(store, settings.write_behind_interval_ms / 1000, db.deployment_id)
        admission = KeyAdmission(db, store, limiter, settings, box)
        usage = UsageLedger(db, store, write_behind)
        analytics = AnalyticsService(db, store, write_behind)
        ai = AIService(settings, store, metrics, embeddings=EmbeddingStore(db))
        vectors = NodeIndexes(db, store, settings.vector_index_dir, settings.vector_exact_max_rows, metrics)
        connections.listeners.append(vectors.forget)
        search = SearchService(connections, pools, store, settings, metrics, ai, vectors)
        users = UserService(
            db, settings, PasswordGuard(store, settings.password_free_attempts, settings.password_max_backoff)
        )
        keys = ApiKeyService(db, limiter, admission, usage, Revocations(db, store, admission, write_behind), box)
        reports = ReportService(db, analytics, started, ai)
        return cls(
            settings=settings,
            db=db,
            redis=store,
            limiter=limiter,
            metrics=metrics,
            users=users,
            accounts=AccountService(users, keys, connections),
            keys=keys,
            admission=admission,
            usage=usage,
            connections=connections,
            analytics=analytics,
            write_behind=write_behind,
            pools=pools,
            search=search,
            searches=RecordedSearch(search, analytics, reports),
            ai=ai,
            reports=reports,
            assistant=Assistant(search, connections, analytics, ai),
        )

    def close(self) -> None:
        self.write_behind.close()
        self.pools.close()
        self.db.close()
        self.redis.close()


def services() -> Services:
    """The running app's services (inside a request or an app context)."""
    return current_app.extensions["altus4"]
