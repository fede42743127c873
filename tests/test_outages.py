"""Outages of what Altus 4 depends on, injected for real on loopback: a connected database that goes
down or hangs (through a TCP proxy the test controls), the metadata primary stopped for 30 s, Redis
killed and restarted empty. Each test counts what the client saw and what was lost."""

import contextlib
import os
import signal
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from conftest import TEST_REDIS_DB, env_for_tests, make_settings, register
from infra import ReplSet, TcpProxy, start_redis, wait_for
from servers import Traffic, account, call, free_port, metric_sum, start_gunicorn

from altus4.db.migrate import Migrator
from altus4.factory import create_app

RETRY = 2.0  # TARGET_RETRY_SECONDS in these tests


@pytest.fixture
def outage_app(migrated):
    app = create_app(
        make_settings(
            CONNECTION_TIMEOUT="1", SEARCH_TIMEOUT_MS="2000", TARGET_RETRY_SECONDS=str(RETRY), SEARCH_CACHE_TTL="0"
        )
    )
    yield app
    app.extensions["altus4"].close()


@pytest.fixture
def proxy(settings):
    p = TcpProxy(settings.db_port)
    yield p
    p.close()


def _searcher(app, settings, targets, proxy):
    """A user with database a direct and database b behind the proxy; functions that search them and that ask
    their status (GET /databases/status), each timed."""
    client = app.test_client()
    user = register(client)
    good = user.connect_database(settings, targets["a"])
    sick = user.connect_database(settings, targets["b"], host="127.0.0.1", port=proxy.port)
    secret, _ = user.create_key()

    def search() -> tuple[float, dict[str, dict]]:
        started = time.monotonic()
        r = client.post(
            "/api/v1/search", json={"query": "gevent workers"}, headers={"Authorization": f"Bearer {secret}"}
        )
        elapsed = time.monotonic() - started
        assert r.status_code == 200, r.get_json()
        return elapsed, {d["id"]: d for d in r.get_json()["data"]["databases"]}

    def status() -> tuple[float, dict[str, bool]]:
        started = time.monotonic()
        r = user.call("GET", "/api/v1/databases/status")
        assert r.status_code == 200, r.get_json()
        return time.monotonic() - started, r.get_json()["data"]

    return good["id"], sick["id"], search, status


def test_a_stopped_database_is_named_in_the_error_and_answered_at_once(outage_app, settings, targets, proxy):
    good, sick, search, status = _searcher(outage_app, settings, targets, proxy)
    _, first = search()
    assert first[good]["status"] == first[sick]["status"] == "ok"
    proxy.refuse()
    _, down = search()
    assert down[good]["status"] == "ok" and down[sick]["status"] == "failed"
    error = down[sick]["error"]
    assert "metadata" not in error.lower()  # it is the user's database that is down, not ours
    assert f"127.0.0.1:{proxy.port}" in error or "Lost connection" in error, error
    times = [search()[0] for _ in range(5)]  # the circuit is open: no connection attempt at all
    again = search()[1][sick]
    assert again["status"] == "failed" and "not retried for another" in again["error"], again
    assert max(times) < 0.5, times
    took, statuses = status()  # refused: known at once
    assert statuses == {good: True, sick: False} and took < 1.0, (took, statuses)
    proxy.heal()
    time.sleep(RETRY + 0.2)
    _, back = search()  # one probe, which succeeds and closes the circuit
    assert back[sick]["status"] == "ok", back[sick]


def test_a_black_holed_database_costs_one_search_then_fails_fast(outage_app, settings, targets, proxy):
    good, sick, search, status = _searcher(outage_app, settings, targets, proxy)
    search()
    proxy.black_hole()  # the pooled connection hangs, new ones are accepted and never answered
    hung_for, hung = search()
    assert hung[good]["status"] == "ok" and hung[sick]["status"] in ("timeout", "failed")
    assert hung_for < 3.5  # the 2 s search budget, not the pool's or the socket's timeouts
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the hung query's socket times out in the background: the circuit opens
        elapsed, answer = search()
        if answer[sick]["status"] == "failed" and "not retried" in answer[sick]["error"]:
            break
    else:
        pytest.fail("the black-holed database never failed fast")
    fast = [search() for _ in range(10)]
    assert all(a[good]["status"] == "ok" and a[sick]["status"] in ("failed", "timeout") for _, a in fast)
    # every TARGET_RETRY_SECONDS one search tries the database again and may spend the budget on it (by design:
    # that is how it is found back); when the circuit opened late in the loop above, that retry can fall among
    # these (seen once in CI: one of ten took 2.3 s). Every search that did not retry answers at once.
    skipped = [t for t, a in fast if "not retried" in (a[sick].get("error") or "")]
    assert len(skipped) >= 9 and max(skipped) < 0.5, [(round(t, 3), a[sick]["error"]) for t, a in fast]
    took, statuses = status()  # a real attempt (the circuit is for searches), bounded by CONNECTION_TIMEOUT (1 s)
    assert statuses == {good: True, sick: False} and took < 2.5, (took, statuses)
    proxy.heal()
    time.sleep(RETRY + 0.2)
    _, back = search()
    assert back[sick]["status"] == "ok", back[sick]


