"""/api/v1/analytics: the signed-in user's search analytics, and system-wide views for admins."""

from flask import Blueprint, g

from altus4.api import presenters as present
from altus4.api.auth import admin_required, user_required
from altus4.api.envelope import ok
from altus4.api.schemas import AnalyticsHistoryQuery, PopularQuery, RangeQuery, ScopedRangeQuery
from altus4.api.validation import query
from altus4.container import services
from altus4.services.analytics import Scope
from altus4.services.reports import Range, date_range

bp = Blueprint("analytics", __name__, url_prefix="/api/v1/analytics")


def _range(params: RangeQuery) -> Range:
    return date_range(params.startDate, params.endDate, params.period)


def _scope(params: ScopedRangeQuery | AnalyticsHistoryQuery, r: Range) -> Scope:
    return r.of(g.user["id"], params.apiKeyId, params.databaseId)


@bp.get("/search-trends")
@bp.get("/trends")  # the path the official SDK calls
@user_required
def search_trends():
    params = query(ScopedRangeQuery)
    r = _range(params)
    return ok(services().reports.search_trends(r, _scope(params, r)))


@bp.get("/performance")
@user_required
def performance():
    params = query(ScopedRangeQuery)
    return ok(services().reports.performance(_scope(params, _range(params))))


@bp.get("/popular-queries")
@user_required
def popular_queries():
    params = query(PopularQuery)
    return ok(services().reports.popular_queries(_scope(params, _range(params)), params.limit))


@bp.get("/zero-result-queries")
@user_required
def zero_result_queries():
    params = query(PopularQuery)
    return ok(services().reports.popular_queries(_scope(params, _range(params)), params.limit, zero_results=True))


@bp.get("/search-history")
@bp.get("/history")  # the path the official SDK calls
@user_required
def search_history():
    params = query(AnalyticsHistoryQuery)
    # no dates: the whole history; dates as in the other views (only startDate: from it to today)
    if params.startDate or params.endDate:
        scope = _scope(params, date_range(params.startDate, params.endDate, "year"))
    else:
        scope = Scope(g.user["id"], api_key_id=params.apiKeyId, database_id=params.databaseId)
    items, total = services().analytics.history(scope, params.limit, params.offset)
    return ok({"items": items, "total": total, "limit": params.limit, "offset": params.offset})


@bp.get("/usage")  # the official SDK's getUsageStats
@user_required
def usage():
    span = _range(query(RangeQuery))
    return ok(present.account_usage(services().keys.account_usage(g.user["id"], span.start, span.end), span))


@bp.get("/insights")
@user_required
def insights():
    return ok(services().reports.insights(g.user["id"]))


@bp.get("/dashboard")
@user_required
def dashboard():
    return ok(services().reports.dashboard(g.user["id"]))


@bp.get("/admin/system-overview")
@admin_required
def system_overview():
    return ok(services().reports.system_overview())


@bp.get("/admin/user-activity")
@admin_required
def user_activity():
    return ok(services().reports.user_activity(_range(query(RangeQuery))))


@bp.get("/admin/performance-metrics")
@admin_required
def performance_metrics():
    svc = services()
    return ok(
        svc.reports.performance_metrics(svc.db.primary.in_use, svc.db.primary.size, svc.metrics.summary()["errorRate"])
    )
