"""/api/v1/auth: register, login, profile, password, refresh, logout, delete."""

import time

import jwt
import pytest
from conftest import make_settings, register

from altus4 import create_app
from altus4.security import tokens


def test_register_returns_user_and_token(client):
    r = client.post(
        "/api/v1/auth/register",
        json={"email": "New.Person@Example.com", "password": "longenough1", "name": "New Person"},
    )
    assert r.status_code == 201
    data = r.get_json()["data"]
    assert data["user"]["email"] == "new.person@example.com"
    assert data["user"]["role"] == "user"
    assert data["user"]["connectedDatabases"] == []
    assert "password" not in str(data["user"]).lower()
    assert client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {data['token']}"}).status_code == 200


def test_register_cannot_make_an_admin(client):
    r = client.post(
        "/api/v1/auth/register",
        json={"email": "sneaky@example.com", "password": "longenough1", "name": "Sneaky", "role": "admin"},
    )
    assert r.status_code == 400
    assert r.get_json()["error"]["details"][0]["field"] == "role"


def test_duplicate_email_is_a_conflict(client, user):
    r = client.post(
        "/api/v1/auth/register", json={"email": user.email.upper(), "password": "longenough1", "name": "Again"}
    )
    assert r.status_code == 409
    assert r.get_json()["error"]["code"] == "USER_EXISTS"


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"password": "longenough1", "name": "No Email"}, "email"),
        ({"email": "not-an-email", "password": "longenough1", "name": "Bad"}, "email"),
        ({"email": "a@example.com", "password": "short", "name": "Short"}, "password"),
        ({"email": "a@example.com", "password": "longenough1", "name": "x"}, "name"),
        ({"email": "a@example.com", "password": 12345678, "name": "Typed"}, "password"),
    ],
)
def test_register_validation_names_the_field(client, payload, field):
    r = client.post("/api/v1/auth/register", json=payload)
    assert r.status_code == 400
    body = r.get_json()
    assert body["error"]["code"] == "VALIDATION_ERROR"
    assert field in [d["field"] for d in body["error"]["details"]]


def test_login_success_and_failures(client, user):
    ok = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    assert ok.status_code == 200
    assert ok.get_json()["data"]["user"]["lastActive"] is not None
    wrong = client.post("/api/v1/auth/login", json={"email": user.email, "password": "wrong password"})
    unknown = client.post("/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert r.get_json()["error"]["code"] == "INVALID_CREDENTIALS"


@pytest.mark.parametrize(
    "header,code",
    [
        (None, "NO_TOKEN"),
        ("Bearer not-a-jwt", "INVALID_TOKEN"),
        ("Basic dXNlcjpwYXNz", "NO_TOKEN"),
    ],
)
def test_profile_rejects_missing_or_bad_tokens(client, header, code):
    headers = {"Authorization": header} if header else {}
    r = client.get("/api/v1/auth/profile", headers=headers)
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == code


def test_expired_token_is_rejected(client, user, settings):
    token, _ = tokens.issue(user.id, "user", settings.jwt_secret, ttl_seconds=1)
    payload = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"], issuer="altus4")
    payload["exp"] = int(time.time()) - 10
    expired = jwt.encode(payload, settings.jwt_secret, algorithm="HS256")
    r = client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "TOKEN_EXPIRED"


def test_token_signed_with_another_secret_is_rejected(client, user):
    forged, _ = tokens.issue(user.id, "admin", "x" * 40, ttl_seconds=600)
    r = client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401


def test_api_key_is_not_accepted_as_jwt(client, user):
    secret, _ = user.create_key()
    r = client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 401
    assert "JWT" in r.get_json()["error"]["message"]


def test_update_profile(user, make_user):
    r = user.call("PUT", "/api/v1/auth/profile", json={"name": "Renamed"})
    assert r.status_code == 200 and r.get_json()["data"]["name"] == "Renamed"
    other = make_user()
    clash = user.call("PUT", "/api/v1/auth/profile", json={"email": other.email, "currentPassword": user.password})
    assert clash.status_code == 409
    bad = user.call("PUT", "/api/v1/auth/profile", json={"name": "x"})
    assert bad.status_code == 400


def test_change_password_invalidates_old_tokens(client, user):
    wrong = user.call(
        "POST",
        "/api/v1/auth/change-password",
        json={"currentPassword": "not it at all", "newPassword": "brand new password"},
    )
    assert wrong.status_code == 401
    time.sleep(0.01)
    r = user.call(
        "POST",
        "/api/v1/auth/change-password",
        json={"currentPassword": user.password, "newPassword": "brand new password"},
    )
    assert r.status_code == 200
    assert user.call("GET", "/api/v1/auth/profile").status_code == 401
    session = r.get_json()["data"]["token"]  # the session that changed it stays signed in
    assert client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {session}"}).status_code == 200
    old = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    assert old.status_code == 401
    new = client.post("/api/v1/auth/login", json={"email": user.email, "password": "brand new password"})
    assert new.status_code == 200
    fresh = new.get_json()["data"]["token"]
    assert client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {fresh}"}).status_code == 200


def test_logout_revokes_exactly_that_token(client, user):
    second = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    other_token = second.get_json()["data"]["token"]
    assert user.call("POST", "/api/v1/auth/logout").status_code == 200
    assert user.call("GET", "/api/v1/auth/profile").status_code == 401
    r = client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {other_token}"})
    assert r.status_code == 200


def test_refresh_rotates_the_token_after_a_grace(client, user, migrated):
    r = user.call("POST", "/api/v1/auth/refresh")
    assert r.status_code == 200
    new_token = r.get_json()["data"]["token"]
    assert new_token != user.token
    # requests already sent with the old token (other tabs, an SDK's retry) still succeed for JWT_REFRESH_GRACE
    assert user.call("GET", "/api/v1/auth/profile").status_code == 200
    assert client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    # logging out with the old token ends it at once, grace or not
    assert user.call("POST", "/api/v1/auth/logout").status_code == 200
    assert user.call("GET", "/api/v1/auth/profile").status_code == 401
    assert client.get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {new_token}"}).status_code == 200


def test_without_a_grace_a_refreshed_token_dies_at_once(migrated):
    app = create_app(make_settings(JWT_REFRESH_GRACE="0"))
    try:
        account = register(app.test_client())
        assert account.call("POST", "/api/v1/auth/refresh").status_code == 200
        assert account.call("GET", "/api/v1/auth/profile").status_code == 401
    finally:
        app.extensions["altus4"].close()


def test_delete_account_cascades(client, user, settings, targets, db):
    secret, key = user.create_key()
    conn = user.connect_database(settings, targets["a"])
    assert user.call("DELETE", "/api/v1/auth/account", json={"currentPassword": user.password}).status_code == 200
    assert user.call("GET", "/api/v1/auth/profile").status_code == 401
    with db.cursor() as cur:
        for table, column, value in (
            ("users", "id", user.id),
            ("api_keys", "id", key["id"]),
            ("database_connections", "id", conn["id"]),
        ):
            cur.execute(f"SELECT COUNT(*) AS n FROM {table} WHERE {column} = %s", (value,))
            assert cur.fetchone()["n"] == 0, table
    login = client.post("/api/v1/auth/login", json={"email": user.email, "password": user.password})
    assert login.status_code == 401
