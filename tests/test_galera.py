"""The metadata database as a three-node Galera cluster (`DB_HOST` a list): the node taking writes is
SIGKILLed under a load of searches, JWT reads, key creations and revocations and registrations. Nothing a
client was told may fail or be lost, and the killed node comes back by IST with every row."""

import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis
from conftest import TEST_REDIS_DB, connect_admin, env_for_tests, make_settings
from galera import START_SCRIPT, GaleraSet, available
from infra import TcpProxy, wait_for
from servers import Traffic, account, call, metric_sum, start_gunicorn

from altus4.db.migrate import Migrator
from altus4.db.pool import Database
from altus4.errors import DatabaseUnavailable, WriteInterrupted
from altus4.metrics import Metrics

DATABASE = "altus4_galera"
BASE = Path("/tmp/altus4-galera")  # not under pytest's tmp: the mysql user must reach it


@pytest.fixture
def two_paths(migrated):
    """A "cluster" of the test server reached through two proxies: the first one can drop its connections
    mid-transaction, exactly as a node that dies does, and the second takes over."""
    first, second = TcpProxy(migrated.db_port), TcpProxy(migrated.db_port)
    settings = make_settings(DB_HOST=f"127.0.0.1:{first.port},127.0.0.1:{second.port}", DB_FAILOVER_WAIT="3")
    db = Database(settings, metrics=Metrics())
    db.execute("CREATE TABLE IF NOT EXISTS failover_probe (id VARCHAR(36) PRIMARY KEY, n INT NOT NULL)")
    db.execute("DELETE FROM failover_probe")
    yield db, first
    db.execute("DROP TABLE failover_probe")
    db.close()
    first.close()
    second.close()


def _rows(db: Database, sql: str, params=()) -> dict:
    return db.fetch_aggregate(f"SELECT COUNT(*) AS n, COALESCE(SUM(n), 0) AS total FROM failover_probe {sql}", params)


def test_an_interrupted_write_is_retried_on_the_next_node_only_where_that_is_safe(two_paths):
    db, first = two_paths
    row_id = str(uuid.uuid4())
    attempts = []

    def insert(cur) -> None:
        attempts.append(db.primary.name)
        cur.execute("INSERT INTO failover_probe (id, n) VALUES (%s, 1)", (row_id,))
        if len(attempts) == 1:
            first.refuse()  # the node dies before the COMMIT: the server rolls the transaction back

    db.write_retrying(insert, landed=("SELECT 1 FROM failover_probe WHERE id = %s", (row_id,)))
    assert len(attempts) == 2 and attempts[0] != attempts[1], attempts  # run again, on the other node
    assert _rows(db, "WHERE id = %s", (row_id,)) == {"n": 1, "total": 1}
    assert db.metrics.write_failovers._value.get() == 1

    # a relative update is not safe to repeat: the caller hears of it (503, Retry-After), nothing is doubled
    first.heal()
    db.nodes.check_all()  # the first node is back in (as the background check finds within its interval)
    assert db.primary.name.endswith(str(first.port))
    interrupted = []

    def add(cur) -> None:
        cur.execute("UPDATE failover_probe SET n = n + 1 WHERE id = %s", (row_id,))
        interrupted.append(True)
        first.refuse()

    with pytest.raises(WriteInterrupted) as raised:
        db.write_retrying(add)
    assert raised.value.status == 503 and raised.value.headers["Retry-After"]
    assert interrupted == [True] and _rows(db, "WHERE id = %s", (row_id,)) == {"n": 1, "total": 1}


def test_reads_and_writes_fail_over_and_a_node_out_of_the_primary_component_is_not_used(two_paths):
    db, first = two_paths
    first.refuse()
    db.execute("INSERT INTO failover_probe (id, n) VALUES (%s, 5)", (str(uuid.uuid4()),))  # on the second path
    assert _rows(db, "")["total"] == 5
    assert not db.nodes.nodes[0].usable and db.nodes.nodes[1].usable
    # ERROR 1047 (a Galera node outside the Primary component) takes a node out like a lost connection
    first.heal()
    db.nodes.check_all()
    assert db.primary.name.endswith(str(first.port))
    with pytest.raises(WriteInterrupted):  # not safe to repeat: the caller hears of it
        db.execute("SIGNAL SQLSTATE '08S01' SET MYSQL_ERRNO = 1047, MESSAGE_TEXT = 'WSREP has not yet prepared node'")
    assert not db.nodes.nodes[0].usable and not db.primary.name.endswith(str(first.port))


