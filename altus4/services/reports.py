"""Analytics read models: trends, performance, popular queries, insights, dashboards, admin views.

All computed from `search_analytics` with bounded date ranges; per-user views
are always scoped by user id. Insights here are rule-based (no AI needed) and
say what to do, not only what happened.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from altus4.ai.provider import AIUnavailable
from altus4.db.pool import Database
from altus4.errors import ValidationFailed
from altus4.services.analytics import AnalyticsService, Scope
from altus4.times import iso

PERIOD_DAYS = {"day": 1, "week": 7, "month": 30, "3months": 90, "6months": 180, "year": 365}
MAX_RANGE_DAYS = 731
SLOW_MS = 1000
AI_INSIGHTS_BUDGET = 3.0


@dataclass(frozen=True)
class Range:
    start: datetime  # inclusive, UTC
    end: datetime  # exclusive, UTC
    period: str

    @property
    def by_month(self) -> bool:
        return (self.end - self.start).days > 62

    def of(self, user_id: str, api_key_id: str | None = None, database_id: str | None = None) -> Scope:
        """The user's searches in this range (optionally one key's or one database's)."""
        return Scope(user_id, self.start, self.end, api_key_id, database_id)


def date_range(start: date | None, end: date | None, period: str) -> Range:
    """startDate/endDate (inclusive days) or the last `period`; raises ValidationFailed when inverted or huge."""
    today = datetime.now(timezone.utc).date()
    last = end or today
    first = start or (last - timedelta(days=PERIOD_DAYS[period] - 1))
    if first > last:
        raise ValidationFailed(
            "startDate must not be after endDate",
            details=[{"field": "startDate", "code": "date_order", "message": "after endDate"}],
        )
    if (last - first).days > MAX_RANGE_DAYS:
        raise ValidationFailed(
            f"date range may span at most {MAX_RANGE_DAYS} days",
            details=[{"field": "startDate", "code": "range_too_long", "message": "range too long"}],
        )
    return Range(_midnight(first), _midnight(last) + timedelta(days=1), period)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)  # naive UTC, like the stored values


def _ms(value: Any) -> float:
    return round(float(value or 0), 2)


def _top_categories(rows: list[dict[str, Any]], limit: int = 5) -> list[str]:
    """The tables that produced results most often, from the `categories` recorded with each search."""
    counts: dict[str, int] = {}
    for row in rows:
        for name in json.loads(row["categories"] or "[]"):
            counts[name] = counts.get(name, 0) + 1
    return [name for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]


