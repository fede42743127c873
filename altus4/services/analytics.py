"""Search analytics: what was searched, by whom, how fast — recorded per search, read per user."""

from __future__ import annotations

import json
import uuid
from typing import Any

from altus4.db.pool import Database
from altus4.services.users import iso


class AnalyticsService:
    def __init__(self, db: Database):
        self.db = db

    def record(self, user_id: str, api_key_id: str | None, query: str, mode: str, database_ids: list[str],
               result_count: int, execution_ms: float, cache_hit: bool) -> None:
        self.db.execute(
            "INSERT INTO search_analytics (id, user_id, api_key_id, query_text, search_mode, database_ids,"
            " result_count, execution_time_ms, cache_hit) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (str(uuid.uuid4()), user_id, api_key_id, query[:500], mode, json.dumps(database_ids), result_count,
             execution_ms, cache_hit))

    def history(self, user_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        rows = self.db.fetch_all(
            "SELECT id, query_text, search_mode, database_ids, result_count, execution_time_ms, cache_hit, created_at"
            " FROM search_analytics WHERE user_id = %s ORDER BY created_at DESC, id LIMIT %s OFFSET %s",
            (user_id, limit, offset))
        total = self.db.fetch_one("SELECT COUNT(*) AS n FROM search_analytics WHERE user_id = %s", (user_id,))["n"]
        items = []
        for r in rows:
            databases = json.loads(r["database_ids"] or "[]")
            items.append({
                "id": r["id"], "query": r["query_text"], "searchMode": r["search_mode"],
                "database": databases[0] if len(databases) == 1 else None, "databases": databases,
                "resultCount": r["result_count"], "executionTime": round(float(r["execution_time_ms"]), 2),
                "cacheHit": bool(r["cache_hit"]), "timestamp": iso(r["created_at"]),
            })
        return items, int(total)