def test_a_write_that_cannot_take_its_lock_is_answered_503_not_500(two_paths, migrated):
    """Seen in the Swarm stack test: a Galera node losing its Primary component answered ERROR 1205 (lock wait
    timeout) to the writes it was holding, and they became 500s. The transaction is rolled back, so the client
    is told to retry (503, Retry-After), as for any lock held too long; nothing is applied."""
    db, _ = two_paths
    row_id = str(uuid.uuid4())
    db.execute("INSERT INTO failover_probe (id, n) VALUES (%s, 1)", (row_id,))
    holder = connect_admin(migrated, migrated.db_database)
    try:
        with holder.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT n FROM failover_probe WHERE id = %s FOR UPDATE", (row_id,))

        def update(cur) -> None:
            cur.execute("SET SESSION innodb_lock_wait_timeout = 1")
            cur.execute("UPDATE failover_probe SET n = 2 WHERE id = %s", (row_id,))

        with pytest.raises(DatabaseUnavailable) as refused:
            db.write_retrying(update, 2)
        assert refused.value.status == 503 and refused.value.headers["Retry-After"]
        assert not isinstance(refused.value, WriteInterrupted)  # nothing may have been applied: plain retry
    finally:
        holder.rollback()
        holder.close()
    assert _rows(db, "WHERE id = %s", (row_id,)) == {"n": 1, "total": 1}


class Writes(Traffic):
    """Traffic plus the writes a node's death must not lose: keys created then revoked, registrations."""

    def __init__(self, base: str, key: str, token: str):
        super().__init__(base, key, token)
        self.kept: list[str] = []  # secrets of keys created and left active
        self.revoked: list[str] = []  # secrets of keys created and revoked (both answered success)
        self.registered: list[str] = []

    def _keys(self) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            status, body = self._call("key", "/api/v1/keys", "POST", {"name": f"load key {i}", "environment": "test"})
            if status == 201:
                secret, key_id = body["data"]["secretKey"], body["data"]["apiKey"]["id"]
                if i % 2:
                    self.kept.append(secret)
                elif self._call("revoke", f"/api/v1/keys/{key_id}", "DELETE", None)[0] == 200:
                    self.revoked.append(secret)
            time.sleep(0.1)

    def _register(self) -> None:
        while not self._stop.is_set():
            email = f"galera-{uuid.uuid4().hex[:10]}@example.com"
            body = {"email": email, "password": "longenough1", "name": "Galera"}
            if self._call("register", "/api/v1/auth/register", "POST", body, token=None)[0] == 201:
                self.registered.append(email)
            time.sleep(0.2)

    def _call(self, kind, path, method, body, token="jwt"):  # type: ignore[override]
        token = self.token if token == "jwt" else token
        started = time.monotonic()
        try:
            status, answer, _ = call(self.base + path, method, body, token, timeout=30)
        except OSError:
            status, answer = 0, None
        self.seen.append((kind, status, time.monotonic() - started, started))
        return status, answer

    def __enter__(self):
        super().__enter__()
        extra = [threading.Thread(target=self._keys), threading.Thread(target=self._register)]
        for t in extra:
            t.start()
        self._threads += extra
        return self


@pytest.fixture(scope="module")
def cluster():
    missing = available()
    if missing:  # `make tools` installs galera-4 and rsync: their absence is a broken set-up, not a skip
        pytest.fail(f"the Galera test cannot run here: {missing}")
    nodes = GaleraSet(BASE).start()
    yield nodes
    nodes.stop()


