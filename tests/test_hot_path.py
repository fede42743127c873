"""The API-key request path: no MySQL writes per request, and cooperative I/O under gevent."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import redis
from conftest import TEST_REDIS_DB, env_for_tests

ROOT = Path(__file__).resolve().parent.parent


def test_no_mysql_write_and_no_per_request_queue_write_on_the_api_key_path(app, user, settings, targets, queries):
    user.connect_database(settings, targets["a"])
    secret, key = user.create_key()
    headers = {"Authorization": f"Bearer {secret}"}
    cache = redis.Redis(host=settings.redis_host, port=settings.redis_port, db=TEST_REDIS_DB)
    client = app.test_client()
    svc = app.extensions["altus4"]
    # warm the key cache and the search cache, then hold the batch-flush locks so only per-request work remains
    client.post("/api/v1/search", json={"query": "gevent workers"}, headers=headers)
    svc.analytics.flush()
    svc.usage.flush()
    locks = [svc.write_behind.key(name) for name in ("usage:flush-lock", "analytics:flush-lock")]
    for lock in locks:
        cache.set(lock, "1", ex=60)
    try:
        svc.write_behind.interval = 60  # the background push waits; reads push what this worker buffered
        time.sleep(3 * settings.write_behind_interval_ms / 1000)  # its current short sleep ends first
        svc.write_behind.push()
        queries.statements.clear()
        for _ in range(20):
            assert client.post("/api/v1/search", json={"query": "gevent workers"}, headers=headers).status_code == 200
        assert queries.statements == []  # cached: not even a read reaches MySQL
        assert (
            cache.llen(svc.write_behind.key("analytics:{pending}")) == 0
        )  # buffered in the worker, not one Redis write each
        # reading analytics pushes the buffer and flushes the queue: the 20 searches arrive as one INSERT
        history = client.get("/api/v1/search/history?limit=50", headers=headers).get_json()
        assert history["meta"]["total"] == 21
        assert len(queries.writes()) == 1 and queries.writes("search_analytics") == queries.writes()
    finally:
        svc.write_behind.interval = settings.write_behind_interval_ms / 1000
        cache.delete(*locks)
    # ...and the counts were kept: the batch flush writes them once
    usage = user.call("GET", f"/api/v1/keys/{key['id']}/usage").get_json()["data"]["usage"]
    assert usage["requestCount"] == 22


GEVENT_PROBE = """
from gevent import monkey; monkey.patch_all()
import sys, time, gevent
from altus4.config import Settings
from altus4.db.pool import Database
import json, os
settings = Settings.from_env(json.loads(sys.argv[1]))
db = Database(settings)
db.fetch_one("SELECT 1")  # warm one connection
started = time.monotonic()
gevent.joinall([gevent.spawn(db.fetch_one, "SELECT SLEEP(0.5)") for _ in range(8)])
print(round(time.monotonic() - started, 3))
"""


def test_parallel_slow_queries_in_one_gevent_worker_take_the_time_of_one():
    import json

    env = env_for_tests(DB_POOL_SIZE="8")
    out = subprocess.run(
        [sys.executable, "-c", GEVENT_PROBE, json.dumps(env)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    elapsed = float(out.stdout.strip().splitlines()[-1])
    assert elapsed < 2.0, f"8 x SLEEP(0.5) took {elapsed}s: not cooperative (sequential would be 4 s)"


TURNS_PROBE = """
from gevent import monkey; monkey.patch_all()
import gevent
from altus4.serving import take_turns
order = []
def app(environ, start_response):
    order.append(environ["who"])
    return [b""]
def client(who, wsgi):
    for _ in range(3):
        wsgi({"who": who}, None)
for wsgi in (app, take_turns(app)):
    order.clear()
    gevent.joinall([gevent.spawn(client, "a", wsgi), gevent.spawn(client, "b", wsgi)])
    print("".join(order))
"""


def test_each_request_yields_so_ready_greenlets_take_turns():
    out = subprocess.run([sys.executable, "-c", TURNS_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    bare, fair = out.stdout.split()
    assert bare == "aaabbb"  # without a yield, the first greenlet runs all its requests first
    assert fair == "ababab"


def test_a_cached_search_is_one_redis_round_trip(app, user, settings, targets, monkeypatch):
    """The key's entry, its rate-limit counters, the user's connection list and the cached page come in one
    pipeline once the worker has seen the key (counted in this thread: the background push has its own; the
    first item after a quiet interval, sent at once, is kept out by a long interval)."""
    user.connect_database(settings, targets["a"])
    headers = user.key_headers()
    client = app.test_client()
    body = {"query": "gevent workers", "limit": 5}
    first = client.post("/api/v1/search", json=body, headers=headers).get_json()["data"]
    monkeypatch.setattr(app.extensions["altus4"].write_behind, "interval", 60)
    me = threading.get_ident()
    trips: list[str] = []
    pipeline_execute, execute_command = redis.client.Pipeline.execute, redis.Redis.execute_command

    def counted_pipeline(self, *args, **kwargs):
        if threading.get_ident() == me:
            trips.append("pipeline:" + ",".join(str(c[0][0]) for c in self.command_stack))
        return pipeline_execute(self, *args, **kwargs)

    def counted_command(self, *args, **kwargs):
        if threading.get_ident() == me:
            trips.append(str(args[0]))
        return execute_command(self, *args, **kwargs)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counted_pipeline)
    monkeypatch.setattr(redis.Redis, "execute_command", counted_command)
    for _ in range(3):
        trips.clear()
        r = client.post("/api/v1/search", json=body, headers=headers)
        data = r.get_json()["data"]
        assert data["cached"] is True and data["results"] == first["results"]
        assert len(trips) == 1, trips
        assert trips[0].startswith("pipeline:GET,INCRBY,EXPIRE,") and trips[0].count("GET") == 3, trips
    # a request the search refuses is still admitted (checked and counted) first, then refused
    monkeypatch.undo()
    malformed = [{"query": "x", "limit": 0}, {"query": '"unclosed', "searchMode": "boolean"}, {"query": "+"}]
    for bad in malformed:
        assert client.post("/api/v1/search", json=bad, headers=headers).status_code == 400
    key_id = user.call("GET", "/api/v1/keys").get_json()["data"]["apiKeys"][0]["id"]
    usage = user.call("GET", f"/api/v1/keys/{key_id}/usage").get_json()["data"]["usage"]
    assert usage["requestCount"] == 1 + 3 + len(malformed)
    assert user.call("DELETE", f"/api/v1/keys/{key_id}").status_code == 200
    for bad in malformed:
        assert client.post("/api/v1/search", json=bad, headers=headers).status_code == 401