class ReportService:
    def __init__(self, db: Database, analytics: AnalyticsService, started: float, ai=None):
        self.db = db
        self.analytics = analytics
        self.started = started
        self.ai = ai

    def _rows(self, sql: str, params: tuple) -> list[dict[str, Any]]:
        return self.db.fetch_all(sql, params)

    # ---- per user -----------------------------------------------------------------
    def search_trends(self, r: Range, scope: Scope) -> list[dict[str, Any]]:
        self.analytics.flush()
        bucket = "DATE_FORMAT(created_at, '%%Y-%%m-01')" if r.by_month else "DATE(created_at)"
        where, params = scope.where()
        volume = self._rows(
            f"SELECT {bucket} AS bucket, COUNT(*) AS n, AVG(execution_time_ms) AS avg_ms FROM search_analytics"
            f" WHERE {where} GROUP BY bucket ORDER BY bucket",
            params,
        )
        queries = self._rows(
            f"SELECT {bucket} AS bucket, query_text, COUNT(*) AS n FROM search_analytics"
            f" WHERE {where} GROUP BY bucket, query_text",
            params,
        )
        cats = self._rows(
            f"SELECT {bucket} AS bucket, categories FROM search_analytics"
            f" WHERE {where} AND categories IS NOT NULL LIMIT 20000",
            params,
        )
        top: dict[str, list] = {}
        for q in sorted(queries, key=lambda x: (-x["n"], x["query_text"])):
            top.setdefault(str(q["bucket"]), []).append(q["query_text"])
        by_bucket: dict[str, list] = {}
        for c in cats:
            by_bucket.setdefault(str(c["bucket"]), []).append(c)
        return [
            {
                "period": r.period,
                "date": str(v["bucket"]),
                "topQueries": top.get(str(v["bucket"]), [])[:5],
                "queryVolume": int(v["n"]),
                "avgResponseTime": _ms(v["avg_ms"]),
                "popularCategories": _top_categories(by_bucket.get(str(v["bucket"]), [])),
            }
            for v in volume
        ]

    def period_summaries(self, user_id: str, periods: tuple[str, ...] = ("day", "week", "month")) -> list[dict]:
        """One aggregate per period ending now: volume, speed, top queries and categories."""
        self.analytics.flush()
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        out = []
        for period in periods:
            since = now - timedelta(days=PERIOD_DAYS[period])
            stats = self.db.fetch_aggregate(
                "SELECT COUNT(*) AS n, AVG(execution_time_ms) AS avg_ms FROM search_analytics"
                " WHERE user_id = %s AND created_at >= %s",
                (user_id, since),
            )
            top = self._rows(
                "SELECT query_text, COUNT(*) AS n FROM search_analytics WHERE user_id = %s AND created_at >= %s"
                " GROUP BY query_text ORDER BY n DESC, query_text LIMIT 5",
                (user_id, since),
            )
            cats = self._rows(
                "SELECT categories FROM search_analytics WHERE user_id = %s AND created_at >= %s"
                " AND categories IS NOT NULL ORDER BY created_at DESC LIMIT 5000",
                (user_id, since),
            )
            out.append(
                {
                    "period": period,
                    "topQueries": [t["query_text"] for t in top],
                    "queryVolume": int(stats["n"] or 0),
                    "avgResponseTime": _ms(stats["avg_ms"]),
                    "popularCategories": _top_categories(cats),
                }
            )
        return out

    def performance(self, scope: Scope) -> dict[str, Any]:
        """Per day: volume, mean, extremes and the nearest-rank p50/p95 of execution time (window functions:
        MySQL 8 and MariaDB 10.2+; neither has a portable PERCENTILE aggregate)."""
        self.analytics.flush()
        where, params = scope.where()
        series = self._rows(
            "SELECT day, COUNT(*) AS n, AVG(ms) AS avg_ms, MAX(ms) AS max_ms, MIN(ms) AS min_ms,"
            " AVG(results) AS avg_results, MIN(CASE WHEN pos >= CEIL(0.5 * total) THEN ms END) AS p50,"
            " MIN(CASE WHEN pos >= CEIL(0.95 * total) THEN ms END) AS p95"
            " FROM (SELECT DATE(created_at) AS day, execution_time_ms AS ms, result_count AS results,"
            " ROW_NUMBER() OVER (PARTITION BY DATE(created_at) ORDER BY execution_time_ms) AS pos,"
            " COUNT(*) OVER (PARTITION BY DATE(created_at)) AS total"
            f" FROM search_analytics WHERE {where}) ranked GROUP BY day ORDER BY day",
            params,
        )
        modes = self._rows(
            "SELECT search_mode, COUNT(*) AS n, AVG(execution_time_ms) AS avg_ms FROM search_analytics"
            f" WHERE {where} GROUP BY search_mode ORDER BY n DESC",
            params,
        )
        summary = self.db.fetch_aggregate(
            "SELECT COUNT(*) AS n, AVG(execution_time_ms) AS avg_ms, AVG(result_count) AS avg_results,"
            f" SUM(cache_hit) AS hits, SUM(execution_time_ms > %s) AS slow FROM search_analytics WHERE {where}",
            (SLOW_MS, *params),
        )
        total = int(summary["n"] or 0)
        return {
            "timeSeriesData": [
                {
                    "date": s["day"].isoformat(),
                    "avg_response_time": _ms(s["avg_ms"]),
                    "max_response_time": _ms(s["max_ms"]),
                    "min_response_time": _ms(s["min_ms"]),
                    "total_queries": int(s["n"]),
                    "avg_results": _ms(s["avg_results"]),
                    "p50_response_time": _ms(s["p50"]),
                    "p95_response_time": _ms(s["p95"]),
                }
                for s in series
            ],
            "searchModeDistribution": [
                {"search_mode": m["search_mode"], "count": int(m["n"]), "avg_time": _ms(m["avg_ms"])} for m in modes
            ],
            "summary": {
                "totalQueries": total,
                "averageResponseTime": _ms(summary["avg_ms"]),
                "averageResults": _ms(summary["avg_results"]),
                "cacheHitRate": round(int(summary["hits"] or 0) / total, 4) if total else 0.0,
                "slowQueries": int(summary["slow"] or 0),
            },
        }

    def popular_queries(self, scope: Scope, limit: int, zero_results: bool = False) -> list[dict[str, Any]]:
        """The most frequent queries; with `zero_results`, only searches that found nothing (what people look
        for and the data does not answer)."""
        self.analytics.flush()
        where, params = scope.where()
        nothing = " AND result_count = 0" if zero_results else ""
        rows = self._rows(
            "SELECT query_text, COUNT(*) AS frequency, AVG(execution_time_ms) AS avg_ms,"
            " AVG(result_count) AS avg_results, MAX(created_at) AS last_used FROM search_analytics"
            f" WHERE {where}{nothing} GROUP BY query_text ORDER BY frequency DESC, last_used DESC LIMIT %s",
            (*params, limit),
        )
        return [
            {
                "query_text": q["query_text"],
                "frequency": int(q["frequency"]),
                "avg_time": _ms(q["avg_ms"]),
                "avg_results": _ms(q["avg_results"]),
                "last_used": iso(q["last_used"]),
            }
            for q in rows
        ]

    def insights(self, user_id: str) -> list[dict[str, Any]]:
        """Rule-based findings over the last 7 days, each with what to do about it."""
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        week = Range(now - timedelta(days=7), now + timedelta(seconds=1), "week")
        previous = Range(now - timedelta(days=14), now - timedelta(days=7), "week")
        perf = self.performance(week.of(user_id))["summary"]
        earlier = self.db.fetch_aggregate(
            "SELECT COUNT(*) AS n FROM search_analytics WHERE user_id = %s AND created_at >= %s AND created_at < %s",
            (user_id, previous.start, previous.end),
        )
        zero = self._rows(
            "SELECT query_text, COUNT(*) AS n FROM search_analytics WHERE user_id = %s AND result_count = 0"
            " AND created_at >= %s GROUP BY query_text ORDER BY n DESC LIMIT 5",
            (user_id, week.start),
        )
        slow = self._rows(
            "SELECT query_text, AVG(execution_time_ms) AS avg_ms, COUNT(*) AS n FROM search_analytics"
            " WHERE user_id = %s AND created_at >= %s GROUP BY query_text HAVING AVG(execution_time_ms) > %s"
            " ORDER BY avg_ms DESC LIMIT 5",
            (user_id, week.start, SLOW_MS / 2),
        )
        out = []
        if zero:
            out.append(
                {
                    "type": "semantic_enhancement",
                    "confidence": 0.8,
                    "actionable": True,
                    "description": f"{len(zero)} frequent queries found nothing this week; add FULLTEXT indexes"
                    " on the columns people search, or try boolean mode with prefixes (term*).",
                    "data": {"queries": [{"query": z["query_text"], "count": int(z["n"])} for z in zero]},
                }
            )
        if slow:
            out.append(
                {
                    "type": "query_optimization",
                    "confidence": 0.9,
                    "actionable": True,
                    "description": "Some queries average over "
                    f"{SLOW_MS // 2} ms; POST /api/v1/search/analyze shows why.",
                    "data": {"queries": [{"query": s["query_text"], "avgTime": _ms(s["avg_ms"])} for s in slow]},
                }
            )
        if perf["totalQueries"] >= 20 and perf["cacheHitRate"] < 0.2:
            out.append(
                {
                    "type": "query_optimization",
                    "confidence": 0.6,
                    "actionable": True,
                    "description": "Few searches are served from cache; repeated queries with the same page size"
                    " and filters are cached for SEARCH_CACHE_TTL seconds.",
                    "data": {"cacheHitRate": perf["cacheHitRate"]},
                }
            )
        for item in out:
            item["source"] = "rules"
        before, now_count = int(earlier["n"] or 0), perf["totalQueries"]
        if before or now_count:
            change = (now_count - before) / before if before else 1.0
            out.append(
                {
                    "type": "trend_analysis",
                    "confidence": 0.7,
                    "actionable": False,
                    "description": f"{now_count} searches in the last 7 days, {before} in the 7 before"
                    f" ({change:+.0%}).",
                    "data": {"lastWeek": now_count, "weekBefore": before, "change": round(change, 4)},
                    "source": "rules",
                }
            )
        if self.ai is not None and self.ai.enabled and now_count:
            stats = {
                "summary": perf,
                "weekBefore": before,
                "zeroResultQueries": [z["query_text"] for z in zero],
                "slowQueries": [s["query_text"] for s in slow],
            }
            try:
                out += self.ai.insights(stats, user_id, "free", AI_INSIGHTS_BUDGET)
            except AIUnavailable:
                pass  # the rule-based findings stand on their own
        return out

    def dashboard(self, user_id: str) -> dict[str, Any]:
        r = date_range(None, None, "week")
        connected = self.db.fetch_aggregate(
            "SELECT (SELECT COUNT(*) FROM database_connections WHERE user_id = %s AND is_active = 1) AS dbs,"
            " (SELECT COUNT(*) FROM api_keys WHERE user_id = %s AND is_active = 1) AS keys_",
            (user_id, user_id),
        )
        performance = self.performance(r.of(user_id))
        return {
            "trends": {"period": "week", "series": self.search_trends(r, r.of(user_id))},
            "performance": performance,
            "popularQueries": self.popular_queries(r.of(user_id), 10),
            "insights": self.insights(user_id),
            "summary": {
                **performance["summary"],
                "connectedDatabases": int(connected["dbs"]),
                "activeApiKeys": int(connected["keys_"]),
            },
        }

    # ---- admin ----------------------------------------------------------------------
    def _system(self) -> dict[str, Any]:
        cpus = os.cpu_count() or 1
        disk = shutil.disk_usage("/")
        return {
            "uptime": round(time.monotonic() - self.started, 3),
            "cpuUsage": round(os.getloadavg()[0] / cpus * 100, 2),  # 1-minute load as % of cores
            "memoryUsage": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2),  # MB, this worker
            "diskUsage": round(disk.used / disk.total * 100, 2),
        }

    def system_overview(self) -> dict[str, Any]:
        self.analytics.flush()
        counts = self.db.fetch_aggregate(
            "SELECT (SELECT COUNT(*) FROM users) AS users_, (SELECT COUNT(*) FROM search_analytics) AS searches,"
            " (SELECT COUNT(*) FROM database_connections) AS dbs"
        )
        system = self._system()
        return {
            "totalUsers": int(counts["users_"]),
            "totalSearches": int(counts["searches"]),
            "totalDatabases": int(counts["dbs"]),
            "systemHealth": {
                "status": "healthy",
                "uptime": system["uptime"],
                "memoryUsage": system["memoryUsage"],
                "cpuUsage": system["cpuUsage"],
            },
        }

    def user_activity(self, r: Range, limit: int = 10) -> dict[str, Any]:
        self.analytics.flush()
        counts = self.db.fetch_aggregate(
            "SELECT (SELECT COUNT(DISTINCT user_id) FROM search_analytics WHERE created_at >= %s AND created_at < %s)"
            " AS active, (SELECT COUNT(*) FROM users WHERE created_at >= %s AND created_at < %s) AS new_users",
            (r.start, r.end, r.start, r.end),
        )
        top = self._rows(
            "SELECT u.id, u.email, COUNT(*) AS n, MAX(s.created_at) AS last_search FROM search_analytics s"
            " JOIN users u ON u.id = s.user_id WHERE s.created_at >= %s AND s.created_at < %s"
            " GROUP BY u.id, u.email ORDER BY n DESC LIMIT %s",
            (r.start, r.end, limit),
        )
        return {
            "activeUsers": int(counts["active"]),
            "newUsers": int(counts["new_users"]),
            "topUsers": [
                {
                    "userId": t["id"],
                    "email": t["email"],
                    "searchCount": int(t["n"]),
                    "lastActive": iso(t["last_search"]),
                }
                for t in top
            ],
        }

    def performance_metrics(self, pool_in_use: int, pool_size: int, error_rate: float) -> dict[str, Any]:
        self.analytics.flush()
        since = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=1)
        hour = self.db.fetch_aggregate(
            "SELECT COUNT(*) AS n, AVG(execution_time_ms) AS avg_ms, SUM(execution_time_ms > %s) AS slow"
            " FROM search_analytics WHERE created_at >= %s",
            (SLOW_MS, since),
        )
        return {
            "system": self._system(),
            "api": {
                "requestsPerSecond": round(int(hour["n"] or 0) / 3600, 4),
                "averageResponseTime": _ms(hour["avg_ms"]),
                "errorRate": error_rate,
                "note": "requestsPerSecond and averageResponseTime count searches in the last hour; errorRate is"
                " the share of this instance's requests answered 5xx since it started",
            },
            "database": {
                "connectionPoolUsage": round(pool_in_use / pool_size, 4) if pool_size else 0.0,
                "averageQueryTime": _ms(hour["avg_ms"]),
                "slowQueries": int(hour["slow"] or 0),
            },
        }
