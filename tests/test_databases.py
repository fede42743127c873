"""/api/v1/databases: connected databases, their credentials, reachability, schema and tenancy."""

import pytest
from conftest import READER, make_settings, register

from altus4 import create_app


def test_create_reachable_connection(user, settings, targets):
    conn = user.connect_database(settings, targets["a"], name="Shop")
    assert conn["connectionStatus"] == "connected" and conn["lastError"] is None
    assert conn["database"] == targets["a"] and conn["name"] == "Shop"
    assert "password" not in conn and READER[1] not in str(conn)
    profile = user.call("GET", "/api/v1/auth/profile").get_json()["data"]
    assert profile["connectedDatabases"] == [conn["id"]]


def test_unreachable_connection_is_saved_with_its_error(user):
    r = user.call(
        "POST",
        "/api/v1/databases",
        json={"name": "Down", "host": "127.0.0.1", "port": 1, "database": "nothing", "username": "nobody"},
    )
    assert r.status_code == 201
    data = r.get_json()["data"]
    assert data["connectionStatus"] == "failed"
    assert "127.0.0.1:1" in data["lastError"]
    test = user.call("POST", f"/api/v1/databases/{data['id']}/test").get_json()["data"]
    assert test["connected"] is False and "127.0.0.1:1" in test["message"]


def test_wrong_password_and_unknown_database_are_explained(user, settings, targets):
    bad_pw = user.call(
        "POST",
        "/api/v1/databases",
        json={
            "name": "Bad pw",
            "host": settings.db_host,
            "port": settings.db_port,
            "database": targets["a"],
            "username": "altus4_no_such_user",
            "password": "wrong",
        },
    ).get_json()["data"]
    assert bad_pw["connectionStatus"] == "failed" and "Access denied" in bad_pw["lastError"]
    assert "wrong" not in bad_pw["lastError"]
    no_db = user.connect_database(settings, "altus4_no_such_database")
    assert no_db["connectionStatus"] == "failed" and "altus4_no_such_database" in no_db["lastError"]


def test_ssl_to_a_server_without_tls_is_a_clear_error(user, settings, targets):
    conn = user.connect_database(settings, targets["a"], ssl=True)
    assert conn["ssl"] is True
    assert conn["connectionStatus"] == "failed"
    assert "TLS" in conn["lastError"]


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"host": "127.0.0.1", "database": "x", "username": "u"}, "name"),
        ({"name": "n", "database": "x", "username": "u"}, "host"),
        ({"name": "n", "host": "127.0.0.1", "username": "u"}, "database"),
        ({"name": "n", "host": "127.0.0.1", "database": "x", "username": "u", "port": 70000}, "port"),
        ({"name": "n", "host": "bad host; rm -rf", "database": "x", "username": "u"}, "host"),
        ({"name": "n", "host": "127.0.0.1", "database": "x", "username": "u", "ssl": "maybe"}, "ssl"),
    ],
)
def test_create_validation(user, payload, field):
    r = user.call("POST", "/api/v1/databases", json=payload)
    assert r.status_code == 400
    assert field in [d["field"] for d in r.get_json()["error"]["details"]]


def test_list_get_update_delete(user, settings, targets):
    conn = user.connect_database(settings, targets["a"])
    assert [c["id"] for c in user.call("GET", "/api/v1/databases").get_json()["data"]] == [conn["id"]]
    assert user.call("GET", f"/api/v1/databases/{conn['id']}").get_json()["data"]["name"] == targets["a"]
    moved = user.call("PUT", f"/api/v1/databases/{conn['id']}", json={"port": 1}).get_json()["data"]
    assert moved["port"] == 1 and moved["connectionStatus"] == "failed"
    back = user.call("PUT", f"/api/v1/databases/{conn['id']}", json={"port": settings.db_port, "name": "Back"})
    assert back.get_json()["data"]["connectionStatus"] == "connected"
    statuses = user.call("GET", "/api/v1/databases/status").get_json()["data"]
    assert statuses == {conn["id"]: True}
    assert user.call("DELETE", f"/api/v1/databases/{conn['id']}").status_code == 200
    assert user.call("GET", f"/api/v1/databases/{conn['id']}").status_code == 404
    assert user.call("GET", "/api/v1/databases").get_json()["data"] == []


