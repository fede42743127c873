"""REDIS_PREFIX: two deployments sharing one Redis database keep every key, queue and counter apart."""

import pytest
import redis
from conftest import make_settings, register

from altus4 import create_app
from altus4.config import ConfigError

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
        for prefix in apps:  # the namespace covers the caches, the limiter, the queues and the flush locks
            for kind in ("apikey:", "conns:", "search:", "rl:", "schema:", "usage:flush-lock", "analytics:{pending}:"):
                assert any(k.startswith(prefix + kind) for k in keys), (prefix, kind, sorted(keys))
    finally:
        for app in apps.values():
            app.extensions["altus4"].close()
        shared.flushdb()


def test_a_prefix_that_would_break_a_hash_tag_is_refused():
    for bad in ("a{b}:", "has space", "x" * 65):
        with pytest.raises(ConfigError, match="REDIS_PREFIX"):
            make_settings(REDIS_PREFIX=bad)
