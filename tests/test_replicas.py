"""The metadata database as a real MariaDB primary with two GTID replicas, started on loopback."""

import threading
import time
from pathlib import Path

import pytest
from conftest import READER, TARGET_A, make_settings, register
from infra import ReplSet, wait_for

from altus4 import create_app
from altus4.db.migrate import Migrator

pytestmark = pytest.mark.slow
PORTS = [3317, 3318, 3319]
DATABASE = "altus4_replicated"
BASE = Path("/tmp/altus4-tests/mariadb")


@pytest.fixture(scope="module")
def replset():
    rs = ReplSet(BASE, PORTS).start()
    yield rs
    rs.stop()


def _settings(**extra):
    env = ReplSet(BASE, PORTS).app_env(DATABASE, DB_REPLICA_CHECK_INTERVAL="0.2", DB_REPLICA_MAX_LAG="2")
    return make_settings(**{**env, **extra})


@pytest.fixture(scope="module")
def app(replset):
    settings = _settings()
    Migrator(settings).fresh()
    application = create_app(settings)
    yield application
    application.extensions["altus4"].close()


@pytest.fixture
def user(app):
    return register(app.test_client())


def _selects(rs, port) -> int:
    with rs.root(port) as conn, conn.cursor() as cur:
        cur.execute("SHOW GLOBAL STATUS LIKE 'Com_select'")
        return int(cur.fetchone()["Value"])


def _healthy_all(app) -> None:
    for replica in app.extensions["altus4"].db.replicas:
        wait_for(lambda r=replica: r.check_if_due() or r.healthy, 15, f"{replica.pool.name} healthy")


def test_reads_go_to_replicas_and_writes_to_the_primary(app, user, replset):
    _healthy_all(app)
    db = app.extensions["altus4"].db
    before = {p: _selects(replset, p) for p in PORTS[1:]}
    served = [r.pool.served for r in db.replicas]
    for _ in range(20):
        assert user.call("GET", "/api/v1/databases").status_code == 200
    after = {p: _selects(replset, p) for p in PORTS[1:]}
    assert all(after[p] > before[p] for p in PORTS[1:])  # both replicas answered SELECTs (round robin)
    assert all(r.pool.served > s for r, s in zip(db.replicas, served))
    # writes: a replica refuses them, so a successful write went to the primary
    assert user.call("PUT", "/api/v1/auth/profile", json={"name": "Written"}).status_code == 200
    with replset.root(PORTS[0], DATABASE) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM users WHERE id = %s", (user.id,))
        assert cur.fetchone()["name"] == "Written"


def test_read_your_writes_across_requests(app, user):
    _healthy_all(app)
    db = app.extensions["altus4"].db
    replica_reads = sum(r.pool.served for r in db.replicas)
    stale = 0
    for i in range(200):
        name = f"Name {i}"
        assert user.call("PUT", "/api/v1/auth/profile", json={"name": name}).status_code == 200
        if user.call("GET", "/api/v1/auth/profile").get_json()["data"]["name"] != name:
            stale += 1
    assert stale == 0
    assert sum(r.pool.served for r in db.replicas) > replica_reads  # replicas took part


def test_new_api_key_works_at_once(app, user):
    for _ in range(20):
        secret, _ = user.create_key()
        r = user.client.get("/api/v1/search/history", headers={"Authorization": f"Bearer {secret}"})
        assert r.status_code == 200


def test_a_stopped_replica_is_taken_out_and_reads_continue(app, user, replset):
    _healthy_all(app)
    db = app.extensions["altus4"].db
    replset.stop_one(PORTS[1])
    try:
        codes = [user.call("GET", "/api/v1/databases").status_code for _ in range(30)]
        assert codes == [200] * 30
        stopped = next(r for r in db.replicas if r.pool.name.endswith(str(PORTS[1])))
        assert stopped.healthy is False
    finally:
        replset.start_one(PORTS[1])
    wait_for(lambda: stopped.check_if_due() or stopped.healthy, 20, "replica back in")
    before = stopped.pool.served
    for _ in range(10):
        user.call("GET", "/api/v1/databases")
    assert stopped.pool.served > before


