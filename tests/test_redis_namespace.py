"""Deployments sharing one Redis database: REDIS_PREFIX keeps every key, queue and counter apart, and without
it the queues are still each deployment's own (named by the metadata database's deployment id)."""

import pytest
import redis
from conftest import connect_admin, make_settings, register

from altus4 import create_app
from altus4.config import ConfigError
from altus4.db.migrate import Migrator
from altus4.services.key_usage import Tally

SHARED_DB = "12"  # a database of its own, emptied first: every key in it was written by the two apps below


def test_two_deployments_on_one_redis_database_touch_only_their_own_keys(migrated, targets):
    shared = redis.Redis(host=migrated.redis_host, port=migrated.redis_port, db=int(SHARED_DB), decode_responses=True)
    shared.flushdb()
    apps = {prefix: create_app(make_settings(REDIS_DB=SHARED_DB, REDIS_PREFIX=prefix)) for prefix in ("east:", "west:")}
    try:
        counts = {}
        for prefix, app in apps.items():
            user = register(app.test_client())
            user.connect_database(migrated, targets["a"])
            secret, key = user.create_key()
            headers = {"Authorization": f"Bearer {secret}"}
            for _ in range(2 if prefix == "east:" else 3):  # the second is a cache hit
                r = user.client.post("/api/v1/search", json={"query": "gevent workers"}, headers=headers)
                assert r.status_code == 200, r.get_json()
            assert r.get_json()["data"]["cached"] is True
            history = user.client.get("/api/v1/search/history", headers=headers).get_json()["meta"]["total"]
            usage = user.call("GET", f"/api/v1/keys/{key['id']}/usage").get_json()["data"]["usage"]["requestCount"]
            counts[prefix] = (history, usage)
        # each flush took only its own queues (the history read is a keyed request too: one more use)
        assert counts == {"east:": (2, 3), "west:": (3, 4)}
        keys = set(shared.keys("*"))
        assert keys and all(k.startswith(("east:", "west:")) for k in keys), sorted(keys)
        deployment = next(iter(apps.values())).extensions["altus4"].db.deployment_id()
        queues = f"deployment:{deployment}:"
        for prefix in apps:  # the namespace covers the caches, the limiter, the queues and the flush locks
            for kind in ("apikey:", "conns:", "search:", "rl:", "schema:"):
                assert any(k.startswith(prefix + kind) for k in keys), (prefix, kind, sorted(keys))
            for kind in ("usage:flush-lock", "analytics:{pending}:"):
                assert any(k.startswith(prefix + queues + kind) for k in keys), (prefix, kind, sorted(keys))
    finally:
        for app in apps.values():
            app.extensions["altus4"].close()
        shared.flushdb()


def test_a_prefix_that_would_break_a_hash_tag_is_refused():
    for bad in ("a{b}:", "has space", "x" * 65):
        with pytest.raises(ConfigError, match="REDIS_PREFIX"):
            make_settings(REDIS_PREFIX=bad)


OTHER_DB = "altus4_test_other_deployment"


@pytest.fixture
def other_deployment(migrated):
    """A second deployment's metadata database (its own users and keys), freshly migrated."""
    settings = make_settings(DB_DATABASE=OTHER_DB)
    Migrator(settings).fresh()
    yield settings
    conn = connect_admin(migrated)
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS {OTHER_DB}")
    conn.close()


def test_two_deployments_without_a_prefix_flush_only_their_own_queues(migrated, other_deployment, targets):
    """Both on one Redis database, neither with REDIS_PREFIX: each worker's flush takes only its own
    deployment's queues. Before, whichever took the flush lock took both and dropped the other's entries
    (INSERT IGNORE swallowed the foreign-key failures): 19-20 of 20 analytics entries were lost."""
    shared = redis.Redis(host=migrated.redis_host, port=migrated.redis_port, db=12, decode_responses=True)
    shared.flushdb()
    apps = [create_app(make_settings(REDIS_DB="12", DB_DATABASE=db)) for db in (migrated.db_database, OTHER_DB)]
    try:
        assert len({app.extensions["altus4"].db.deployment_id() for app in apps}) == 2
        keyed = []
        for app in apps:
            user = register(app.test_client())
            user.connect_database(migrated, targets["a"])
            secret, key = user.create_key()
            keyed.append((user, {"Authorization": f"Bearer {secret}"}, key))
        for i in range(20):  # interleaved: both buffers push, and both try the flush locks, as they go
            for user, headers, _ in keyed:
                r = user.client.post("/api/v1/search", json={"query": f"gevent workers {i}"}, headers=headers)
                assert r.status_code == 200, r.get_json()
        for app in apps:  # every worker's background flush had its chance at every lock
            svc = app.extensions["altus4"]
            svc.write_behind.push()
            svc.analytics.flush()
            svc.usage.flush()
        for user, headers, key in keyed:
            history = user.client.get("/api/v1/search/history?limit=1", headers=headers).get_json()["meta"]["total"]
            usage = user.call("GET", f"/api/v1/keys/{key['id']}/usage").get_json()["data"]["usage"]["requestCount"]
            assert (history, usage) == (20, 21), (history, usage)  # the history read is a keyed request too
        unapplied = [
            app.extensions["altus4"].metrics.write_behind_unapplied.labels(sink)._value.get()
            for app in apps
            for sink in ("analytics", "usage")
        ]
        assert unapplied == [0, 0, 0, 0]
    finally:
        for app in apps:
            app.extensions["altus4"].close()
        shared.flushdb()


def test_entries_that_cannot_be_applied_are_counted_not_dropped_silently(app, user, settings, targets):
    """An analytics entry or usage count whose user or key is gone is left out of the batch, counted in
    altus4_write_behind_unapplied_total and logged; the rest of the batch is written."""
    svc = app.extensions["altus4"]
    before = {s: svc.metrics.write_behind_unapplied.labels(s)._value.get() for s in ("analytics", "usage")}
    user.connect_database(settings, targets["a"])
    secret, key = user.create_key()
    headers = {"Authorization": f"Bearer {secret}"}
    for _ in range(3):
        assert user.client.post("/api/v1/search", json={"query": "gevent"}, headers=headers).status_code == 200
    svc.analytics.record("00000000-0000-4000-8000-000000000000", None, "ghost", "natural", [], [], 0, 1.0, False)
    svc.write_behind.push()
    svc.analytics.flush()
    svc.usage._write([(None, Tally({("no-such-key", "2026-12-06"): 2, (key["id"], "2026-12-06"): 1}))])
    after = {s: svc.metrics.write_behind_unapplied.labels(s)._value.get() for s in ("analytics", "usage")}
    assert (after["analytics"] - before["analytics"], after["usage"] - before["usage"]) == (1, 2)
    history = user.client.get("/api/v1/search/history", headers=headers).get_json()["meta"]["total"]
    assert history == 3
