"""/api/v1/analytics: the signed-in user's search analytics, and system-wide views for admins."""

from flask import Blueprint, g

from altus4.api import presenters as present
from altus4.api.auth import admin_required, user_required
from altus4.api.envelope import ok
from altus4.api.schemas import AnalyticsHistoryQuery, PopularQuery, RangeQuery
from altus4.api.validation import query
from altus4.container import services
from altus4.services.reports import Range, date_range

bp = Blueprint("analytics", __name__, url_prefix="/api/v1/analytics")


def _range(params: RangeQuery) -> Range:
    return date_range(params.startDate, params.endDate, params.period)


@bp.get("/search-trends")
@bp.get("/trends")  # the path the official SDK calls
@user_required
def search_trends():
    return ok(services().reports.search_trends(g.user["id"], _range(query(RangeQuery))))


@bp.get("/performance")
@user_required
def performance():
    return ok(services().reports.performance(g.user["id"], _range(query(RangeQuery))))


@bp.get("/popular-queries")
@user_required
def popular_queries():
    params = query(PopularQuery)
    return ok(services().reports.popular_queries(g.user["id"], _range(params), params.limit))


@bp.get("/search-history")
@bp.get("/history")  # the path the official SDK calls
@user_required
def search_history():
    params = query(AnalyticsHistoryQuery)
    items, total = services().analytics.history(g.user["id"], params.limit, params.offset)
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