@pytest.mark.slow
def test_the_writing_node_killed_under_load_loses_nothing(cluster, settings, targets, tmp_path):
    env = env_for_tests(**cluster.app_env(DATABASE, DB_REPLICA_CHECK_INTERVAL="0.5"))
    Migrator(make_settings(**env)).fresh()
    server = start_gunicorn(env, tmp_path, workers=2)
    try:
        token, key = account(server.url, settings, targets["a"], tier="enterprise")
        writer = cluster.ports[0]
        with Writes(server.url, key, token) as traffic:
            time.sleep(5)
            killed_at = time.monotonic()
            cluster.kill(writer)
            time.sleep(15)
            back_at = time.monotonic()
            cluster.start_one(writer)  # waits for Synced
            rejoin = time.monotonic() - back_at
            time.sleep(5)
        statuses = {kind: Counter(s[1] for s in traffic.seen if s[0] == kind) for kind in {s[0] for s in traffic.seen}}
        slowest = max(s[2] for s in traffic.seen if killed_at <= s[3] < back_at)
        retried = metric_sum(call(server.url + "/metrics")[1], "altus4_db_write_failovers_total")
        print(
            f"writer killed: {statuses}; slowest answer meanwhile {slowest:.1f} s; writes retried on the next node:"
            f" {retried:.0f}; rejoined in {rejoin:.1f} s"
        )
        assert [s for s in traffic.seen if s[1] not in (200, 201)] == [], statuses
        during = [s for s in traffic.seen if killed_at <= s[3] < back_at]
        assert {"search", "jwt", "key", "register"} <= {s[0] for s in during}, statuses
        assert traffic.kept and traffic.revoked and traffic.registered

        # the killed node came back by incremental transfer, not a full copy
        log = (BASE / "node1" / "error.log").read_text(errors="replace")
        assert "IST received" in log or "Receiving IST" in log, log[-2000:]
        # every acknowledged write is on every node
        for port in cluster.ports:
            with cluster.root(port, DATABASE) as conn, conn.cursor() as cur:
                marks = ", ".join(["%s"] * len(traffic.registered))
                cur.execute(f"SELECT COUNT(*) AS n FROM users WHERE email IN ({marks})", traffic.registered)
                assert cur.fetchone()["n"] == len(traffic.registered), port
        cache = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB)
        for name in cache.scan_iter("*apikey:*"):  # from MySQL, not from what the workers cached
            cache.delete(name)
        search = {"query": "gevent workers", "limit": 1}
        for secret in traffic.kept:
            assert call(server.url + "/api/v1/search", "POST", search, secret)[0] == 200
        for secret in traffic.revoked:
            assert call(server.url + "/api/v1/search", "POST", search, secret)[0] == 401

        # history and usage exact: what the API shows and what MySQL holds, for the load's key
        searches = len([s for s in traffic.seen if s[0] == "search"])

        def recorded() -> tuple:
            _, history, _ = call(server.url + "/api/v1/analytics/search-history?limit=1", token=token)
            _, keys, _ = call(server.url + "/api/v1/keys", token=token)
            usage = next(k["usageCount"] for k in keys["data"]["apiKeys"] if k["name"] == "http key")
            return history["data"]["total"], usage

        expected = (searches + len(traffic.kept), searches)  # the kept keys' checks above are searches too
        wait_for(lambda: recorded() == expected, 30, f"history and usage {expected}", interval=1)
    finally:
        server.stop()