# ---- the metadata primary down under load --------------------------------------------------------------
OUTAGE_PORTS = [3327, 3328, 3329]
OUTAGE_DATABASE = "altus4_outage"
PRIMARY_DOWN_SECONDS = 30


@pytest.fixture(scope="module")
def outage_fleet(settings, targets, tmp_path_factory):
    rs = ReplSet(Path("/tmp/altus4-tests/mariadb-outage"), OUTAGE_PORTS).start()
    env = env_for_tests(**rs.app_env(OUTAGE_DATABASE, DB_REPLICA_CHECK_INTERVAL="0.5"))
    Migrator(make_settings(**env)).fresh()
    server = start_gunicorn(env, tmp_path_factory.mktemp("outage"), workers=2)
    yield rs, server
    server.stop()
    rs.stop()


@pytest.mark.slow
def test_the_metadata_primary_down_for_30_s_costs_no_read_and_loses_nothing(outage_fleet, settings, targets):
    rs, server = outage_fleet
    token, key = account(server.url, settings, targets["a"], tier="enterprise")
    cache = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB)
    status, created, _ = call(server.url + "/api/v1/keys", "POST", {"name": "doomed", "environment": "test"}, token)
    doomed, doomed_id = created["data"]["secretKey"], created["data"]["apiKey"]["id"]
    assert _search_with(server, doomed)[0] == 200
    with Traffic(server.url, key, token) as traffic:
        time.sleep(5)
        attempts = [_primary_connect_failures(server)]
        down_at = time.monotonic()
        rs.stop_one(OUTAGE_PORTS[0])
        # what the workers cached expires mid-outage: keys and connection lists must come from the replicas
        for name in [*cache.scan_iter("apikey:*"), *cache.scan_iter("conns:*")]:
            cache.delete(name)
        time.sleep(2)
        status, body, headers = call(server.url + "/api/v1/auth/profile", "PUT", {"name": "During"}, token)
        assert status == 503 and headers.get("Retry-After"), body  # writes wait for the primary, and say so
        # a revocation is not a write that can wait: it takes effect at once, and reaches MySQL later
        status, body, _ = call(server.url + f"/api/v1/keys/{doomed_id}", "DELETE", token=token)
        assert status == 200, body
        assert _search_with(server, doomed)[0] == 401
        time.sleep(PRIMARY_DOWN_SECONDS - 2)
        attempts.append(_primary_connect_failures(server))
        up_at = time.monotonic()
        rs.start_one(OUTAGE_PORTS[0])
        time.sleep(5)
    before = traffic.between("search", 0, down_at)
    during = {kind: traffic.between(kind, down_at, up_at) for kind in ("search", "jwt")}
    after = traffic.between("search", up_at, float("inf"))
    report = {kind: Counter(s[1] for s in traffic.seen if s[0] == kind) for kind in ("search", "jwt")}
    print(f"primary down {PRIMARY_DOWN_SECONDS} s: {report}")
    assert len(during["search"]) > 100 and len(during["jwt"]) > 50, report
    assert [s for s in traffic.seen if s[1] != 200] == [], report
    median = {
        name: statistics.median(s[2] for s in rows) for name, rows in (("before", before), ("during", during["search"]))
    }
    tries = attempts[1] - attempts[0]
    print(f"median search latency: {median}; connections tried on the down primary: {tries}")
    # no read waits on the primary: while it is down each worker's pool tries it once per DB_RETRY_SECONDS
    # (1 s) and refuses without a try meanwhile (reads then go to a replica). Timing is only a guard against
    # hangs: this machine's speed moves medians by 2x in a busy 30 s (seen: 10 ms before, 20 ms during)
    assert 0 < tries <= 2 * (PRIMARY_DOWN_SECONDS + 5), (tries, report)  # 2 workers; connections that broke
    assert median["during"] <= 3 * median["before"] + 0.020, median
    assert after, "no search after the primary came back"
    # nothing recorded was lost: every search answered is in the history and counted against the key
    searches = len([s for s in traffic.seen if s[0] == "search"])

    def recorded() -> tuple:
        """What MySQL's primary holds, after API reads that flush the queues (as the API shows it too)."""
        _, history, _ = call(server.url + "/api/v1/analytics/search-history?limit=1", token=token)
        _, keys, _ = call(server.url + "/api/v1/keys", token=token)
        shown = (
            history["data"]["total"] - 1,
            next(k["usageCount"] for k in keys["data"]["apiKeys"] if k["id"] != doomed_id),
        )
        with rs.root(OUTAGE_PORTS[0], OUTAGE_DATABASE) as conn, conn.cursor() as cur:
            cur.execute("SELECT user_id FROM api_keys WHERE id = %s", (doomed_id,))
            owner = cur.fetchone()["user_id"]
            cur.execute(
                "SELECT COUNT(*) AS n FROM search_analytics WHERE user_id = %s AND api_key_id != %s",
                (owner, doomed_id),
            )
            history_rows = cur.fetchone()["n"]
            cur.execute("SELECT usage_count FROM api_keys WHERE user_id = %s AND id != %s", (owner, doomed_id))
            usage = cur.fetchone()["usage_count"]
        return (history_rows, usage), shown

    def complete() -> bool:
        (history, usage), shown = recorded()
        return history == usage == searches and shown == (history, usage)

    try:
        wait_for(complete, 30, "every search recorded", interval=1)
    except TimeoutError:
        pytest.fail(
            f"{searches} searches answered; (history, usage count) in MySQL, in the API = {recorded()};"
            f" where the counts stand: {_usage_trail(rs, cache, doomed_id)}"
        )
    print(f"usage trail: {_usage_trail(rs, cache, doomed_id)}")
    # the revocation reached MySQL: with its Redis tombstone gone, the key is still refused
    with rs.root(OUTAGE_PORTS[0], OUTAGE_DATABASE) as conn, conn.cursor() as cur:
        wait_for(
            lambda: cur.execute("SELECT is_active FROM api_keys WHERE id = %s", (doomed_id,)) is not None
            and cur.fetchone()["is_active"] == 0,
            10,
            "the revocation in MySQL",
            interval=0.5,
        )
    for name in cache.scan_iter("apikey:*"):
        cache.delete(name)
    assert _search_with(server, doomed)[0] == 401


