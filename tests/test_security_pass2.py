"""The second security pass (issue #29): what an outside attack found, each checked as it was seen."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import jwt
import pymysql
import pytest
from click.testing import CliRunner
from conftest import READER, ROOT_DIR, connect_admin, env_for_tests, make_settings, register
from infra import TcpProxy, wait_for
from servers import call, free_port

from altus4 import create_app
from altus4.cli import main
from altus4.db.targets import TargetSpec, describe_error

PASSWORD = "correct horse battery"


@pytest.fixture
def strict_app(migrated):
    """Accounts on the free tier, a short backoff, clients behind one proxy (X-Forwarded-For is theirs)."""
    app = create_app(
        make_settings(
            DEFAULT_ACCOUNT_TIER="free", PASSWORD_MAX_BACKOFF="2", TRUSTED_PROXIES="1", METRICS_TOKEN="m" * 32
        )
    )
    yield app
    app.extensions["altus4"].close()


def _login(client, email: str, password: str, address: str):
    return client.post(
        "/api/v1/auth/login", json={"email": email, "password": password}, headers={"X-Forwarded-For": address}
    )


# ---- 4. password guessing, per account and across addresses --------------------------------------------
def test_password_guessing_is_bounded_per_account_across_addresses(strict_app):
    """Seen: 60 wrong passwords for one account from 7 addresses, all 401, then the right one worked."""
    client = strict_app.test_client()
    user = register(client, PASSWORD)
    redis_errors = strict_app.extensions["altus4"].metrics.redis_errors._value.get()
    statuses = Counter()
    for i in range(60):
        r = _login(client, user.email, f"wrong guess {i}", f"198.51.100.{i % 7 + 1}")
        statuses[r.status_code] += 1
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1 and r.get_json()["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert statuses[401] <= 10 and statuses[429] >= 50, statuses  # 5 free, then one try per backoff
    locked = _login(client, user.email, PASSWORD, "203.0.113.9")  # the right password waits too
    assert locked.status_code == 429
    time.sleep(2.2)  # PASSWORD_MAX_BACKOFF: nobody is locked out for good
    assert _login(client, user.email, PASSWORD, "203.0.113.9").status_code == 200
    assert _login(client, user.email, "wrong again", "203.0.113.9").status_code == 401  # the count started afresh
    assert strict_app.extensions["altus4"].metrics.redis_errors._value.get() == redis_errors  # counted in Redis


def test_an_unknown_email_is_limited_the_same_way(strict_app):
    client = strict_app.test_client()
    email = f"nobody-{uuid.uuid4().hex[:8]}@example.com"
    codes = [_login(client, email, "guess", f"198.51.100.{i}").status_code for i in range(1, 12)]
    assert codes[:5] == [401] * 5 and 429 in codes  # nothing tells an unknown account from a known one


def test_change_password_guesses_are_limited_and_share_the_account_count(strict_app):
    """Seen: 40 wrong currentPassword values in a row with a JWT, no 429."""
    user = register(strict_app.test_client(), PASSWORD)
    codes = [
        user.call(
            "POST", "/api/v1/auth/change-password", json={"currentPassword": f"no {i}", "newPassword": "a new one 123"}
        ).status_code
        for i in range(40)
    ]
    assert codes[:5] == [401] * 5 and codes.count(429) >= 30, Counter(codes)
    assert _login(strict_app.test_client(), user.email, PASSWORD, "203.0.113.1").status_code == 429  # one count
    time.sleep(2.2)
    r = user.call(
        "POST", "/api/v1/auth/change-password", json={"currentPassword": PASSWORD, "newPassword": "new one 1234"}
    )
    assert r.status_code == 200, r.get_json()


# ---- 5. a refreshed token has one successor ----------------------------------------------------------------
def test_refreshing_one_token_twice_gives_one_successor(strict_app):
    """Seen: one token refreshed 20 times in the grace became 20 independent live tokens; logout ended one."""
    user = register(strict_app.test_client(), PASSWORD)
    successors = {user.call("POST", "/api/v1/auth/refresh").get_json()["data"]["token"] for _ in range(20)}
    assert len(successors) == 1
    successor = successors.pop()
    client = strict_app.test_client()
    bearer = {"Authorization": f"Bearer {successor}"}
    assert client.get("/api/v1/auth/profile", headers=bearer).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=bearer).status_code == 200
    again = user.call("POST", "/api/v1/auth/refresh").get_json()["data"]["token"]  # still in the grace
    assert again == successor and client.get("/api/v1/auth/profile", headers=bearer).status_code == 401


def test_concurrent_refreshes_agree_on_the_successor(strict_app):
    user = register(strict_app.test_client(), PASSWORD)
    found: list[str] = []

    def refresh() -> None:
        r = strict_app.test_client().post("/api/v1/auth/refresh", headers=user.headers)
        found.append(r.get_json()["data"]["token"])

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and len(set(found)) == 1


# ---- 6. tiers are the account's, set by an admin --------------------------------------------------------------
def _admin(app):
    admin = register(app.test_client(), PASSWORD)
    app.extensions["altus4"].users.promote(admin.email)
    return admin


def test_a_key_tier_is_at_most_the_accounts_and_an_admin_sets_that(strict_app, settings, targets, db):
    """Seen: any user could create an `enterprise` key (100,000 requests an hour instead of 1,000)."""
    client = strict_app.test_client()
    user = register(client, PASSWORD)
    assert user.call("GET", "/api/v1/auth/profile").get_json()["data"]["tier"] == "free"
    for tier in ("pro", "enterprise"):
        r = user.call("POST", "/api/v1/keys", json={"name": "too high", "environment": "test", "rateLimitTier": tier})
        assert r.status_code == 400 and r.get_json()["error"]["details"][0]["code"] == "above_account_tier", r.json
    secret, key = user.create_key(rateLimitTier="free")  # at or below the tier: as before
    r = user.call("PUT", f"/api/v1/keys/{key['id']}", json={"rateLimitTier": "pro"})
    assert r.status_code == 400
    # a key made before accounts had tiers asks for enterprise: it counts as its account's tier
    with db.cursor() as cur:
        cur.execute("UPDATE api_keys SET rate_limit_tier = 'enterprise' WHERE id = %s", (key["id"],))
    strict_app.extensions["altus4"].admission.forget(
        strict_app.extensions["altus4"].keys.get(user.id, key["id"])["key_hash"]
    )
    user.connect_database(settings, targets["a"])
    headers = {"Authorization": f"Bearer {secret}"}

    def limit() -> str:
        r = client.post("/api/v1/search", json={"query": "gevent"}, headers=headers)
        assert r.status_code == 200, r.get_json()
        return r.headers["X-RateLimit-Limit"]

    assert limit() == str(settings.rate_limit_free)
    assert user.call("GET", f"/api/v1/keys/{key['id']}").get_json()["data"]["apiKey"]["rateLimitTier"] == "free"
    path = f"/api/v1/management/users/{user.id}/tier"
    assert user.call("PUT", path, json={"tier": "enterprise"}).status_code == 403  # not by the user
    admin = _admin(strict_app)
    r = admin.call("PUT", path, json={"tier": "pro"})
    assert r.status_code == 200 and r.get_json()["data"]["tier"] == "pro", r.get_json()
    assert limit() == str(settings.rate_limit_pro)  # capped at the new tier from the next request on
    assert admin.call("PUT", path, json={"tier": "gold"}).status_code == 400
    assert admin.call("PUT", f"/api/v1/management/users/{uuid.uuid4()}/tier", json={"tier": "pro"}).status_code == 404
    assert user.create_key(rateLimitTier="pro")  # now allowed
    result = CliRunner().invoke(main, ["user:tier", user.email, "free"], env=env_for_tests())
    assert result.exit_code == 0 and "free tier" in result.output, result.output
    assert limit() == str(settings.rate_limit_free)


# ---- 7. smaller items -----------------------------------------------------------------------------------------
def test_a_signed_token_with_a_non_numeric_iat_ms_is_a_401(strict_app, settings):
    user = register(strict_app.test_client(), PASSWORD)
    for bad in ("soon", None, [1], {"a": 1}, True):
        now = int(time.time())
        forged = jwt.encode(
            {"sub": user.id, "jti": str(uuid.uuid4()), "iss": "altus4", "iat": now, "exp": now + 60, "iat_ms": bad},
            settings.jwt_secret,
            algorithm="HS256",
        )
        r = strict_app.test_client().get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and r.get_json()["error"]["code"] == "INVALID_TOKEN", (bad, r.status_code)


def test_answers_carrying_secrets_are_not_stored_and_nothing_is_sniffed(strict_app):
    client = strict_app.test_client()
    email = f"nostore-{uuid.uuid4().hex[:8]}@example.com"
    answers = [client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "No Store"})]
    token = answers[0].get_json()["data"]["token"]
    auth = {"Authorization": f"Bearer {token}"}
    answers.append(_login(client, email, PASSWORD, "203.0.113.5"))
    answers.append(client.post("/api/v1/keys", json={"name": "secret key", "environment": "test"}, headers=auth))
    key_id = answers[-1].get_json()["data"]["apiKey"]["id"]
    answers.append(client.post(f"/api/v1/keys/{key_id}/regenerate", headers=auth))
    answers.append(client.post("/api/v1/auth/refresh", headers=auth))
    for r in answers:
        assert r.status_code in (200, 201), r.get_json()
        assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/health", "/api/v1/nothing-here", "/console", "/api/v1/openapi.json"):
        assert client.get(path).headers["X-Content-Type-Options"] == "nosniff", path


def test_deleting_the_account_or_changing_its_email_needs_the_password(strict_app):
    user = register(strict_app.test_client(), PASSWORD)
    new_email = f"moved-{uuid.uuid4().hex[:8]}@example.com"
    r = user.call("PUT", "/api/v1/auth/profile", json={"email": new_email})
    assert r.status_code == 400 and r.get_json()["error"]["details"][0]["field"] == "currentPassword"
    r = user.call("PUT", "/api/v1/auth/profile", json={"email": new_email, "currentPassword": "not it"})
    assert r.status_code == 401
    assert user.call("PUT", "/api/v1/auth/profile", json={"name": "Renamed Freely"}).status_code == 200
    r = user.call("PUT", "/api/v1/auth/profile", json={"email": new_email, "currentPassword": PASSWORD})
    assert r.status_code == 200 and r.get_json()["data"]["email"] == new_email
    assert user.call("DELETE", "/api/v1/auth/account").status_code == 400
    assert user.call("DELETE", "/api/v1/auth/account", json={"currentPassword": "not it"}).status_code == 401
    assert user.call("GET", "/api/v1/auth/profile").status_code == 200  # still there
    assert user.call("DELETE", "/api/v1/auth/account", json={"currentPassword": PASSWORD}).status_code == 200
    assert user.call("GET", "/api/v1/auth/profile").status_code == 401


def test_error_1698_names_the_user_as_the_other_access_errors_do(settings):
    """Seen: MySQL error 1698 quoted the server's message back, input and all; 1045 never did."""
    conn = connect_admin(settings)
    with conn.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'altus4_sock'@'%' IDENTIFIED VIA unix_socket")
    conn.close()
    spec = TargetSpec("id", settings.db_host, settings.db_port, "test", "altus4_sock", "x", False)
    try:
        pymysql.connect(host=spec.host, port=spec.port, user=spec.username, password=spec.password)
        pytest.fail("a unix_socket account signed in over TCP")
    except pymysql.MySQLError as exc:
        assert exc.args[0] in (1698, 1045), exc.args
        assert describe_error(exc, spec) == "Access denied for user 'altus4_sock'"