def _start_script(datadir: Path, **env: str) -> subprocess.CompletedProcess:
    """The shipped start script on its own, with `true` for mariadbd: what it decides, before any server runs."""
    return subprocess.run(
        [str(START_SCRIPT), "--no-defaults"],
        env={**os.environ, "GALERA_DATADIR": str(datadir), "MARIADBD": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_start_script_refuses_an_unsafe_bootstrap_and_a_foreign_cluster(cluster, tmp_path):
    datadir = tmp_path / "data"
    (datadir / "mysql").mkdir(parents=True)
    state = "# GALERA saved state\nversion: 2.1\nuuid: {uuid}\nseqno: {seqno}\nsafe_to_bootstrap: {safe}\n"
    (datadir / "grastate.dat").write_text(state.format(uuid=uuid.uuid4(), seqno=1041, safe=0))
    forced = _start_script(datadir, GALERA_FORCE_BOOTSTRAP="1")
    assert forced.returncode == 1 and "refusing GALERA_FORCE_BOOTSTRAP" in forced.stderr, forced.stderr
    assert "safe_to_bootstrap: 0 (seqno 1041)" in forced.stderr
    # data of another cluster: joining the running one would replace it with a full copy
    peers = {"GALERA_PEERS": ",".join(f"127.0.0.1:{p}" for p in cluster.ports)}
    foreign = _start_script(datadir, **peers)
    assert foreign.returncode == 1 and "refusing to join" in foreign.stderr, foreign.stderr
    # the last node to leave cleanly may bootstrap when no cluster answers; any node joins one that does
    (datadir / "grastate.dat").write_text(state.format(uuid=uuid.uuid4(), seqno=1041, safe=1))
    alone = _start_script(datadir, GALERA_PEERS="127.0.0.1:1")
    assert alone.returncode == 0 and "bootstrapping from its data" in alone.stderr, alone.stderr
    own = cluster.status(cluster.ports[0])["wsrep_cluster_state_uuid"]
    (datadir / "grastate.dat").write_text(state.format(uuid=own, seqno=1041, safe=0))
    ours = _start_script(datadir, **peers)
    assert ours.returncode == 0 and "joining the cluster through 127.0.0.1:" in ours.stderr, ours.stderr


@pytest.mark.slow
def test_two_nodes_lost_refuse_writes_clearly_and_the_cluster_reforms_by_itself(cluster, settings, targets, tmp_path):
    """Two of three nodes SIGKILLed under load: the survivor leaves the Primary component, so writes are refused
    (503 with Retry-After, within the failover wait) while searches go on; the two restarted with the shipped
    start script form the cluster again with the survivor, with no manual step, and lose nothing acknowledged."""
    env = env_for_tests(**cluster.app_env(DATABASE, DB_REPLICA_CHECK_INTERVAL="0.5", DB_FAILOVER_WAIT="3"))
    Migrator(make_settings(**env)).fresh()
    server = start_gunicorn(env, tmp_path, workers=2)
    try:
        token, key = account(server.url, settings, targets["a"], tier="enterprise")
        lost = cluster.ports[:2]
        probe = Database(make_settings(**env), metrics=Metrics())
        assert probe.fetch_one("SELECT COUNT(*) AS n FROM users")["n"] >= 1  # every node checked and in use
        with Writes(server.url, key, token) as traffic:
            time.sleep(3)
            lost_at = time.monotonic()
            for port in lost:
                cluster.kill(port)
            # a read caught on the survivor as it leaves the Primary component: its causal wait ends in ERROR 1205
            # (seen as a 500 in the Swarm stack test), which is the node's loss, not a lock: a 503
            with pytest.raises(DatabaseUnavailable) as unavailable:
                probe.fetch_one("SELECT COUNT(*) AS n FROM users")
            probed = time.monotonic() - lost_at
            assert unavailable.value.status == 503 and unavailable.value.headers["Retry-After"]
            assert not any(node.usable for node in probe.nodes.nodes)
            time.sleep(max(0.0, 10 - probed))  # past evs.suspect_timeout (5 s): the survivor is alone
            asked = time.monotonic()
            status, refused, headers = call(
                server.url + "/api/v1/keys", "POST", {"name": "while two nodes are down"}, token, timeout=30
            )
            refused_in = time.monotonic() - asked
            time.sleep(5)
            back_at = time.monotonic()
            for port in lost:
                cluster.start_one(port, wait=False)
            for port in cluster.ports:
                cluster.wait_synced(port, 180)
            reformed = time.monotonic() - back_at
            time.sleep(5)
        outage = [s for s in traffic.seen if lost_at + 10 <= s[3] < back_at]
        after = [s for s in traffic.seen if s[3] >= back_at + reformed + 1]
        kinds = {kind: Counter(s[1] for s in outage if s[0] == kind) for kind in {s[0] for s in outage}}
        probe.close()
        print(
            f"two of three nodes down: {kinds}; the read caught by it refused after {probed:.1f} s;"
            f" a key creation refused in {refused_in:.1f} s; the cluster formed"
            f" again {reformed:.1f} s after the restarts; {len(after)} requests after, statuses"
            f" {Counter(s[1] for s in after)}"
        )
        assert status == 503 and refused["error"]["code"] == "DATABASE_UNAVAILABLE", refused
        assert int(headers["Retry-After"]) > 0 and refused_in < 3 + 5
        from_the_kill = Counter(s[1] for s in traffic.seen if lost_at <= s[3] < back_at)
        assert set(from_the_kill) <= {200, 201, 503}, from_the_kill  # refused clearly, or answered: nothing else
        assert kinds["search"][200] > 0  # searches go on
        assert after and {s[1] for s in after} <= {200, 201}, Counter(s[1] for s in after)
        for port in lost:
            assert "pc.recovery" in cluster.said(port), cluster.said(port)
        for port in cluster.ports:  # three nodes again, with every registration that was acknowledged
            assert cluster.status(port)["wsrep_cluster_size"] == "3"
            with cluster.root(port, DATABASE) as conn, conn.cursor() as cur:
                marks = ", ".join(["%s"] * len(traffic.registered))
                cur.execute(f"SELECT COUNT(*) AS n FROM users WHERE email IN ({marks})", traffic.registered)
                assert cur.fetchone()["n"] == len(traffic.registered), port
    finally:
        server.stop()


@pytest.mark.slow
def test_a_whole_cluster_crash_comes_back_with_no_manual_step(cluster):
    """Every node SIGKILLed (no node is safe to bootstrap): each restarts from its recovered position and waits,
    and the last primary component forms again once all of its members are back (pc.recovery)."""
    with cluster.root(cluster.ports[0]) as conn, conn.cursor() as cur:
        cur.execute("CREATE DATABASE IF NOT EXISTS galera_crash")
        cur.execute("CREATE TABLE IF NOT EXISTS galera_crash.marks (id INT PRIMARY KEY)")
        cur.execute("DELETE FROM galera_crash.marks")
        cur.executemany("INSERT INTO galera_crash.marks VALUES (%s)", [(i,) for i in range(100)])
    for port in cluster.ports:
        cluster.kill(port)
    started = time.monotonic()
    for port in cluster.ports:
        cluster.start_one(port, wait=False)
    for port in cluster.ports:
        cluster.wait_synced(port, 180)
    print(f"a whole-cluster crash: Synced again {time.monotonic() - started:.1f} s after the restarts")
    for port in cluster.ports:
        assert "pc.recovery" in cluster.said(port) and "recovered position" in cluster.said(port), cluster.said(port)
        assert cluster.status(port)["wsrep_cluster_size"] == "3"
        with cluster.root(port) as conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) AS n FROM galera_crash.marks")
            assert cur.fetchone()["n"] == 100
