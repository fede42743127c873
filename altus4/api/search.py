"""/api/v1/search: search, and the API-key user's own search history."""

from flask import Blueprint, g
from werkzeug.exceptions import HTTPException

from altus4.api import schemas
from altus4.api.auth import api_key_required
from altus4.api.envelope import ok
from altus4.api.validation import body, query
from altus4.container import services
from altus4.errors import ApiError, InvalidApiKey
from altus4.search import structured
from altus4.search.service import SearchParams
from altus4.services.analytics import Scope

bp = Blueprint("search", __name__, url_prefix="/api/v1/search")


def _tuple(values):
    return tuple(values) if values else None


def _scope() -> structured.Scope | None:
    """A tenant token's rules (None for an API key). :raise InvalidApiKey: a rule that cannot be applied."""
    claims = g.get("tenant_claims")
    if claims is None:
        return None
    try:
        return structured.scope_of(claims.rules)
    except structured.BadRule as exc:
        raise InvalidApiKey(f"Invalid tenant token: {exc}", code="INVALID_TENANT_TOKEN") from None


def _request() -> tuple[SearchParams, bool, bool]:
    """The search asked for, whether analytics were, and whether it goes into the analytics (parsed once
    per request).
    :raise ValidationFailed: a malformed body."""
    if "search_request" not in g:
        data = body(schemas.SearchBody)
        params = SearchParams(
            query=data.query,
            mode=data.searchMode,
            databases=_tuple(data.databases),
            tables=_tuple(data.tables),
            columns=_tuple(data.columns),
            limit=data.limit,
            offset=data.offset,
            ranking=data.ranking,
            filter=data.filter,
            facets=_tuple(data.facets),
            max_values_per_facet=data.maxValuesPerFacet,
            sort=_tuple(data.sort),
            scope=_scope(),
        )
        g.search_request = (params, data.includeAnalytics, data.analytics)
    return g.search_request


def _first_reads(user_id: str) -> list[str]:
    """What the search reads from Redis first, read with the API key (a malformed body: nothing; the view
    refuses it once the key is checked)."""
    try:
        params, _, _ = _request()
    except (ApiError, HTTPException):
        return []
    return services().searches.search.first_reads(user_id, params)


@bp.post("")
@api_key_required("search", prefetch=_first_reads, tenant_tokens=True)
def search():
    params, include_analytics, recorded = _request()
    return ok(services().searches.run(g.api_key, params, include_analytics, g.prefetched, recorded))


@bp.get("/suggestions")
@api_key_required("search", tenant_tokens=True)
def suggestions():
    params = query(schemas.SuggestionsQuery)
    return ok(
        services().assistant.suggestions(
            g.api_key.user_id,
            params.query,
            list(params.databases or []) or None,
            list(params.tables or []) or None,
            params.limit,
            g.api_key.tier,
            params.filter,
            _scope(),
        )
    )


@bp.post("/analyze")
@api_key_required("search")
def analyze():
    data = body(schemas.AnalyzeBody)
    return ok(
        services().assistant.analyze(
            g.api_key.user_id, data.query, list(data.databases), data.searchMode, g.api_key.tier
        )
    )


@bp.get("/trends")
@api_key_required("search")
def trends():
    return ok(services().reports.period_summaries(g.api_key.user_id))


@bp.get("/history")
@api_key_required("search")
def history():
    params = query(schemas.SearchHistoryQuery)
    items, total = services().analytics.history(Scope(g.api_key.user_id), params.limit, params.offset)
    return ok(items, total=total, limit=params.limit, offset=params.offset)
