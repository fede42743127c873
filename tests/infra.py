"""Throw-away servers on loopback for the scale-out tests: a MariaDB primary with replicas, Redis with
Sentinel, a Redis Cluster. Every wait is bounded and checks that the process is still alive; every server
writes to a log file (never to an inherited pipe)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
import redis


def wait_for(check, timeout: float, what: str, alive=None, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except Exception:  # noqa: S110 - not up yet
            pass
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process died")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout}s")
        time.sleep(interval)


def ensure_free(*ports: int) -> None:
    """Refuse to start over a server someone left behind: its answers would be mistaken for ours."""
    import socket

    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                raise RuntimeError(f"port {port} is already in use")


def _stop(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


# ---- MariaDB primary + replicas ------------------------------------------------------------------
def root_connection(port: int, database: str | None = None, **extra) -> pymysql.Connection:
    """root on a throw-away server of ours on loopback (no password), dict rows, autocommit."""
    return pymysql.connect(
        host="127.0.0.1",
        port=port,
        user="root",
        password="",
        database=database,
        autocommit=True,
        cursorclass=pymysql.cursors.DictCursor,
        connect_timeout=2,
        **extra,
    )


REPL_PASSWORD = "replpw"
APP_USER, APP_PASSWORD = "app", "apppw"


class _Instances:
    """Server processes started together: a start that fails part-way stops what it started."""

    def start(self):
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise


@dataclass
class ReplSet(_Instances):
    base: Path
    ports: list[int]
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    @property
    def primary(self) -> int:
        return self.ports[0]

    @property
    def replicas(self) -> list[int]:
        return self.ports[1:]

    def app_env(self, database: str, **extra: str) -> dict[str, str]:
        """Settings for an app whose metadata database is this set: the primary, the replicas to read."""
        return {
            "DB_PORT": str(self.primary),
            "DB_USERNAME": APP_USER,
            "DB_PASSWORD": APP_PASSWORD,
            "DB_DATABASE": database,
            "DB_READ_HOSTS": ",".join(f"127.0.0.1:{p}" for p in self.replicas),
            "DB_CONNECT_TIMEOUT": "1",
            **extra,
        }

    def root(self, port: int, database: str | None = None) -> pymysql.Connection:
        return root_connection(port, database)

    def _install(self) -> None:
        template = self.base / "template"
        if not (template / "mysql").exists():
            (self.base / "tmp").mkdir(parents=True, exist_ok=True)
            staging = self.base / "template.new"
            shutil.rmtree(staging, ignore_errors=True)
            user = ["--user=root"] if os.getuid() == 0 else []
            with open(self.base / "install.log", "wb") as log:
                subprocess.run(
                    [
                        "mariadb-install-db",
                        "--no-defaults",
                        f"--datadir={staging}",
                        f"--tmpdir={self.base / 'tmp'}",
                        "--auth-root-authentication-method=normal",
                        "--skip-test-db",
                        "--skip-name-resolve",
                        *user,
                        "--innodb-log-file-size=16M",
                        "--innodb-buffer-pool-size=32M",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=120,
                )
            staging.rename(template)
        for port in self.ports:
            data = self.base / str(port) / "data"
            if not (data / "mysql").exists():
                shutil.rmtree(data, ignore_errors=True)
                shutil.copytree(template, data, symlinks=True)
            (self.base / str(port) / "tmp").mkdir(parents=True, exist_ok=True)

    def start_one(self, port: int) -> None:
        d = self.base / str(port)
        server_id = self.ports.index(port) + 1
        extra = [] if port == self.primary else ["--read-only"]
        user = ["--user=root"] if os.getuid() == 0 else []
        with open(d / "stdout.log", "ab") as log:
            self.procs[port] = subprocess.Popen(
                [
                    "mariadbd",
                    "--no-defaults",
                    *user,
                    f"--datadir={d / 'data'}",
                    f"--port={port}",
                    "--bind-address=127.0.0.1",
                    f"--socket={d / 'mysqld.sock'}",
                    f"--pid-file={d / 'mysqld.pid'}",
                    f"--tmpdir={d / 'tmp'}",
                    f"--log-error={d / 'error.log'}",
                    f"--server-id={server_id}",
                    "--log-bin=mysql-bin",
                    "--relay-log=relay-bin",
                    "--binlog-format=ROW",
                    "--log-slave-updates",
                    "--gtid-strict-mode=ON",
                    "--skip-name-resolve",
                    "--innodb-buffer-pool-size=32M",
                    "--innodb-log-file-size=16M",
                    "--innodb-flush-log-at-trx-commit=2",
                    "--innodb-buffer-pool-dump-at-shutdown=OFF",
                    "--innodb-buffer-pool-load-at-startup=OFF",
                    "--sync-binlog=0",
                    "--max-connections=300",
                    "--character-set-server=utf8mb4",
                    *extra,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        proc = self.procs[port]
        wait_for(lambda: self.root(port).close() or True, 60, f"mariadbd {port}", alive=lambda: proc.poll() is None)

    def stop_one(self, port: int) -> None:
        _stop(self.procs.pop(port, None))

    def _start(self) -> ReplSet:
        ensure_free(*self.ports)
        self.base.mkdir(parents=True, exist_ok=True)
        self._install()
        for port in self.ports:
            self.start_one(port)
        with self.root(self.primary) as conn, conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1' IDENTIFIED BY %s", (REPL_PASSWORD,))
            cur.execute("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'")
            cur.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", (APP_USER, APP_PASSWORD))
            # the app user cannot write on a read-only replica (root could, and would break GTID order)
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {APP_USER}@'127.0.0.1'")
            cur.execute(f"REVOKE SUPER, READ_ONLY ADMIN ON *.* FROM {APP_USER}@'127.0.0.1'")
        for port in self.replicas:
            with self.root(port) as conn, conn.cursor() as cur:
                cur.execute("STOP SLAVE")
                cur.execute(
                    "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%s, MASTER_USER='repl',"
                    " MASTER_PASSWORD=%s, MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1",
                    (self.primary, REPL_PASSWORD),
                )
                cur.execute("START SLAVE")
            wait_for(lambda p=port: self.replicating(p), 30, f"replica {port}")
        return self

    def replicating(self, port: int) -> bool:
        with self.root(port) as conn, conn.cursor() as cur:
            cur.execute("SHOW SLAVE STATUS")
            row = cur.fetchone()
            return bool(row) and row["Slave_IO_Running"] == "Yes" and row["Slave_SQL_Running"] == "Yes"

    def stop(self) -> None:
        for port in list(self.procs):
            self.stop_one(port)


# ---- Redis Sentinel -------------------------------------------------------------------------------
def start_redis(directory: Path, port: int, *extra: str) -> subprocess.Popen:
    """A redis-server on 127.0.0.1:`port` that keeps nothing on disk, answering before this returns."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "stdout.log", "ab") as log:
        proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "no",
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--repl-diskless-sync-delay",
                "0",
                *extra,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: redis.Redis(port=port, socket_timeout=0.5).ping(),
            20,
            f"redis {port}",
            alive=lambda: proc.poll() is None,
        )
    except BaseException:
        _stop(proc, sig=signal.SIGKILL)
        raise
    return proc


