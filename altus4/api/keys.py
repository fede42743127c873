"""/api/v1/keys: API key lifecycle for the signed-in user."""

from flask import Blueprint, g

from altus4.api import presenters as present
from altus4.api import schemas
from altus4.api.auth import user_required
from altus4.api.envelope import ok
from altus4.api.validation import body, query
from altus4.container import services

bp = Blueprint("keys", __name__, url_prefix="/api/v1/keys")

SHOWN_ONCE = "This is the only time the full API key will be shown. Please store it securely."


@bp.post("")
@user_required
def create_key():
    data = body(schemas.CreateKeyBody)
    row, secret = services().keys.create(
        g.user["id"], data.name, data.environment, list(data.permissions), data.rateLimitTier, data.expiresAt
    )
    return ok({"apiKey": present.api_key(row), "secretKey": secret, "warning": SHOWN_ONCE}, 201)


@bp.get("")
@user_required
def list_keys():
    rows = services().keys.owned_by(g.user["id"], current_usage=True)
    return ok({"apiKeys": [present.api_key(r) for r in rows], "total": len(rows)})


@bp.get("/<uuid:key_id>")
@user_required
def get_key(key_id):
    return ok({"apiKey": present.api_key(services().keys.get(g.user["id"], str(key_id)))})


@bp.put("/<uuid:key_id>")
@user_required
def update_key(key_id):
    data = body(schemas.UpdateKeyBody)
    return ok({"apiKey": present.api_key(services().keys.update(g.user["id"], str(key_id), data.changes()))})


@bp.delete("/<uuid:key_id>")
@user_required
def revoke_key(key_id):
    services().keys.revoke(g.user["id"], str(key_id))
    return ok({"success": True})


@bp.get("/<uuid:key_id>/usage")
@user_required
def key_usage(key_id):
    params = query(schemas.UsageQuery)
    return ok({"usage": present.key_usage(services().keys.usage(g.user["id"], str(key_id), params.days))})


@bp.post("/<uuid:key_id>/regenerate")
@user_required
def regenerate_key(key_id):
    row, secret = services().keys.regenerate(g.user["id"], str(key_id))
    return ok(
        {
            "apiKey": present.api_key(row),
            "secretKey": secret,
            "oldKeyId": str(key_id),
            "warning": "This is the only time the new API key will be shown. Please store it securely.",
        }
    )
