"""The shipped nginx and HAProxy configurations in front of three real gunicorn instances (and the backup):
one instance is killed mid-stream and no client request fails. Then a graceful gunicorn reload under load."""

import signal
import threading
import time

import pytest
from conftest import env_for_tests
from servers import account, call, start_gunicorn, start_haproxy, start_nginx

pytestmark = pytest.mark.slow
QUERIES = ["gevent workers", "redis caching", "slow queries", "sentinel failover", "connection pooling"]


@pytest.fixture
def fleet(migrated, targets, tmp_path):
    """Three app servers plus the backup, and a user with a connected database and an API key."""
    env = env_for_tests(TRUSTED_PROXIES="1")
    apps = [start_gunicorn(env, tmp_path) for _ in range(3)]
    backup = start_gunicorn(env, tmp_path)
    _, key = account(apps[0].url, migrated, targets["a"], tier="pro")
    yield apps, backup, key
    for server in (*apps, backup):
        server.stop()


def _stream(url: str, key: str, clients: int, per_client: int, pause: float, during=None) -> list[int]:
    """`clients` threads each sending `per_client` searches `pause` s apart; `during()` runs mid-stream."""
    statuses: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(per_client):
            status, _, _ = call(url + "/api/v1/search", "POST", {"query": QUERIES[(n + i) % len(QUERIES)]}, key)
            with lock:
                statuses.append(status)
            time.sleep(pause)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    if during is not None:
        time.sleep(per_client * pause / 3)
        during()
    for t in threads:
        t.join(120)
    return statuses


def _assert_no_failures(statuses: list[int], expected: int) -> None:
    failures = {s: statuses.count(s) for s in set(statuses) if s != 200}
    assert len(statuses) == expected and not failures, f"{len(statuses)} requests, failures by status: {failures}"


def _assert_console_served(base: str) -> None:
    """The web console comes through the TLS site with its own security headers, each sent once."""
    status, body, raw = call(base + "/console")
    headers = {name.lower(): value for name, value in raw.items()}  # HAProxy sends header names in lower case
    assert status == 200 and '<script type="module" src="/console/console.js"' in body
    assert "script-src 'self'" in headers["content-security-policy"] and headers["x-content-type-options"] == "nosniff"
    status, script, _ = call(base + "/console/core.js")  # a module the page imports
    assert status == 200 and "export async function api(" in script


def test_nginx_kill_one_app_server_mid_stream(fleet, tmp_path):
    apps, backup, key = fleet
    nginx = start_nginx(tmp_path / "nginx", apps, backup)
    try:
        for path in ("/api/v1/search?q=1", "/health"):  # plain HTTP serves nothing: HTTPS, on its own port
            status, _, headers = call(f"http://127.0.0.1:{nginx.http_port}{path}")
            assert (status, headers["Location"]) == (301, f"https://127.0.0.1:{nginx.https_port}{path}")
        _assert_console_served(nginx.https)
        statuses = _stream(nginx.https, key, clients=4, per_client=50, pause=0.1, during=apps[1].kill)
        _assert_no_failures(statuses, 200)
        assert call(nginx.https + "/metrics")[0] == 404  # Prometheus scrapes the app servers, not the edge
    finally:
        nginx.stop()


def test_haproxy_kill_one_app_server_mid_stream(fleet, tmp_path):
    apps, backup, key = fleet
    haproxy = start_haproxy(tmp_path / "haproxy", apps, backup)
    try:
        for path in ("/api/v1/search?q=1", "/health"):  # plain HTTP serves nothing: HTTPS, on its own port
            status, _, headers = call(f"http://127.0.0.1:{haproxy.http_port}{path}")
            location = headers.get("Location") or headers.get("location")
            assert (status, location) == (301, f"https://127.0.0.1:{haproxy.https_port}{path}")
        assert call(haproxy.https + "/metrics")[0] == 404
        _assert_console_served(haproxy.https)
        statuses = _stream(haproxy.https, key, clients=4, per_client=50, pause=0.1, during=apps[2].kill)
        _assert_no_failures(statuses, 200)
        stats = call(f"http://127.0.0.1:{haproxy.extra_ports['stats']}/stats;csv")[1]
        assert "be_app,app3" in stats and "DOWN" in stats.split("be_app,app3")[1].split("\n")[0]
    finally:
        haproxy.stop()


def test_graceful_reload_under_load(migrated, targets, tmp_path):
    server = start_gunicorn(env_for_tests(), tmp_path, workers=2)
    try:
        _, key = account(server.url, migrated, targets["a"], tier="pro")
        old_workers = set(server.workers())
        statuses = _stream(
            server.url, key, clients=4, per_client=40, pause=0.05, during=lambda: server.proc.send_signal(signal.SIGHUP)
        )
        _assert_no_failures(statuses, 160)
        time.sleep(1)
        assert set(server.workers()).isdisjoint(old_workers)  # the reload really replaced the workers
    finally:
        server.stop()