def test_a_lagging_replica_is_taken_out(app, user, replset):
    _healthy_all(app)
    db = app.extensions["altus4"].db
    lagging = next(r for r in db.replicas if r.pool.name.endswith(str(PORTS[2])))
    with replset.root(PORTS[2]) as conn, conn.cursor() as cur:
        cur.execute("STOP SLAVE")
        cur.execute("CHANGE MASTER TO MASTER_DELAY = 30")
        cur.execute("START SLAVE")
    try:

        def lag_detected():
            user.call("PUT", "/api/v1/auth/profile", json={"name": f"lag {time.time()}"})
            lagging.check_if_due()
            return not lagging.healthy and "lagging" in (lagging.reason or "")

        wait_for(lag_detected, 20, "lag detected", interval=0.3)
        assert "lagging" in lagging.reason
        codes = [user.call("GET", "/api/v1/auth/profile").status_code for _ in range(10)]
        assert codes == [200] * 10
    finally:
        with replset.root(PORTS[2]) as conn, conn.cursor() as cur:
            cur.execute("STOP SLAVE")
            cur.execute("CHANGE MASTER TO MASTER_DELAY = 0")
            cur.execute("START SLAVE")
    wait_for(lambda: lagging.check_if_due() or lagging.healthy, 40, "lagging replica back in", interval=0.3)


def test_a_restarted_primary_is_reconnected(app, user, replset):
    assert user.call("PUT", "/api/v1/auth/profile", json={"name": "Before"}).status_code == 200
    replset.stop_one(PORTS[0])
    try:
        down = user.call("PUT", "/api/v1/auth/profile", json={"name": "During"})
        assert down.status_code == 503 and down.headers["Retry-After"]
    finally:
        replset.start_one(PORTS[0])
    # answered as down without a try for DB_RETRY_SECONDS (1 s) after the last failure, then probed again
    started = time.monotonic()
    wait_for(
        lambda: user.call("PUT", "/api/v1/auth/profile", json={"name": "After"}).status_code == 200,
        5,
        "a write on the restarted primary",
    )
    assert time.monotonic() - started < 2.5
    assert user.call("GET", "/api/v1/auth/profile").get_json()["data"]["name"] == "After"


def test_exhausted_pool_answers_503_within_the_wait_bound(replset):
    settings = _settings(DB_POOL_SIZE="1", DB_POOL_TIMEOUT="0.3", DB_READ_HOSTS="")
    app = create_app(settings)
    svc = app.extensions["altus4"]
    token = register(app.test_client()).token
    held = threading.Event()
    release = threading.Event()

    def hold():
        with svc.db.primary.connection():
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    results = []

    def call():
        started = time.monotonic()
        r = app.test_client().get("/api/v1/auth/profile", headers={"Authorization": f"Bearer {token}"})
        results.append((r.status_code, r.headers.get("Retry-After"), time.monotonic() - started))

    callers = [threading.Thread(target=call) for _ in range(10)]
    for t in callers:
        t.start()
    for t in callers:
        t.join(10)
    release.set()
    holder.join(10)
    assert len(results) == 10
    assert all(code == 503 and retry == "1" for code, retry, _ in results)
    assert max(elapsed for _, _, elapsed in results) < 3  # 0.3 s wait bound plus overhead; nothing hung
    turned_away = svc.metrics.registry.get_sample_value("altus4_db_pool_exhausted_total", {"pool": "primary"})
    assert turned_away >= 10
    svc.close()


def test_searches_use_a_connected_databases_own_replica(app, user, replset):
    """A connection listing a read replica is searched there (the target data lives on the replset)."""
    from conftest import _known_tables

    with replset.root(PORTS[0]) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{TARGET_A}`")
        cur.execute(f"GRANT SELECT ON `{TARGET_A}`.* TO %s@'127.0.0.1' IDENTIFIED BY %s", READER)
        _known_tables(conn, only=TARGET_A)
    wait_for(
        lambda: replset.root(PORTS[1], TARGET_A).cursor().execute("SELECT 1 FROM kb LIMIT 1"), 20, "target replicated"
    )
    r = user.call(
        "POST",
        "/api/v1/databases",
        json={
            "name": "Replicated target",
            "host": "127.0.0.1",
            "port": PORTS[0],
            "database": TARGET_A,
            "username": READER[0],
            "password": READER[1],
            "readReplicas": [f"127.0.0.1:{PORTS[1]}"],
        },
    )
    conn_id = r.get_json()["data"]["id"]
    assert r.get_json()["data"]["readReplicas"] == [f"127.0.0.1:{PORTS[1]}"]
    secret, _ = user.create_key()
    found = user.client.post(
        "/api/v1/search",
        json={"query": "gevent workers", "tables": ["kb"]},
        headers={"Authorization": f"Bearer {secret}"},
    ).get_json()["data"]
    assert [x["data"]["id"] for x in found["results"]] == [3]
    served = app.extensions["altus4"].pools.served(conn_id)
    assert served.get(f"127.0.0.1:{PORTS[1]}", 0) >= 1 and f"127.0.0.1:{PORTS[0]}" not in served
