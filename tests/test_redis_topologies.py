"""Redis as Sentinel (with a failover mid-traffic) and as Cluster, both started on loopback."""

import threading
import time
from pathlib import Path

import pytest
import redis
from conftest import User, away_from_window_edge, make_settings, register
from infra import ClusterSet, SentinelSet, wait_for

from altus4 import create_app

pytestmark = pytest.mark.slow
SENTINELS = [26390, 26391, 26392]
CLUSTER = [7101, 7102, 7103, 7104, 7105, 7106]


def _searcher(app, settings, targets) -> tuple[User, dict]:
    user = register(app.test_client())
    user.connect_database(settings, targets["a"])
    secret, _ = user.create_key()
    return user, {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def sentinel_set():
    s = SentinelSet(Path("/tmp/altus4-tests/sentinel"), 6390, 6391, SENTINELS).start()
    yield s
    s.stop()


def test_sentinel_failover_fails_no_search(migrated, targets, sentinel_set):
    app = create_app(
        make_settings(
            REDIS_SENTINELS=",".join(f"127.0.0.1:{p}" for p in SENTINELS), REDIS_SENTINEL_MASTER="altus4-master"
        )
    )
    assert app.extensions["altus4"].redis.topology == "sentinel"
    user, headers = _searcher(app, migrated, targets)
    client = app.test_client()

    def search(query):
        r = client.post("/api/v1/search", json={"query": query, "tables": ["kb"]}, headers=headers)
        return r.status_code, (r.get_json().get("data") or {}).get("cached")

    assert search("gevent workers") == (200, False)
    assert search("gevent workers") == (200, True)  # cached through the Sentinel-discovered master

    statuses, stop = [], threading.Event()

    def stream():
        i = 0
        deadline = time.monotonic() + 20
        while not stop.is_set() and time.monotonic() < deadline:
            statuses.append(search(["gevent workers", "redis caching", "slow queries"][i % 3])[0])
            i += 1
            time.sleep(0.02)

    worker = threading.Thread(target=stream)
    worker.start()
    time.sleep(1.0)
    sentinel_set.kill(6390)  # the master
    try:
        probe = redis.Redis(port=SENTINELS[0], decode_responses=True)
        wait_for(lambda: probe.sentinel_get_master_addr_by_name("altus4-master")[1] == 6391, 20, "failover")
        time.sleep(1.5)
    finally:
        stop.set()
        worker.join(30)
    assert statuses and set(statuses) == {200}, f"{len(statuses)} searches, statuses {set(statuses)}"

    def cached_again():
        search("sentinel failover")
        return search("sentinel failover")[1] is True

    wait_for(cached_again, 20, "caching resumes on the promoted master", interval=0.5)
    app.extensions["altus4"].close()


@pytest.fixture
def cluster_set():
    c = ClusterSet(Path("/tmp/altus4-tests/cluster"), CLUSTER).start()
    yield c
    c.stop()


def test_cluster_key_layout_and_features(migrated, targets, cluster_set):
    app = create_app(make_settings(REDIS_CLUSTER_NODES=",".join(f"127.0.0.1:{p}" for p in CLUSTER)))
    svc = app.extensions["altus4"]
    assert svc.redis.topology == "cluster"
    user, headers = _searcher(app, migrated, targets)
    client = app.test_client()
    away_from_window_edge(3600)
    first = client.post("/api/v1/search", json={"query": "gevent workers"}, headers=headers)
    second = client.post("/api/v1/search", json={"query": "gevent workers"}, headers=headers)
    assert first.get_json()["data"]["cached"] is False and second.get_json()["data"]["cached"] is True
    assert second.headers["X-RateLimit-Remaining"] == str(int(first.headers["X-RateLimit-Remaining"]) - 1)
    # keys used together (MULTI, pipelines) share a slot through their {hash tag}
    node = redis.Redis(port=CLUSTER[0])
    slot = lambda key: node.execute_command("CLUSTER KEYSLOT", key)  # noqa: E731
    assert slot("usage:{pending}:batches") == slot("usage:{pending}:epoch") == slot("write-behind:{pending}:generation")
    key_id = user.call("GET", "/api/v1/keys").get_json()["data"]["apiKeys"][0]["id"]
    assert len({slot(f"rl:{{key:{key_id}}}:3600:{w}") for w in (0, 3600, 7200)}) == 1
    usage = user.call("GET", f"/api/v1/keys/{key_id}/usage").get_json()["data"]["usage"]
    assert usage["requestCount"] == 2  # counted in the cluster, flushed by a MULTI on one slot
    history = client.get("/api/v1/search/history", headers=headers).get_json()
    assert history["meta"]["total"] == 2  # the analytics queue (one key) flushed to MySQL
    assert svc.metrics.registry.get_sample_value("altus4_redis_errors_total") == 0
    svc.close()
