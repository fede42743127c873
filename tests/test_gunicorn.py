"""The real server: gunicorn with gevent workers from config/gunicorn.conf.py, driven over HTTP."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from conftest import READER, env_for_tests

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base, method, path, body=None, token=None, headers=None):
    request = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json", **(headers or {})})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


@pytest.fixture(scope="module")
def server(migrated, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("gunicorn") / "server.log"
    env = {**os.environ, **env_for_tests(), "BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "2"}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(gunicorn), "-c", "config/gunicorn.conf.py", "app:app"], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            urllib.request.urlopen(base + "/health", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline, "gunicorn did not answer /health within 30 s:\n" + log.read_text()
            time.sleep(0.2)
    yield base, log
    workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        for pid in [proc.pid, *map(int, workers)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_end_to_end_over_gunicorn_gevent(server, settings, targets):
    base, log = server
    email = f"e2e-{uuid.uuid4().hex[:8]}@example.com"
    status, body, _ = _call(base, "POST", "/api/v1/auth/register",
                            {"email": email, "password": "longenough1", "name": "E2E"})
    assert status == 201
    token = body["data"]["token"]
    status, conn, _ = _call(base, "POST", "/api/v1/databases", {
        "name": "A", "host": settings.db_host, "port": settings.db_port, "database": targets["a"],
        "username": READER[0], "password": READER[1]}, token)
    assert status == 201 and conn["data"]["connectionStatus"] == "connected"
    status, key, _ = _call(base, "POST", "/api/v1/management/setup", token=token)
    secret = key["data"]["secretKey"]
    status, found, headers = _call(base, "POST", "/api/v1/search", {"query": "gevent workers", "tables": ["kb"]},
                                   secret, headers={"X-Request-ID": "e2e-trace-1"})
    assert status == 200
    assert [r["data"]["id"] for r in found["data"]["results"]] == [3]
    assert headers["X-Request-ID"] == "e2e-trace-1" and headers["X-RateLimit-Limit"] == "1000"
    status, history, _ = _call(base, "GET", "/api/v1/search/history", token=secret)
    assert history["data"][0]["query"] == "gevent workers"
    time.sleep(0.2)
    assert "rid=e2e-trace-1" in log.read_text()  # the access log carries the request id
    assert secret not in log.read_text() and READER[1] not in log.read_text()


def test_workers_are_gevent(server):
    _, log = server
    assert "Using worker: gevent" in log.read_text()


def test_bad_configuration_stops_the_server_with_the_setting_named(migrated, tmp_path):
    env = {**os.environ, **env_for_tests(), "BIND": f"127.0.0.1:{_free_port()}", "WEB_CONCURRENCY": "1",
           "APP_ENV": "production", "JWT_SECRET": "", "ENCRYPTION_KEY": "x" * 40}
    gunicorn = Path(sys.executable).parent / "gunicorn"
    result = subprocess.run([str(gunicorn), "-c", "config/gunicorn.conf.py", "app:app"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "configuration error: JWT_SECRET is required" in result.stdout + result.stderr
