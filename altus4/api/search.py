"""/api/v1/search: search, and the API-key user's own search history."""

from flask import Blueprint, g
from pydantic import Field

from altus4.api.auth import api_key_required
from altus4.api.envelope import ok
from altus4.api.schemas import Body
from altus4.api.validation import query
from altus4.services import services

bp = Blueprint("search", __name__, url_prefix="/api/v1/search")


class HistoryQuery(Body):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0)


@bp.get("/history")
@api_key_required("search")
def history():
    params = query(HistoryQuery)
    items, total = services().analytics.history(g.api_key.user_id, params.limit, params.offset)
    return ok(items, total=total, limit=params.limit, offset=params.offset)