def _usage_trail(rs: ReplSet, cache: redis.Redis, doomed_id: str) -> dict:
    """Where usage counts can be when some are missing: still queued or taken in Redis, or applied per day
    (api_key_usage) but not to the key's total, and how many batches MySQL has marked applied."""
    trail: dict = {
        name.decode(): cache.llen(name) if cache.type(name) == b"list" else cache.zcard(name)
        for name in cache.scan_iter("*{pending}*")
        if cache.type(name) in (b"list", b"zset")
    }
    with rs.root(OUTAGE_PORTS[0], OUTAGE_DATABASE) as conn, conn.cursor() as cur:
        cur.execute("SELECT user_id FROM api_keys WHERE id = %s", (doomed_id,))
        owner = cur.fetchone()["user_id"]
        cur.execute(
            "SELECT COALESCE(SUM(u.request_count), 0) AS n FROM api_key_usage u JOIN api_keys k"
            " ON k.id = u.api_key_id WHERE k.user_id = %s AND k.id != %s",
            (owner, doomed_id),
        )
        trail["api_key_usage"] = int(cur.fetchone()["n"])
        cur.execute("SELECT COUNT(*) AS n FROM write_batches")
        trail["write_batches"] = cur.fetchone()["n"]
    return trail


def _primary_connect_failures(server) -> float:
    """Connections to the metadata primary that failed so far, across workers."""
    return metric_sum(call(server.url + "/metrics")[1], "altus4_db_connect_failures_total", pool="primary")


