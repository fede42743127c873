"""A three-node MariaDB Galera cluster on loopback (SQL on 3411-3413), for the metadata-failover tests and
`bench/galera.py`. The nodes run as the `mysql` user (rsync state transfer as root fails on permissions);
a node killed with SIGKILL is restarted from its recovered position, so it rejoins by IST, not a full copy."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
from infra import APP_PASSWORD, APP_USER, _Instances, _stop, ensure_free, root_connection, wait_for

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")


def available() -> str | None:
    """Why the cluster cannot run here (None: it can)."""
    if not PROVIDER.exists():
        return "galera-4 is not installed (apt-get install galera-4)"
    if not shutil.which("rsync"):
        return "rsync is not installed (Galera's state transfer uses it)"
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        return "no mysql user to run the nodes as"
    return None


@dataclass
class GaleraSet(_Instances):
    base: Path
    ports: list[int] = field(default_factory=lambda: [3411, 3412, 3413])
    procs: dict[int, subprocess.Popen] = field(default_factory=dict)

    def _n(self, port: int) -> int:
        return self.ports.index(port) + 1

    def _cnf(self, port: int) -> Path:
        n, d = self._n(port), self.base / f"node{self._n(port)}"
        (d / "data").mkdir(parents=True, exist_ok=True)
        (d / "tmp").mkdir(exist_ok=True)
        peers = ",".join(f"127.0.0.1:{4570 + self._n(p)}" for p in self.ports)
        options = f"gmcast.listen_addr=tcp://127.0.0.1:{4570 + n};ist.recv_addr=127.0.0.1:{4580 + n};gcache.size=64M"
        (d / "my.cnf").write_text(
            f"""[mysqld]
user=mysql
datadir={d}/data
tmpdir={d}/tmp
socket={d}/mysqld.sock
pid-file={d}/mysqld.pid
log-error={d}/error.log
port={port}
bind-address=127.0.0.1
skip-name-resolve
binlog_format=ROW
default_storage_engine=InnoDB
character-set-server=utf8mb4
innodb_autoinc_lock_mode=2
innodb_buffer_pool_size=64M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit=2
max_connections=300
wsrep_on=ON
wsrep_provider={PROVIDER}
wsrep_cluster_name=altus4_test
wsrep_cluster_address=gcomm://{peers}
wsrep_node_name=node{n}
wsrep_node_address=127.0.0.1:{4570 + n}
wsrep_node_incoming_address=127.0.0.1:{port}
wsrep_provider_options="{options}"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:{4590 + n}
"""
        )
        shutil.chown(self.base, "mysql", "mysql")
        subprocess.run(["chown", "-R", "mysql:mysql", str(d)], check=True)
        return d

    def root(self, port: int, database: str | None = None) -> pymysql.Connection:
        return root_connection(port, database, read_timeout=20)

    def status(self, port: int) -> dict[str, str]:
        with self.root(port) as conn, conn.cursor() as cur:
            cur.execute("SHOW GLOBAL STATUS LIKE 'wsrep_%'")
            return {row["Variable_name"]: row["Value"] for row in cur.fetchall()}

    def synced(self, port: int) -> bool:
        return self.status(port).get("wsrep_local_state_comment") == "Synced"

    def app_env(self, database: str, **extra: str) -> dict[str, str]:
        return {
            "DB_HOST": ",".join(f"127.0.0.1:{p}" for p in self.ports),
            "DB_USERNAME": APP_USER,
            "DB_PASSWORD": APP_PASSWORD,
            "DB_DATABASE": database,
            "DB_READ_HOSTS": "",
            "DB_CONNECT_TIMEOUT": "1",
            **extra,
        }

    def start_one(self, port: int, bootstrap: bool = False) -> None:
        d = self._cnf(port)
        if not (d / "data" / "mysql").exists():
            with open(d / "install.log", "wb") as log:
                subprocess.run(
                    ["mariadb-install-db", "--no-defaults", "--user=mysql", f"--datadir={d / 'data'}"]
                    + ["--auth-root-authentication-method=normal", "--skip-test-db"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    check=True,
                    timeout=120,
                )
        extra = ["--wsrep-new-cluster"] if bootstrap else []
        state = d / "data" / "grastate.dat"
        if state.exists() and re.search(r"^seqno:\s*-1", state.read_text(), re.M):  # after a crash: its position
            recover = subprocess.run(
                ["mariadbd", f"--defaults-file={d / 'my.cnf'}", "--wsrep-recover", f"--log-error={d / 'recover.log'}"],
                capture_output=True,
                timeout=120,
            )
            found = re.findall(r"Recovered position: *(\S+)", (d / "recover.log").read_text(errors="replace"))
            if recover.returncode == 0 and found:
                extra.append(f"--wsrep-start-position={found[-1]}")
        with open(d / "stdout.log", "ab") as log:
            self.procs[port] = subprocess.Popen(
                ["mariadbd", f"--defaults-file={d / 'my.cnf'}", *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self.procs[port]
        wait_for(lambda: self.synced(port), 120, f"galera node {port}", alive=lambda: proc.poll() is None)

    def kill(self, port: int) -> None:
        """SIGKILL: a crash, its in-flight transactions lost, its grastate left at seqno -1."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def _start(self) -> GaleraSet:
        ensure_free(*self.ports)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        self.start_one(self.ports[0], bootstrap=True)
        for port in self.ports[1:]:
            self.start_one(port)
        with self.root(self.ports[0]) as conn, conn.cursor() as cur:
            cur.execute("CREATE USER IF NOT EXISTS %s@'127.0.0.1' IDENTIFIED BY %s", (APP_USER, APP_PASSWORD))
            cur.execute(f"GRANT ALL PRIVILEGES ON *.* TO {APP_USER}@'127.0.0.1'")
        return self

    def stop(self) -> None:
        for port in reversed(list(self.procs)):
            _stop(self.procs.pop(port), timeout=60)
        if os.environ.get("ALTUS4_KEEP_GALERA") != "1":
            shutil.rmtree(self.base, ignore_errors=True)
