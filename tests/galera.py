"""A three-node MariaDB Galera cluster on loopback (SQL on 3411-3413), for the metadata-failover tests and
`bench/galera.py`. The nodes run as the `mysql` user (rsync state transfer as root fails on permissions);
a node killed with SIGKILL is restarted from its recovered position, so it rejoins by IST, not a full copy."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pymysql
from infra import APP_PASSWORD, APP_USER, _Instances, _stop, ensure_free, root_connection, wait_for

PROVIDER = Path("/usr/lib/galera/libgalera_smm.so")
START_SCRIPT = Path(__file__).resolve().parent.parent / "config" / "mysql" / "galera-node.sh"


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

    def start_one(self, port: int, wait: bool = True) -> None:
        """Start a node with the shipped start script (config/mysql/galera-node.sh), which decides whether it
        bootstraps, joins or waits, and recovers its position after a crash; `wait`: until it is Synced."""
        d = self._cnf(port)
        env = {
            **os.environ,
            "GALERA_DATADIR": str(d / "data"),
            "GALERA_PEERS": ",".join(f"127.0.0.1:{p}" for p in self.ports),
            "GALERA_SELF": f"127.0.0.1:{port}",
            "GALERA_BOOTSTRAP_CANDIDATE": "1" if port == self.ports[0] else "0",
            "GALERA_INSTALL_ARGS": "--auth-root-authentication-method=normal",
        }
        with open(d / "stdout.log", "ab") as log:
            self.procs[port] = subprocess.Popen(
                [str(START_SCRIPT), f"--defaults-file={d / 'my.cnf'}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
            )
        if wait:
            self.wait_synced(port)

    def wait_synced(self, port: int, timeout: float = 120) -> None:
        proc = self.procs[port]
        wait_for(lambda: self.synced(port), timeout, f"galera node {port}", alive=lambda: proc.poll() is None)

    def said(self, port: int) -> str:
        """What the start script said (its lines in the node's stdout.log)."""
        log = self.base / f"node{self._n(port)}" / "stdout.log"
        return "\n".join(line for line in log.read_text(errors="replace").splitlines() if "galera-node:" in line)

    def kill(self, port: int) -> None:
        """SIGKILL: a crash, its in-flight transactions lost, its grastate left at seqno -1."""
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    def _start(self) -> GaleraSet:
        ensure_free(*self.ports)
        shutil.rmtree(self.base, ignore_errors=True)
        self.base.mkdir(parents=True)
        for port in self.ports:  # the first one bootstraps (the candidate); the others join it
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
