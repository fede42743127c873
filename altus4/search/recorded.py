"""A search as an API client asks for it: run it, add the analytics it asked for, record it in the history."""

from __future__ import annotations

from typing import Any

from altus4.search.service import SearchParams, SearchService
from altus4.services.analytics import AnalyticsService
from altus4.services.key_admission import ApiKeyPrincipal
from altus4.services.reports import ReportService


class RecordedSearch:
    def __init__(self, search: SearchService, analytics: AnalyticsService, reports: ReportService):
        self.search = search
        self.analytics = analytics
        self.reports = reports

    def run(
        self,
        key: ApiKeyPrincipal,
        params: SearchParams,
        include_analytics: bool = False,
        prefetched: dict[str, Any] | None = None,
        recorded: bool = True,
    ) -> dict[str, Any]:
        """The response data. The search goes to the history (buffered: see `altus4.write_behind`) unless the
        client said not to (`recorded`: previews while typing) or it is a later page of a search already
        recorded (offset > 0): analytics count searches people made, not requests."""
        result = self.search.search(
            key.user_id, params, tier=key.tier, decoded=include_analytics, prefetched=prefetched
        )
        if include_analytics:
            result["trends"] = self.reports.period_summaries(key.user_id)
            result["categories"] = self.search.ai_categories(result, key.user_id, key.tier)
        if not recorded or params.offset > 0:
            return result
        self.analytics.record(
            key.user_id,
            key.id,
            params.query,
            result["modeUsed"],
            [d["id"] for d in result["databases"]],
            [c["name"] for c in result["categories"]],
            result["totalCount"],
            result["executionTime"],
            result["cached"],
        )
        return result