@dataclass
class SentinelSet(_Instances):
    base: Path
    primary_port: int
    replica_port: int
    sentinel_ports: list[int]
    master: str = "altus4-master"
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def _server(self, port: int, *extra: str) -> None:
        self.procs[port] = start_redis(self.base / str(port), port, *extra)

    def _sentinel(self, port: int) -> None:
        d = self.base / f"s{port}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "sentinel.conf").write_text(
            f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {d}\n"
            f"sentinel monitor {self.master} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {self.master} 1000\n"
            f"sentinel failover-timeout {self.master} 3000\nsentinel parallel-syncs {self.master} 1\n"
        )
        with open(d / "stdout.log", "ab") as log:
            self.procs[port] = subprocess.Popen(
                ["redis-server", str(d / "sentinel.conf"), "--sentinel"], stdout=log, stderr=subprocess.STDOUT
            )

    def _start(self) -> SentinelSet:
        ensure_free(self.primary_port, self.replica_port, *self.sentinel_ports)
        shutil.rmtree(self.base, ignore_errors=True)
        self._server(self.primary_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.primary_port))
        for port in self.sentinel_ports:
            self._sentinel(port)

        def ready():
            for port in self.sentinel_ports:
                info = redis.Redis(port=port, socket_timeout=0.5, decode_responses=True).sentinel_master(self.master)
                if info["num-slaves"] < 1 or info["num-other-sentinels"] < len(self.sentinel_ports) - 1:
                    return False
            return True

        wait_for(ready, 30, "sentinels")
        return self

    def kill(self, port: int) -> None:
        _stop(self.procs.pop(port, None), sig=signal.SIGKILL)

    def stop(self) -> None:
        for port in list(self.procs):
            _stop(self.procs.pop(port))


# ---- Redis Cluster --------------------------------------------------------------------------------
@dataclass
class ClusterSet(_Instances):
    base: Path
    ports: list[int]
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def _start(self) -> ClusterSet:
        ensure_free(*self.ports)
        shutil.rmtree(self.base, ignore_errors=True)
        for port in self.ports:
            self.procs[port] = start_redis(
                self.base / str(port),
                port,
                *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"),
            )
        # the shipped bootstrap script forms the cluster and waits for cluster_state:ok on every node
        script = Path(__file__).resolve().parent.parent / "config" / "redis" / "cluster-bootstrap.sh"
        with open(self.base / "create.log", "wb") as log:
            subprocess.run(
                ["bash", str(script), *[f"127.0.0.1:{p}" for p in self.ports]],
                stdout=log,
                stderr=subprocess.STDOUT,
                check=True,
                timeout=90,
            )
        return self

    def stop(self) -> None:
        for port in list(self.procs):
            _stop(self.procs.pop(port))


# ---- a TCP proxy the test controls --------------------------------------------------------------
class TcpProxy:
    """Forwards 127.0.0.1:`port` to `target_port` until told otherwise:
    `refuse()` closes every connection and the listener (a server that is down), `black_hole()` keeps
    accepting but forwards nothing and cuts the live connections' traffic (a server that hangs), `heal()`
    forwards again."""

    def __init__(self, target_port: int):
        import socket
        import threading

        self.target_port = target_port
        self.mode = "forward"
        self._conns: list = []
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listen()

    def _listen(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if listener is not self._listener:  # refused meanwhile: a closed listener may still hand one out
                client.close()
                return
            with self._lock:
                self._conns.append(client)
            if self.mode == "black_hole":
                continue  # held open, never answered
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.append(upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src, dst) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while self.mode == "black_hole":  # traffic stops; the sockets stay open
                    time.sleep(0.05)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass

    def _close_all(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.close()
            except OSError:
                pass

    def refuse(self) -> None:
        import socket

        self.mode = "refuse"
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread: close alone may not
            except OSError:
                pass
            listener.close()
        self._close_all()

    def black_hole(self) -> None:
        self.mode = "black_hole"

    def heal(self) -> None:
        was = self.mode
        self.mode = "forward"
        if was == "black_hole":
            self._close_all()  # what was held is lost, as after a real network fault
        if self._listener is None:
            self._listen()

    def close(self) -> None:
        self.refuse()
