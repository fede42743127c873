"""/health and /api/v1/management: liveness, dependency health, first-key setup, migration status, and the
admin's account tiers."""

import time

from flask import Blueprint, current_app, g

from altus4.api import presenters as present
from altus4.api import schemas
from altus4.api.auth import admin_required, public, user_required
from altus4.api.envelope import error_response, ok
from altus4.api.keys import SHOWN_ONCE
from altus4.api.validation import body
from altus4.container import services
from altus4.times import iso, utcnow

bp = Blueprint("management", __name__)


def _uptime() -> float:
    return round(time.monotonic() - current_app.config["ALTUS4_STARTED"], 3)


@bp.get("/health")
@bp.get("/api/v1/health")  # the official SDK's testConnection calls this path
@public
def liveness():
    """For load balancers: answers from memory, touches no dependency. `status` is also at the top level, where
    health checks written for the original service read it."""
    data = {"status": "healthy", "version": current_app.config["ALTUS4_VERSION"], "uptime": _uptime()}
    return ok(data, top_level=data)


def _check_mysql() -> dict:
    started = time.perf_counter()
    try:
        services().db.fetch_one("SELECT 1 AS ok")
        return {"status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:  # any failure means "down" here; the reason is reported, not raised
        return {"status": "down", "error": type(exc).__name__}


def _check_redis() -> dict:
    started = time.perf_counter()
    if services().redis.ping():
        return {"status": "up", "latencyMs": round((time.perf_counter() - started) * 1000, 2)}
    return {"status": "down"}


def _check_ai() -> dict:
    return services().ai.status()


def _checks() -> dict[str, dict]:
    return {"mysql": _check_mysql(), "redis": _check_redis(), "ai": _check_ai()}


@bp.get("/api/v1/management/health")
@public
def dependency_health():
    checks = _checks()
    data = {
        "status": "healthy",
        "version": current_app.config["ALTUS4_VERSION"],
        "uptime": _uptime(),
        "authenticationMethods": ["jwt", "api_key"],
        "checks": checks,
    }
    if checks["mysql"]["status"] != "up":
        return error_response(
            503,
            "SERVICE_UNAVAILABLE",
            "The metadata database is unreachable",
            details={**data, "status": "unhealthy"},
            headers={"Retry-After": "5"},
        )
    if checks["redis"]["status"] != "up":
        data["status"] = "degraded"
    return ok(data)


@bp.get("/api/v1/status")
@public
def system_status():
    """The official SDK's `getSystemStatus`: the same checks as /management/health, as a list of services.
    Always 200 (the SDK reads the body); `status` says healthy, degraded (Redis or AI down) or unhealthy."""
    checks = _checks()
    services_ = [
        {
            "name": name,
            "status": "unhealthy" if check["status"] == "down" else "healthy",
            **({"responseTime": check["latencyMs"]} if "latencyMs" in check else {}),
            **({"message": why} if (why := check.get("reason") or check.get("error")) else {}),
        }
        for name, check in checks.items()
    ]
    overall = "unhealthy" if checks["mysql"]["status"] == "down" else "healthy"
    if overall == "healthy" and any(s["status"] == "unhealthy" for s in services_):
        overall = "degraded"
    return ok(
        {
            "status": overall,
            "timestamp": iso(utcnow()),
            "services": services_,
            "uptime": _uptime(),
            "version": current_app.config["ALTUS4_VERSION"],
        }
    )


@bp.get("/api/v1/metrics")
@user_required
def metrics_summary():
    """The official SDK's `getMetrics`: this instance's totals as JSON (Prometheus text stays at /metrics)."""
    return ok({**services().metrics.summary(), "uptime": _uptime()})


@bp.post("/api/v1/management/setup")
@bp.post("/api/v1/management/setup-initial-api-key")  # the official SDK's setupInitialApiKey
@user_required
def setup_first_key():
    row, secret = services().keys.setup_first_key(g.user["id"])
    return ok({"apiKey": present.api_key(row), "secretKey": secret, "warning": SHOWN_ONCE}, 201)


@bp.get("/api/v1/management/migration-status")
@user_required
def migration_status():
    """Whether this user has moved to API-key authentication for search (what the contract means here)."""
    has_key = bool(services().keys.owned_by(g.user["id"]))
    return ok(
        {
            "userId": g.user["id"],
            "hasMigrated": has_key,
            "recommendedAction": "none" if has_key else "Create your first API key with POST /api/v1/management/setup",
            "documentation": "/api/v1/openapi.json",
        }
    )


@bp.put("/api/v1/management/users/<uuid:user_id>/tier")
@admin_required
def set_account_tier(user_id):
    """An admin sets an account's rate-limit tier; its keys count at most at it from the next request on."""
    data = body(schemas.TierBody)
    user = services().accounts.set_tier(str(user_id), data.tier)
    return ok(present.user(user, services().users.connected_database_ids(user["id"])))