def test_schema_discovers_fulltext_indexes(user, settings, targets):
    conn = user.connect_database(settings, targets["a"])
    r = user.call("GET", f"/api/v1/databases/{conn['id']}/schema")
    assert r.status_code == 200
    tables = {t["table"]: t for t in r.get_json()["data"]}
    assert set(tables) == {"products", "articles", "kb", "plain"}
    assert tables["plain"]["fullTextIndexes"] == []
    products = tables["products"]
    (index,) = products["fullTextIndexes"]
    assert (index["name"], index["columns"], index["type"]) == ("ft_products", ["name", "description"], "FULLTEXT")
    columns = {c["name"]: c for c in products["columns"]}
    assert columns["description"]["isFullTextIndexed"] and columns["description"]["isSearchable"]
    assert columns["category"]["isSearchable"] and not columns["category"]["isFullTextIndexed"]
    assert not columns["price"]["isSearchable"]
    assert products["primaryKey"] == ["id"] and products["estimatedRows"] > 0


def test_schema_of_unreachable_database_is_a_502(user):
    r = user.call(
        "POST",
        "/api/v1/databases",
        json={"name": "Down", "host": "127.0.0.1", "port": 1, "database": "nothing", "username": "nobody"},
    )
    conn_id = r.get_json()["data"]["id"]
    schema = user.call("GET", f"/api/v1/databases/{conn_id}/schema")
    assert schema.status_code == 502
    assert schema.get_json()["error"]["code"] == "DATABASE_UNREACHABLE"


def test_host_allowlist_blocks_other_hosts(migrated):
    app = create_app(make_settings(ALLOWED_DATABASE_HOSTS="10.20.0.0/16,*.db.example.com"))
    user = register(app.test_client())
    for host in ("127.0.0.1", "localhost", "169.254.169.254"):
        r = user.call("POST", "/api/v1/databases", json={"name": "x", "host": host, "database": "d", "username": "u"})
        assert r.status_code == 400, host
        assert r.get_json()["error"]["code"] == "HOST_NOT_ALLOWED"
    allowed = user.call(
        "POST",
        "/api/v1/databases",
        json={"name": "x", "host": "10.20.0.9", "port": 1, "database": "d", "username": "u"},
    )
    assert allowed.status_code == 201
    app.extensions["altus4"].close()


def test_other_users_connections_are_not_found(make_user, settings, targets):
    alice, bob = make_user(), make_user()
    conn = alice.connect_database(settings, targets["a"])
    for method, path, body in (
        ("GET", f"/api/v1/databases/{conn['id']}", None),
        ("PUT", f"/api/v1/databases/{conn['id']}", {"name": "mine now"}),
        ("DELETE", f"/api/v1/databases/{conn['id']}", None),
        ("POST", f"/api/v1/databases/{conn['id']}/test", None),
        ("GET", f"/api/v1/databases/{conn['id']}/schema", None),
    ):
        assert bob.call(method, path, json=body).status_code == 404, (method, path)
    assert bob.call("GET", "/api/v1/databases").get_json()["data"] == []
    assert bob.call("GET", "/api/v1/databases/status").get_json()["data"] == {}
    assert alice.call("GET", f"/api/v1/databases/{conn['id']}").get_json()["data"]["name"] == targets["a"]


def test_non_uuid_ids_are_not_found(user):
    assert user.call("GET", "/api/v1/databases/1%20OR%201=1").status_code == 404
    assert user.call("GET", "/api/v1/keys/../../etc").status_code == 404
