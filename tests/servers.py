"""Real servers for the end-to-end tests: gunicorn instances of the app, nginx and HAProxy with the
shipped configuration (only hosts, ports and certificate paths substituted), and a tiny HTTP client."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from infra import wait_for

ROOT = Path(__file__).resolve().parent.parent
INSECURE = ssl.create_default_context()
INSECURE.check_hostname = False
INSECURE.verify_mode = ssl.CERT_NONE


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # report the 301 itself


_OPENER = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=INSECURE))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, method: str = "GET", body=None, token: str | None = None, headers=None, timeout: float = 15):
    """(status, parsed JSON or text, headers); never raises for HTTP errors."""
    request = urllib.request.Request(
        url,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            raw, status, hdrs = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, hdrs = error.read(), error.code, dict(error.headers)
    try:
        return status, json.loads(raw), hdrs
    except ValueError:
        return status, raw.decode(errors="replace"), hdrs


def account(base: str, settings, database: str, tier: str = "free") -> tuple[str, str]:
    """Over HTTP: a new user with `database` connected (read-only account) and an API key -> (token, key)."""
    from conftest import connection_body

    email = f"http-{uuid.uuid4().hex[:10]}@example.com"
    status, body, _ = call(
        base + "/api/v1/auth/register", "POST", {"email": email, "password": "longenough1", "name": "HTTP"}
    )
    assert status == 201, body
    token = body["data"]["token"]
    status, conn, _ = call(base + "/api/v1/databases", "POST", connection_body(settings, database), token)
    assert status == 201 and conn["data"]["connectionStatus"] == "connected", conn
    status, key, _ = call(
        base + "/api/v1/keys", "POST", {"name": "http key", "environment": "test", "rateLimitTier": tier}, token
    )
    assert status == 201, key
    return token, key["data"]["secretKey"]


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus exposition's samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            sample, _, value = line.rpartition(" ")
            if all(f'{k}="{v}"' in sample for k, v in labels.items()):
                total += float(value)
    return total


@dataclass
class Gunicorn:
    port: int
    proc: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def kill(self) -> None:
        """SIGKILL the master and its workers: a crashed host, not a graceful stop."""
        victims = [self.proc.pid, *self.workers()]
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        workers = self.workers()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            for pid in [self.proc.pid, *workers]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=10)


def start_gunicorn(
    env: dict[str, str], log_dir: Path, workers: int = 1, port: int | None = None, args: tuple[str, ...] = ()
) -> Gunicorn:
    """`args` go on gunicorn's command line (`-b` there overrides the BIND set here from `port`)."""
    port = port or free_port()
    log = log_dir / f"gunicorn-{port}.log"
    full_env = {**os.environ, "BIND": f"127.0.0.1:{port}", **env, "WEB_CONCURRENCY": str(workers)}
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each instance gets its own (config/gunicorn.conf.py)
    gunicorn = Path(sys.executable).parent / "gunicorn"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [str(gunicorn), "-c", "config/gunicorn.conf.py", *args, "app:app"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Gunicorn(port, proc, log)
    try:
        wait_for(
            lambda: call(server.url + "/health", timeout=1)[0] == 200,
            40,
            f"gunicorn {port}",
            alive=lambda: proc.poll() is None,
            interval=0.2,
        )
    except Exception:
        server.stop()
        raise RuntimeError(f"gunicorn on {port} did not start:\n{log.read_text()[-3000:]}") from None
    return server


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    key, crt, pem = directory / "test.key", directory / "test.crt", directory / "test.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    pem.write_bytes(crt.read_bytes() + key.read_bytes())
    return crt, key, pem


@dataclass
class Proxy:
    proc: subprocess.Popen
    http_port: int
    https_port: int
    log: Path
    extra_ports: dict[str, int]

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT if "nginx" in self.proc.args[0] else signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


def _apps(text: str, apps: list[Gunicorn], backup: Gunicorn) -> str:
    for name, app in (("app1", apps[0]), ("app2", apps[1]), ("app3", apps[2]), ("app-backup", backup)):
        text = text.replace(f"{name}:3000", f"127.0.0.1:{app.port}")
    return text


def start_nginx(work: Path, apps: list[Gunicorn], backup: Gunicorn) -> Proxy:
    work.mkdir(parents=True, exist_ok=True)
    crt, key, _ = make_certificate(work)
    http_port, https_port, health_port = free_port(), free_port(), free_port()
    for name in ("nginx.conf", "altus4.conf", "upstream.conf"):
        text = (ROOT / "nginx" / name).read_text()
        text = _apps(text, apps, backup)
        text = (
            text.replace("listen 80 ", f"listen 127.0.0.1:{http_port} ")
            .replace("listen [::]:80 ", f"listen [::1]:{http_port} ")
            .replace("listen 443 ", f"listen 127.0.0.1:{https_port} ")
            .replace("listen [::]:443 ", f"listen [::1]:{https_port} ")
            .replace("/etc/nginx/certs/altus4.crt", str(crt))
            .replace("/etc/nginx/certs/altus4.key", str(key))
            .replace("listen 127.0.0.1:8081;", f"listen 127.0.0.1:{health_port};")
            .replace("default 443;", f"default {https_port};")  # the HTTPS port the redirect keeps
        )
        (work / name).write_text(text)
    log = work / "nginx.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                shutil.which("nginx") or "/usr/sbin/nginx",
                "-p",
                f"{work}/",
                "-c",
                str(work / "nginx.conf"),
                "-g",
                f"pid {work}/nginx.pid; daemon off;",
                "-e",
                str(work / "error.log"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proxy = Proxy(proc, http_port, https_port, log, {})
    try:
        wait_for(
            lambda: call(f"http://127.0.0.1:{health_port}/health", timeout=1)[0] == 200,
            20,
            "nginx",
            alive=lambda: proc.poll() is None,
        )
    except Exception:
        proxy.stop()
        raise RuntimeError("nginx did not start:\n" + log.read_text() + (work / "error.log").read_text()) from None
    return proxy


def start_haproxy(work: Path, apps: list[Gunicorn], backup: Gunicorn) -> Proxy:
    work.mkdir(parents=True, exist_ok=True)
    _, _, pem = make_certificate(work)
    ports = {"http": free_port(), "https": free_port(), "health": free_port(), "stats": free_port()}
    text = _apps((ROOT / "haproxy" / "haproxy.cfg").read_text(), apps, backup)
    text = (
        text.replace("bind :80\n", f"bind 127.0.0.1:{ports['http']}\n")
        .replace("bind :443 ", f"bind 127.0.0.1:{ports['https']} ")
        .replace("bind :8080\n", f"bind 127.0.0.1:{ports['health']}\n")
        .replace("bind 127.0.0.1:8404\n", f"bind 127.0.0.1:{ports['stats']}\n")
    )
    config = work / "haproxy.cfg"
    config.write_text(text)
    log = work / "haproxy.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f", str(config)],
            env={**os.environ, "HAPROXY_CERT": str(pem), "HAPROXY_HTTPS_PORT_SUFFIX": f":{ports['https']}"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proxy = Proxy(proc, ports["http"], ports["https"], log, ports)
    try:
        # ready when the health frontend says the backend has servers (checks need rise 2 x inter 1 s)
        wait_for(
            lambda: call(f"http://127.0.0.1:{ports['health']}/healthz", timeout=1)[0] == 200,
            20,
            "haproxy",
            alive=lambda: proc.poll() is None,
        )
        wait_for(lambda: call(f"https://127.0.0.1:{ports['https']}/health", timeout=1)[0] == 200, 20, "haproxy tls")
    except Exception:
        proxy.stop()
        raise RuntimeError("haproxy did not start:\n" + log.read_text()) from None
    return proxy


@dataclass
class Traffic:
    """Threads calling a running server, every answer counted by kind and status, with its latency."""

    base: str
    key: str
    token: str
    seen: list = field(default_factory=list)  # (kind, status, seconds, monotonic time)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list = field(default_factory=list)

    def _search(self, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            query = "gevent workers" if i % 2 else f"gunicorn {n} {i}"  # half repeats (cached), half new
            self._call("search", "/api/v1/search", "POST", {"query": query, "limit": 5}, self.key)
            time.sleep(0.03)

    def _jwt(self) -> None:
        paths = ["/api/v1/auth/profile", "/api/v1/keys", "/api/v1/databases"]
        i = 0
        while not self._stop.is_set():
            i += 1
            self._call("jwt", paths[i % 3], "GET", None, self.token)
            time.sleep(0.05)

    def _call(self, kind: str, path: str, method: str, body, token: str) -> None:
        started = time.monotonic()
        try:
            status = call(self.base + path, method, body, token, timeout=20)[0]
        except OSError:
            status = 0
        self.seen.append((kind, status, time.monotonic() - started, started))

    def __enter__(self):
        self._threads = [threading.Thread(target=self._search, args=(n,)) for n in range(4)]
        self._threads.append(threading.Thread(target=self._jwt))
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for t in self._threads:
            t.join(30)

    def between(self, kind: str, start: float, end: float) -> list[tuple]:
        return [s for s in self.seen if s[0] == kind and start <= s[3] < end]
