"""Inputs an outsider sends on purpose: each answered with a clear 4xx in the envelope, never a 5xx or a traceback.

One test per finding of the hardening review (letters as in the issue): A offsets past MySQL's range,
B extreme dates, C expiries that overflow, D `%` in identifiers, E raw driver errors, H the default host
policy (server-side request forgery), I a least-privilege `make run`. F (gunicorn's own errors, OPTIONS,
chunked bodies) is in test_hardening_server.py, against a real gunicorn.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pymysql
import pytest
from conftest import READER, ROOT_DIR, connect_admin, env_for_tests, fresh_fulltext_table, make_settings

from altus4 import create_app
from altus4.db import targets as target_db
from altus4.db.host_policy import HostNotAllowed, check_host_allowed
from altus4.db.targets import TargetSpec, describe_error

HUGE = "18446744073709551616"  # 2**64: one past what MySQL's LIMIT takes


def test_a_offsets_past_mysqls_range_are_a_400(user, client):
    headers = user.key_headers()
    for offset in (HUGE, "1000001", "-1"):
        r = client.get(f"/api/v1/search/history?offset={offset}", headers=headers)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "VALIDATION_ERROR", (offset, r.get_json())
        r = user.call("GET", f"/api/v1/analytics/search-history?offset={offset}")
        assert r.status_code == 400, (offset, r.get_json())
    assert client.get("/api/v1/search/history?offset=1000000", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/analytics/search-trends?endDate=9999-12-31",
        "/api/v1/analytics/performance?endDate=0001-01-01",
        "/api/v1/analytics/popular-queries?period=year&endDate=0001-06-01",
        "/api/v1/analytics/search-trends?startDate=0001-01-01&endDate=0001-01-02",
        "/api/v1/analytics/search-trends?endDate=0",
        "/api/v1/analytics/search-trends?endDate=1700000000",
        "/api/v1/analytics/search-trends?startDate=2026-13-01",
    ],
)
def test_b_dates_outside_the_calendar_we_keep_are_a_400(user, path):
    r = user.call("GET", path)
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["error"]["code"] == "VALIDATION_ERROR"


def test_b_admin_dates_too(app, client, settings):
    from conftest import register

    admin = register(client)
    conn = connect_admin(settings, "altus4_test")
    with conn.cursor() as cur:
        cur.execute("UPDATE users SET role = 'admin' WHERE id = %s", (admin.id,))
    conn.close()
    r = admin.call("GET", "/api/v1/analytics/admin/user-activity?startDate=9999-12-31&endDate=9999-12-31")
    assert r.status_code == 400, r.get_json()
    assert admin.call("GET", "/api/v1/analytics/admin/user-activity?period=week").status_code == 200


@pytest.mark.parametrize("expiry", ["9999-12-31T23:59:59-23:59", "9999-12-31T00:00:00Z", "2001-01-01T00:00:00Z"])
def test_c_expiries_that_overflow_or_passed_are_a_400(user, expiry):
    r = user.call("POST", "/api/v1/keys", json={"name": "edge", "environment": "test", "expiresAt": expiry})
    assert r.status_code == 400 and r.get_json()["error"]["details"][0]["field"] == "expiresAt", r.get_json()
    _, key = user.create_key()
    r = user.call("PUT", f"/api/v1/keys/{key['id']}", json={"expiresAt": expiry})
    assert r.status_code == 400, r.get_json()


def test_c_an_expiry_with_an_offset_is_kept_in_utc(user):
    r = user.call(
        "POST", "/api/v1/keys", json={"name": "offset", "environment": "test", "expiresAt": "2999-06-01T10:00:00+02:00"}
    )
    assert r.status_code == 201, r.get_json()
    assert r.get_json()["data"]["apiKey"]["expiresAt"] == "2999-06-01T08:00:00.000Z"


PERCENT_DB = "altus4_test_percent"


@pytest.fixture(scope="module")
def percent_database(settings):
    fresh_fulltext_table(
        settings,
        PERCENT_DB,
        "pct%s_table",
        "CREATE TABLE `pct%s_table` (id INT PRIMARY KEY, `title%s` VARCHAR(100), `body%d` TEXT,"
        " FULLTEXT KEY `ft%i` (`body%d`)) ENGINE=InnoDB",
        "INSERT INTO `pct%%s_table` (id, `title%%s`, `body%%d`) VALUES (%s, %s, %s)",
        [(1, "one", "percent signs in names"), (2, "two", "nothing else here"), (3, "three", "filler words")],
    )
    return PERCENT_DB


def test_d_percent_signs_in_identifiers_search_like_any_other(user, client, settings, percent_database):
    user.connect_database(settings, percent_database)
    headers = user.key_headers()
    r = client.post("/api/v1/search", json={"query": "percent signs"}, headers=headers)
    body = r.get_json()
    assert r.status_code == 200, body
    assert [(h["table"], h["data"]["id"]) for h in body["data"]["results"]] == [("pct%s_table", 1)]
    assert body["data"]["results"][0]["data"]["body%d"] == "percent signs in names"
    named = {"query": "percent", "tables": ["pct%s_table"], "columns": ["body%d"]}
    assert client.post("/api/v1/search", json=named, headers=headers).status_code == 200
    boolean = {"query": "+percent -nothing", "searchMode": "boolean"}
    assert client.post("/api/v1/search", json=boolean, headers=headers).get_json()["data"]["totalCount"] == 1
    # a LIKE fallback on a column without FULLTEXT, and the analysis of the same table
    like = {"query": "one", "tables": ["pct%s_table"], "columns": ["title%s"]}
    assert client.post("/api/v1/search", json=like, headers=headers).get_json()["data"]["totalCount"] == 1
    connection = user.call("GET", "/api/v1/databases").get_json()["data"][-1]["id"]
    r = client.post("/api/v1/search/analyze", json={"query": "percent", "databases": [connection]}, headers=headers)
    assert r.status_code == 200, r.get_json()
    (analysed,) = r.get_json()["data"]["performance"]["databases"]
    assert "`pct%s_table`" in analysed["tables"][0]["sql"]  # shown as typed, not as %%


def test_e_connection_errors_echo_no_protocol_bytes(user):
    body = {"name": "nul", "host": "127.0.0.1", "database": "x", "username": "a\x00b", "password": "p"}
    r = user.call("POST", "/api/v1/databases", json=body)
    assert r.status_code == 400 and r.get_json()["error"]["details"][0]["field"] == "username"
    spec = TargetSpec("id", "db.example.com", 3306, "shop", "ana", "pw", False)
    echoed = pymysql.err.OperationalError(1300, "Invalid utf8mb4 character string: '\\x14\\x0B-$\\xC7E='")
    message = describe_error(echoed, spec)
    assert "\\x" not in message and "utf8mb4" in message
    other = pymysql.err.OperationalError(1105, "unknown: '\\x01\\x02' and\x00 more")
    assert describe_error(other, spec) == "MySQL error 1105: unknown: '…' and more"


def test_g_the_service_refuses_what_the_spec_forbids(user):
    for body in ({"email": None}, {"name": None}):
        r = user.call("PUT", "/api/v1/auth/profile", json=body)
        assert r.status_code == 400, (body, r.get_json())
    assert user.call("PUT", "/api/v1/auth/profile", json={"name": "New Name"}).status_code == 200


def test_uppercase_connection_ids_are_the_same_connection(user, client, settings, targets):
    connection = user.connect_database(settings, targets["a"])
    headers = user.key_headers()
    body = {"query": "gevent workers", "databases": [connection["id"].upper()]}
    r = client.post("/api/v1/search", json=body, headers=headers)
    assert r.status_code == 200, r.get_json()
    assert user.call("GET", f"/api/v1/databases/{connection['id'].upper()}").status_code == 200


PROD = {"APP_ENV": "production", "JWT_SECRET": "j" * 40, "ENCRYPTION_KEY": "ab" * 32}


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.9",
        "192.168.1.1",
        "169.254.169.254",
        "fe80::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
        "localhost",
    ],
)
def test_h_production_refuses_internal_addresses_by_default(host):
    settings = make_settings(**PROD)
    with pytest.raises(HostNotAllowed, match="internal address"):
        check_host_allowed(host, settings)


def test_h_production_allows_public_addresses_but_not_its_own_servers():
    assert check_host_allowed("8.8.8.8", make_settings(**PROD)) == ["8.8.8.8"]
    own = make_settings(**PROD, REDIS_HOST="8.8.4.4", ALLOW_OWN_SERVERS="false")
    with pytest.raises(HostNotAllowed):
        check_host_allowed("8.8.4.4", own)


@pytest.mark.parametrize("env", ["production", "development"])
@pytest.mark.parametrize("allowlist", ["127.0.0.0/8", "*", "localhost,127.0.0.*", "0.0.0.0/0,::/0", ""])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2", "0.0.0.0", "::ffff:127.0.0.1"])
def test_h_own_servers_are_refused_whatever_the_allowlist_says(env, allowlist, host):
    """The metadata database and Redis run on this machine (127.0.0.1): no allowlist opens them, nor this
    machine's other loopback addresses. Before, an allowlist match returned before the own-address check: the
    README's Swarm example (10.0.0.0/8) let a tenant connect to the stack's own MariaDB and probe its Redis."""
    settings = make_settings(**{**PROD, "APP_ENV": env}, ALLOWED_DATABASE_HOSTS=allowlist, ALLOW_OWN_SERVERS="false")
    with pytest.raises(HostNotAllowed):
        check_host_allowed(host, settings)
    if allowlist == "*":  # the opt-in lifts the own-server rule (and only that)
        check_host_allowed(host, make_settings(**{**PROD, "APP_ENV": env}, ALLOWED_DATABASE_HOSTS="*"))


def test_h_own_servers_by_any_name_are_refused_but_other_hosts_are_not():
    """Own servers named in the settings (a replica, a sentinel) are refused by every name that resolves to
    them; an address outside them that the allowlist admits still works."""
    settings = make_settings(
        **PROD,
        DB_HOST="8.8.8.8",
        REDIS_HOST="8.8.8.8",
        DB_READ_HOSTS="1.1.1.1:3306",
        REDIS_SENTINELS="9.9.9.9:26379",
        REDIS_SENTINEL_MASTER="none",
        REDIS_SOCKET_TIMEOUT="0.05",
        ALLOWED_DATABASE_HOSTS="*",
        ALLOW_OWN_SERVERS="false",
    )
    for own in ("8.8.8.8", "1.1.1.1", "9.9.9.9", "::ffff:8.8.8.8"):
        with pytest.raises(HostNotAllowed, match="own servers"):
            check_host_allowed(own, settings)
    assert check_host_allowed("127.0.0.1", settings) == ["127.0.0.1"]  # nothing of ours runs on loopback here
    assert check_host_allowed("8.8.4.4", settings) == ["8.8.4.4"]


def test_h_the_api_refuses_its_own_database_and_redis_with_an_allowlist_that_covers_them(migrated, targets):
    """What the attacker did: with the allowlist covering the service's network, connect a "database" at the
    metadata MariaDB itself and at Redis. Both are refused when saved (400 HOST_NOT_ALLOWED), nothing is kept."""
    from conftest import register

    app = create_app(make_settings(**PROD, ALLOWED_DATABASE_HOSTS="127.0.0.0/8", ALLOW_OWN_SERVERS="false"))
    try:
        user = register(app.test_client())
        for port in (migrated.db_port, migrated.redis_port):
            body = {"name": "inside", "host": "127.0.0.1", "port": port, "database": targets["a"]}
            r = user.call("POST", "/api/v1/databases", json={**body, "username": READER[0], "password": READER[1]})
            assert r.status_code == 400 and r.get_json()["error"]["code"] == "HOST_NOT_ALLOWED", r.get_json()
            assert "own servers" in r.get_json()["error"]["message"]
        assert user.call("GET", "/api/v1/databases").get_json()["data"] == []
    finally:
        app.extensions["altus4"].close()


def test_h_the_operator_opens_the_policy_explicitly():
    assert check_host_allowed("127.0.0.1", make_settings(**PROD, ALLOWED_DATABASE_HOSTS="127.0.0.0/8")) == ["127.0.0.1"]
    assert check_host_allowed("10.1.2.3", make_settings(**PROD, ALLOWED_DATABASE_HOSTS="*")) is None
    with pytest.raises(HostNotAllowed, match="not in ALLOWED_DATABASE_HOSTS"):
        check_host_allowed("10.1.2.3", make_settings(**PROD, ALLOWED_DATABASE_HOSTS="127.0.0.0/8"))
    assert check_host_allowed("127.0.0.1", make_settings(APP_ENV="development")) is None  # development: open


def test_h_the_api_refuses_and_the_connect_time_check_holds(migrated, settings, targets):
    """A production app refuses a loopback host at save time; a row that names one anyway (saved under an
    older policy, or a name that now resolves inside) is refused again when a search connects."""
    from conftest import register

    app = create_app(make_settings(**PROD))
    try:
        client = app.test_client()
        user = register(client)
        body = {
            "name": "inside",
            "host": "127.0.0.1",
            "database": targets["a"],
            "username": READER[0],
            "password": READER[1],
        }
        r = user.call("POST", "/api/v1/databases", json=body)
        assert r.status_code == 400 and r.get_json()["error"]["code"] == "HOST_NOT_ALLOWED", r.get_json()
        open_app = create_app(make_settings(**PROD, ALLOWED_DATABASE_HOSTS="127.0.0.0/8"))
        saved = register(open_app.test_client())
        saved.client = client  # same metadata database: the user and row exist for the strict app too
        r = open_app.test_client().post("/api/v1/databases", json=body, headers=saved.headers)
        assert r.status_code == 201, r.get_json()
        secret, _ = saved.create_key()
        r = client.post("/api/v1/search", json={"query": "gevent"}, headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 502, r.get_json()
        status = r.get_json()["error"]["details"]["databases"][0]
        assert status["status"] == "failed" and "internal address" in status["error"]
        open_app.extensions["altus4"].close()
    finally:
        app.extensions["altus4"].close()


def test_h_connect_pins_the_checked_address():
    settings = make_settings(**PROD, ALLOWED_DATABASE_HOSTS="127.0.0.0/8")
    spec = TargetSpec("id", "localhost", 3306, "shop", "ana", "pw", False)
    assert target_db.connect_kwargs(spec, settings)["host"] == "127.0.0.1"  # not the name, resolved again later
    with_tls = TargetSpec("id", "localhost", 3306, "shop", "ana", "pw", True)
    assert target_db.connect_kwargs(with_tls, settings)["host"] == "localhost"  # TLS verifies the name


def test_i_a_least_privilege_account_runs_without_the_demo(settings, tmp_path):
    user, password, database = "altus4_lp", "lp-Secret-42", f"altus4_lp_{uuid.uuid4().hex[:6]}"
    conn = connect_admin(settings)
    with conn.cursor() as cur:
        for host in ("localhost", "127.0.0.1"):
            cur.execute("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", (user, host, password))
            cur.execute(f"GRANT ALL ON `{database}`.* TO %s@%s", (user, host))
    conn.close()
    env = {**os.environ, **env_for_tests(DB_USERNAME=user, DB_PASSWORD=password, DB_DATABASE=database)}
    altus4 = [sys.executable, "-m", "altus4.cli"]
    try:
        migrate = subprocess.run([*altus4, "migrate"], env=env, cwd=ROOT_DIR, capture_output=True, text=True)
        assert migrate.returncode == 0, migrate.stderr
        demo = subprocess.run([*altus4, "demo"], env=env, cwd=ROOT_DIR, capture_output=True, text=True)
        assert demo.returncode == 0, demo.stderr
        assert "Traceback" not in demo.stderr and demo.stderr.count("\n") == 1
        assert demo.stderr.startswith("demo skipped: 'altus4_lp' cannot create and fill the database")
        assert "ALTUS4_DEMO=0" in demo.stderr
    finally:
        conn = connect_admin(settings)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()
