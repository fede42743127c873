"""The real server: gunicorn with gevent workers from config/gunicorn.conf.py, driven over HTTP."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import READER, env_for_tests
from servers import ROOT, account, call, free_port, start_gunicorn


@pytest.fixture(scope="module")
def server(migrated, tmp_path_factory):
    gunicorn = start_gunicorn(env_for_tests(), tmp_path_factory.mktemp("gunicorn"), workers=2)
    yield gunicorn
    gunicorn.stop()


def test_end_to_end_over_gunicorn_gevent(server, settings, targets):
    token, _ = account(server.url, settings, targets["a"])
    status, key, _ = call(server.url + "/api/v1/keys", "POST", {"name": "e2e", "environment": "live"}, token)
    secret = key["data"]["secretKey"]
    status, found, headers = call(
        server.url + "/api/v1/search",
        "POST",
        {"query": "gevent workers", "tables": ["kb"]},
        secret,
        headers={"X-Request-ID": "e2e-trace-1"},
    )
    assert status == 200
    assert [r["data"]["id"] for r in found["data"]["results"]] == [3]
    assert headers["X-Request-ID"] == "e2e-trace-1" and headers["X-RateLimit-Limit"] == "1000"
    status, history, _ = call(server.url + "/api/v1/search/history", token=secret)
    assert history["data"][0]["query"] == "gevent workers"
    time.sleep(0.2)
    log = server.log.read_text()
    assert "rid=e2e-trace-1" in log  # the access log carries the request id
    assert secret not in log and READER[1] not in log


def test_workers_are_gevent(server):
    """gevent's worker, with the deadline and bound on slow connections (altus4/gunicorn_worker.py)."""
    assert "Using worker: altus4.gunicorn_worker.GuardedGeventWorker" in server.log.read_text()


def test_bad_configuration_stops_the_server_with_the_setting_named(migrated):
    env = {
        **os.environ,
        **env_for_tests(),
        "BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "1",
        "APP_ENV": "production",
        "JWT_SECRET": "",
        "ENCRYPTION_KEY": "x" * 40,
    }
    gunicorn = Path(sys.executable).parent / "gunicorn"
    result = subprocess.run(
        [str(gunicorn), "-c", "config/gunicorn.conf.py", "app:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "configuration error: JWT_SECRET is required" in result.stdout + result.stderr


def test_a_worker_freezes_what_it_loaded_before_it_serves():
    """`post_worker_init` takes the loaded app out of the collector's walks: full collections that walked
    it stopped a worker for 107-214 ms under load (docs/performance.md)."""
    code = (
        "import gc, runpy; hooks = runpy.run_path('config/gunicorn.conf.py');"
        "from altus4 import create_app; app = create_app(); before = gc.get_freeze_count();"
        "hooks['post_worker_init'](None);"
        "print(before, gc.get_freeze_count())"
    )
    env = {**os.environ, **env_for_tests()}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    before, after = map(int, out.stdout.split())
    assert before == 0 and after > 10_000
