"""/api/v1/keys and API-key authentication: lifecycle, shown-once secrets, revocation, usage, tenancy."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from conftest import away_from_window_edge

from altus4.security.api_keys import KEY_PATTERN
from altus4.services.key_usage import _batch, _parse


def _probe(client, secret):
    """Search history is the cheapest API-key endpoint: a key that works gets 200."""
    return client.get("/api/v1/search/history", headers={"Authorization": f"Bearer {secret}"})


def test_create_key_shows_secret_once(user):
    secret, key = user.create_key(name="Primary", environment="live", rateLimitTier="pro")
    assert KEY_PATTERN.match(secret) and secret.startswith("altus4_sk_live_")
    assert key["keyPrefix"] == secret[: len("altus4_sk_live_") + 4]
    assert key["rateLimitTier"] == "pro" and key["permissions"] == ["search", "analytics"]
    listed = user.call("GET", "/api/v1/keys").get_json()["data"]
    assert listed["total"] == 1
    assert secret not in str(listed)
    single = user.call("GET", f"/api/v1/keys/{key['id']}").get_json()["data"]["apiKey"]
    assert "secretKey" not in single and secret not in str(single)


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"environment": "test"}, "name"),
        ({"name": "ok name", "environment": "prod"}, "environment"),
        ({"name": "ok name", "environment": "test", "permissions": ["root"]}, "permissions.0"),
        ({"name": "ok name", "environment": "test", "permissions": []}, "permissions"),
        ({"name": "ok name", "environment": "test", "rateLimitTier": "gold"}, "rateLimitTier"),
        ({"name": "ok name", "environment": "test", "expiresAt": "2001-01-01T00:00:00Z"}, "expiresAt"),
        ({"name": "ok name", "environment": "test", "expiresAt": "tomorrow"}, "expiresAt"),
    ],
)
def test_create_key_validation(user, payload, field):
    r = user.call("POST", "/api/v1/keys", json=payload)
    assert r.status_code == 400
    assert field in [d["field"] for d in r.get_json()["error"]["details"]]


def test_key_authenticates_and_revocation_is_immediate(app, user):
    client = app.test_client()
    secret, key = user.create_key()
    assert _probe(client, secret).status_code == 200
    assert user.call("DELETE", f"/api/v1/keys/{key['id']}").status_code == 200
    r = _probe(client, secret)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "INVALID_API_KEY"


def test_expired_key_is_rejected(user, client, db):
    secret, key = user.create_key(expiresAt=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
    assert _probe(client, secret).status_code == 200
    past = datetime.now(UTC).replace(tzinfo=None) - timedelta(minutes=1)
    with db.cursor() as cur:
        cur.execute("UPDATE api_keys SET expires_at = %s WHERE id = %s", (past, key["id"]))
    # the cached record carries the expiry it had; updating through the API drops the cache
    user.call("PUT", f"/api/v1/keys/{key['id']}", json={"name": "touched"})
    r = _probe(client, secret)
    assert r.status_code == 401
    assert "expired" in r.get_json()["error"]["message"]


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "altus4_sk_test_short",
        "altus4_sk_prod_" + "a" * 40,
        "altus4_sk_test_" + "a" * 40,
    ],
)
def test_unknown_or_malformed_keys_are_rejected(client, secret):
    r = _probe(client, secret)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "INVALID_API_KEY"


def test_permission_is_enforced_and_update_applies_at_once(user, client):
    secret, key = user.create_key(permissions=["analytics"])
    r = _probe(client, secret)
    assert r.status_code == 403
    assert r.get_json()["error"]["code"] == "INSUFFICIENT_PERMISSIONS"
    user.call("PUT", f"/api/v1/keys/{key['id']}", json={"permissions": ["search"]})
    assert _probe(client, secret).status_code == 200


def test_jwt_is_not_an_api_key(user, client):
    r = client.get("/api/v1/search/history", headers=user.headers)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "INVALID_API_KEY"


def test_update_key_fields(user):
    _, key = user.create_key()
    future = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    r = user.call(
        "PUT",
        f"/api/v1/keys/{key['id']}",
        json={"name": "Renamed key", "rateLimitTier": "enterprise", "expiresAt": future.isoformat()},
    )
    updated = r.get_json()["data"]["apiKey"]
    assert updated["name"] == "Renamed key" and updated["rateLimitTier"] == "enterprise"
    assert updated["expiresAt"].startswith(future.strftime("%Y-%m-%dT%H:%M:%S"))
    cleared = user.call("PUT", f"/api/v1/keys/{key['id']}", json={"expiresAt": None}).get_json()["data"]["apiKey"]
    assert cleared["expiresAt"] is None and cleared["name"] == "Renamed key"


def test_regenerate_replaces_the_secret(user, client):
    old_secret, key = user.create_key(name="Rotating", rateLimitTier="pro")
    r = user.call("POST", f"/api/v1/keys/{key['id']}/regenerate")
    data = r.get_json()["data"]
    assert r.status_code == 200 and data["oldKeyId"] == key["id"]
    assert data["apiKey"]["id"] != key["id"] and data["apiKey"]["rateLimitTier"] == "pro"
    assert _probe(client, old_secret).status_code == 401
    assert _probe(client, data["secretKey"]).status_code == 200


def test_usage_counts_requests_and_reports_rate_limit(user, client):
    away_from_window_edge(3600)
    secret, key = user.create_key()
    for _ in range(3):
        assert _probe(client, secret).status_code == 200
    usage = user.call("GET", f"/api/v1/keys/{key['id']}/usage?days=7").get_json()["data"]["usage"]
    assert usage["requestCount"] == 3
    assert usage["lastUsed"] is not None
    assert usage["rateLimitStatus"]["tier"] == "free"
    assert usage["rateLimitStatus"]["remaining"] == usage["rateLimitStatus"]["limit"] - 3
    listed = user.call("GET", f"/api/v1/keys/{key['id']}").get_json()["data"]["apiKey"]
    assert listed["usageCount"] == 3 and listed["lastUsedIp"] == "127.0.0.1"
    bad = user.call("GET", f"/api/v1/keys/{key['id']}/usage?days=0")
    assert bad.status_code == 400


def test_a_batch_of_uses_is_counted_once_and_only_its_own_uses_make_it_the_same(app, user):
    """Usage batches carry ids so a batch queued twice (Redis lost it, a flush was taken over) counts once;
    two batches whose counts and times match are still two batches (their ids once came from those)."""
    _, key = user.create_key()
    ledger = app.extensions["altus4"].usage
    use = (key["id"], "2026-12-03", 1_796_000_000.0, "127.0.0.1")
    first, second = _batch([(*use, "worker-a:1")]), _batch([(*use, "worker-b:1")])
    assert json.loads(first)["id"] != json.loads(second)["id"]
    ledger._write([_parse(first), _parse(second), _parse(first)])
    ledger._write([_parse(second)])
    listed = user.call("GET", f"/api/v1/keys/{key['id']}").get_json()["data"]["apiKey"]
    assert listed["usageCount"] == 2


def test_setup_creates_only_the_first_key(make_user):
    fresh = make_user()
    r = fresh.call("POST", "/api/v1/management/setup")
    assert r.status_code == 201
    assert KEY_PATTERN.match(r.get_json()["data"]["secretKey"])
    again = fresh.call("POST", "/api/v1/management/setup")
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "API_KEY_EXISTS"
    status = fresh.call("GET", "/api/v1/management/migration-status").get_json()["data"]
    assert status["hasMigrated"] is True and status["userId"] == fresh.id


def test_other_users_keys_are_not_found(make_user):
    alice, bob = make_user(), make_user()
    _, key = alice.create_key()
    for method, path, body in (
        ("GET", f"/api/v1/keys/{key['id']}", None),
        ("PUT", f"/api/v1/keys/{key['id']}", {"name": "stolen"}),
        ("DELETE", f"/api/v1/keys/{key['id']}", None),
        ("GET", f"/api/v1/keys/{key['id']}/usage", None),
        ("POST", f"/api/v1/keys/{key['id']}/regenerate", None),
    ):
        r = bob.call(method, path, json=body)
        assert r.status_code == 404, (method, path)
    assert bob.call("GET", "/api/v1/keys").get_json()["data"]["total"] == 0
    assert alice.call("GET", f"/api/v1/keys/{key['id']}").get_json()["data"]["apiKey"]["name"] == "test key"