class _NotMySQL:
    """A port that answers, but not as MySQL does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()


def test_connection_tests_do_not_tell_closed_silent_and_other_ports_apart(migrated, targets):
    """Seen: testing a connection to any public host:port told a refused port from a timeout (a scanner)."""
    app = create_app(make_settings(CONNECTION_TIMEOUT="1", CONNECTION_TEST_RATE_LIMIT="4 per minute"))
    proxy, other = TcpProxy(migrated.db_port), _NotMySQL()
    try:
        user = register(app.test_client())
        proxy.black_hole()
        closed = free_port()
        errors = {}
        for what, port in (("refused", closed), ("silent", proxy.port), ("not MySQL", other.port)):
            body = {"name": what, "host": "127.0.0.1", "port": port, "database": targets["a"]}
            r = user.call("POST", "/api/v1/databases", json={**body, "username": READER[0], "password": READER[1]})
            assert r.status_code == 201, r.get_json()
            errors[what] = r.get_json()["data"]["lastError"].replace(f":{port} ", ":PORT ")
        assert len(set(errors.values())) == 1, errors
        connection = user.call("GET", "/api/v1/databases").get_json()["data"][0]["id"]
        assert user.call("POST", f"/api/v1/databases/{connection}/test").status_code == 200  # the 4th this minute
        r = user.call("POST", f"/api/v1/databases/{connection}/test")
        assert r.status_code == 429 and r.headers["Retry-After"]
    finally:
        proxy.close()
        other.sock.close()
        app.extensions["altus4"].close()


def test_metrics_answer_only_the_scrapers_the_operator_allows(strict_app):
    client = strict_app.test_client()
    assert client.get("/metrics", headers={"X-Forwarded-For": "10.1.2.3"}).status_code == 200  # private: allowed
    outside = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.7"})
    assert outside.status_code == 404 and b"altus4_" not in outside.data
    token = {"X-Forwarded-For": "203.0.113.7", "Authorization": "Bearer " + "m" * 32}
    assert client.get("/metrics", headers=token).status_code == 200
    wrong = {"X-Forwarded-For": "203.0.113.7", "Authorization": "Bearer " + "n" * 32}
    assert client.get("/metrics", headers=wrong).status_code == 404


# ---- 2. `make run` in production ----------------------------------------------------------------------------
@pytest.mark.slow
def test_make_run_in_production_skips_the_demo_in_one_line_and_serves(migrated, tmp_path):
    """Seen: `altus4 demo` connected the metadata host, the production host policy refused it, a traceback
    ended make with status 2, and the demo user had already been re-created without a key or connection."""
    database = f"altus4_prodrun_{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {
        **os.environ,
        **env_for_tests(DB_DATABASE=database, PORT=str(port)),
        "APP_ENV": "production",
        "JWT_SECRET": "j" * 40,
        "ENCRYPTION_KEY": "ab" * 32,
    }
    env.pop("ALLOW_OWN_SERVERS")
    env.pop("BIND", None)
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "scripts/run.sh"], cwd=ROOT_DIR, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: call(f"http://127.0.0.1:{port}/health", timeout=1)[0] == 200,
            60,
            "make run",
            alive=lambda: proc.poll() is None,
        )
        text = log.read_text()
        assert "Traceback" not in text and text.count("demo skipped") == 1, text
        assert "ALLOW_OWN_SERVERS" in text
        conn = connect_admin(migrated, database)
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM users WHERE email = 'demo@example.com'")
            assert cur.fetchone()[0] == 0  # nothing half-made
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
        conn = connect_admin(migrated)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


def test_the_demo_connects_with_a_read_only_account(migrated):
    """The demo connection uses an account that can only read the demo database (the console advises that)."""
    env = {**os.environ, **env_for_tests()}
    result = subprocess.run(
        [sys.executable, "-m", "altus4.cli", "demo"], cwd=ROOT_DIR, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    conn = connect_admin(migrated, migrated.db_database)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.username FROM database_connections c JOIN users u ON u.id = c.user_id"
            " WHERE u.email = 'demo@example.com'"
        )
        assert cur.fetchone()[0] == "altus4_demo_reader"
        cur.execute("SHOW GRANTS FOR 'altus4_demo_reader'@'%'")
        grants = " ".join(row[0] for row in cur.fetchall())
    conn.close()
    assert "SELECT ON `altus4_demo`.*" in grants and "INSERT" not in grants and "ALL" not in grants, grants


def test_the_demo_can_be_built_on_a_tenant_server_named_with_its_admin_account(migrated):
    """`altus4 demo --host` (what `scripts/stack.sh demo` runs in an API task): the demo database goes on that
    server through an admin account whose password comes on stdin, the connection is to that host with a
    read-only account, and outside development the demo user's password is a fresh random one."""
    admin_password = "demo-admin-" + uuid.uuid4().hex[:8]
    conn = connect_admin(migrated)
    with conn.cursor() as cur:
        for host in ("localhost", "127.0.0.1", "%"):
            cur.execute("CREATE USER IF NOT EXISTS 'altus4_demo_admin'@%s IDENTIFIED BY %s", (host, admin_password))
            cur.execute("GRANT ALL ON *.* TO 'altus4_demo_admin'@%s WITH GRANT OPTION", (host,))
    try:
        secrets = {"JWT_SECRET": "j" * 40, "ENCRYPTION_KEY": "e" * 40}
        allowed = {"ALLOWED_DATABASE_HOSTS": "localhost"}  # as the stack lists its demo-db
        env = {**os.environ, **env_for_tests(), "APP_ENV": "production", **secrets, **allowed}
        result = subprocess.run(
            [sys.executable, "-m", "altus4.cli", "demo", "--host", "localhost", "--admin-user", "altus4_demo_admin"]
            + ["--admin-password-stdin"],
            cwd=ROOT_DIR,
            env=env,
            input=admin_password + "\n",
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0 and "demo user:" in result.stdout, result.stderr
        assert admin_password not in result.stdout + result.stderr
        password = result.stdout.split("demo user: demo@example.com / ")[1].split()[0]
        assert password != "demo-password-123" and len(password) >= 16
        with conn.cursor() as cur:
            cur.execute(
                f"SELECT c.host, c.username FROM `{migrated.db_database}`.database_connections c"
                f" JOIN `{migrated.db_database}`.users u ON u.id = c.user_id WHERE u.email = 'demo@example.com'"
            )
            assert cur.fetchone() == ("localhost", "altus4_demo_reader")
    finally:
        with conn.cursor() as cur:
            for host in ("localhost", "127.0.0.1", "%"):
                cur.execute("DROP USER IF EXISTS 'altus4_demo_admin'@%s", (host,))
        conn.close()
