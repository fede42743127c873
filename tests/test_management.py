"""Health endpoints, dependency failure paths, and start-up guarantees."""

import uuid

import pytest
from conftest import away_from_window_edge, make_settings, register

from altus4 import create_app
from altus4.api.auth import check_all_routes_declare_auth


def test_dependency_health_reports_each_dependency(client):
    r = client.get("/api/v1/management/health")
    data = r.get_json()["data"]
    assert r.status_code == 200 and data["status"] == "healthy"
    assert data["checks"]["mysql"]["status"] == "up"
    assert data["checks"]["redis"]["status"] == "up"
    assert data["checks"]["ai"]["status"] == "disabled"
    assert data["authenticationMethods"] == ["jwt", "api_key"]


def test_without_redis_the_api_still_works(migrated):
    app = create_app(make_settings(REDIS_PORT="1"))
    client = app.test_client()
    user = register(client)
    secret, key = user.create_key()
    for _ in range(2):
        r = client.get("/api/v1/search/history", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200
        assert "X-RateLimit-Remaining" in r.headers  # counted in-process while Redis is away
    usage = user.call("GET", f"/api/v1/keys/{key['id']}/usage").get_json()["data"]["usage"]
    assert usage["requestCount"] == 2  # written straight through to MySQL
    health = client.get("/api/v1/management/health").get_json()["data"]
    assert health["status"] == "degraded" and health["checks"]["redis"]["status"] == "down"
    app.extensions["altus4"].close()


def test_without_mysql_requests_get_503_not_500(migrated):
    app = create_app(make_settings(DB_PORT="1", DB_CONNECT_TIMEOUT="0.5"))
    client = app.test_client()
    assert client.get("/health").status_code == 200  # liveness touches no dependency
    r = client.post("/api/v1/auth/login", json={"email": "a@example.com", "password": "whatever1"})
    assert r.status_code == 503
    assert r.get_json()["error"]["code"] == "DATABASE_UNAVAILABLE"
    assert r.headers["Retry-After"]
    health = client.get("/api/v1/management/health")
    assert health.status_code == 503 and health.get_json()["error"]["details"]["checks"]["mysql"]["status"] == "down"
    app.extensions["altus4"].close()


def test_exhausted_pool_fails_fast_with_retry_after(migrated):
    app = create_app(make_settings(DB_POOL_SIZE="1", DB_POOL_TIMEOUT="0.2"))
    svc = app.extensions["altus4"]
    with app.test_request_context():
        with svc.db.read():
            with pytest.raises(Exception) as caught:
                with svc.db.read():
                    pass
    assert caught.value.status == 503 and caught.value.code == "POOL_EXHAUSTED"
    assert caught.value.headers["Retry-After"] == "1"
    svc.close()


def test_a_route_without_auth_declaration_stops_start_up(migrated):
    app = create_app(migrated)
    app.add_url_rule("/forgotten", "forgotten", lambda: "open door")
    with pytest.raises(RuntimeError, match="forgotten"):
        check_all_routes_declare_auth(app)
    app.extensions["altus4"].close()


def test_login_is_rate_limited_per_ip(migrated):
    away_from_window_edge(60)
    app = create_app(make_settings(AUTH_RATE_LIMIT="3 per minute"))
    client = app.test_client()
    ip = {"REMOTE_ADDR": f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"}
    codes = [
        client.post(
            "/api/v1/auth/login", json={"email": "x@example.com", "password": "whatever1"}, environ_base=ip
        ).status_code
        for _ in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    r = client.post("/api/v1/auth/login", json={"email": "x@example.com", "password": "whatever1"}, environ_base=ip)
    body = r.get_json()
    assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(r.headers["Retry-After"]) >= 1 and r.headers["X-RateLimit-Remaining"] == "0"
    other_ip = {"REMOTE_ADDR": "10.8.0.1"}
    assert (
        client.post(
            "/api/v1/auth/login", json={"email": "x@example.com", "password": "whatever1"}, environ_base=other_ip
        ).status_code
        == 401
    )
    app.extensions["altus4"].close()


def test_api_key_tier_limit_returns_429_with_headers(migrated):
    away_from_window_edge(3600)
    app = create_app(make_settings(RATE_LIMIT_FREE="2"))
    client = app.test_client()
    user = register(client)
    secret, _ = user.create_key()
    headers = {"Authorization": f"Bearer {secret}"}
    first = client.get("/api/v1/search/history", headers=headers)
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert client.get("/api/v1/search/history", headers=headers).status_code == 200
    blocked = client.get("/api/v1/search/history", headers=headers)
    assert blocked.status_code == 429
    assert blocked.get_json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert 1 <= int(blocked.headers["Retry-After"]) <= 3600
    # a pro key of the same user has its own bucket
    pro_secret, _ = user.create_key(rateLimitTier="pro")
    assert client.get("/api/v1/search/history", headers={"Authorization": f"Bearer {pro_secret}"}).status_code == 200
    app.extensions["altus4"].close()