def _search_with(server, key: str) -> tuple:
    return call(server.url + "/api/v1/search", "POST", {"query": "gevent workers", "limit": 1}, key)


# ---- Redis killed and restarted empty under load ---------------------------------------------------------
@pytest.mark.slow
def test_redis_killed_and_restarted_empty_loses_no_search_and_no_count(migrated, settings, targets, tmp_path):
    port = free_port()
    redis_server = start_redis(tmp_path / "redis", port)
    server = start_gunicorn(env_for_tests(REDIS_PORT=str(port), REDIS_DB="0"), tmp_path, workers=2)
    try:
        token, key = account(server.url, settings, targets["a"], tier="enterprise")
        with Traffic(server.url, key, token) as traffic:
            time.sleep(4)  # queues fill in Redis between flushes
            queued = sum(redis.Redis(port=port).llen(k) for k in redis.Redis(port=port).keys("*:analytics:{pending}"))
            redis_server.kill()  # SIGKILL: what it held is gone
            redis_server.wait(10)
            time.sleep(1)
            redis_server = start_redis(tmp_path / "redis", port)  # back, empty
            time.sleep(5)
        report = {kind: Counter(s[1] for s in traffic.seen if s[0] == kind) for kind in ("search", "jwt")}
        print(f"Redis killed with {queued} analytics entries queued: {report}")
        assert [s for s in traffic.seen if s[1] != 200] == [], report
        searches = len([s for s in traffic.seen if s[0] == "search"])

        def recorded() -> tuple:
            _, history, _ = call(server.url + "/api/v1/analytics/search-history?limit=1", token=token)
            _, keys, _ = call(server.url + "/api/v1/keys", token=token)
            return history["data"]["total"], keys["data"]["apiKeys"][0]["usageCount"]

        def complete() -> bool:
            history, usage = recorded()
            return history == usage == searches

        try:
            wait_for(complete, 30, "every search recorded", interval=1)
        except TimeoutError:
            pytest.fail(f"{searches} searches answered; (history, usage count) = {recorded()}")
    finally:
        server.stop()
        redis_server.kill()
        redis_server.wait(10)


# ---- a worker stopped or killed under load ---------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGKILL"])
def test_a_worker_stopped_or_killed_under_load(migrated, settings, targets, tmp_path, signal_name):
    """SIGTERM: the worker finishes what it serves and sends what it buffered: nothing fails, nothing is lost.
    SIGKILL: what it was serving fails and what it buffered is lost, at most WRITE_BEHIND_INTERVAL_MS of it
    (100 ms here: a handful of searches); a flush it was running is taken over ADOPT_AFTER (10 s) later, before
    the counts are read; the master replaces it."""
    server = start_gunicorn(env_for_tests(), tmp_path, workers=2)
    try:
        token, key = account(server.url, settings, targets["a"], tier="enterprise")
        with Traffic(server.url, key, token) as traffic:
            time.sleep(3)
            os.kill(server.workers()[0], getattr(signal, signal_name))
            time.sleep(5)
        report = {kind: Counter(s[1] for s in traffic.seen if s[0] == kind) for kind in ("search", "jwt")}
        answered = len([s for s in traffic.seen if s[0] == "search" and s[1] == 200])
        failed = len([s for s in traffic.seen if s[1] != 200])

        def recorded() -> tuple:
            _, history, _ = call(server.url + "/api/v1/analytics/search-history?limit=1", token=token)
            _, keys, _ = call(server.url + "/api/v1/keys", token=token)
            return history["data"]["total"], keys["data"]["apiKeys"][0]["usageCount"]

        time.sleep(12)  # past both flush periods (analytics 5 s, usage 10 s)
        if signal_name == "SIGTERM":  # late is not lost: wait up to 20 s more for the last counts
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: recorded() == (answered, answered), 20, "every search recorded", interval=1)
        history, usage = recorded()
        print(f"{signal_name} one of 2 workers: {report}; {answered} answered, history {history}, usage {usage}")
        assert len(server.workers()) == 2  # replaced
        if signal_name == "SIGTERM":
            assert failed == 0 and history == usage == answered, (report, history, usage)
        else:
            assert failed <= 5, report  # the requests the killed worker was serving
            for kept in (history, usage):  # a request cut off mid-answer may have been recorded
                assert answered - 10 <= kept <= answered + failed, (answered, failed, history, usage)
    finally:
        server.stop()
