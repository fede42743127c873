"""The metadata servers writes go to: one server, or the nodes of a Galera cluster in order of preference.

`DB_HOST` may list several `host[:port]` (a MariaDB Galera or Percona XtraDB cluster). Altus 4 then writes
through one node at a time, so its own transactions never conflict in certification, and reads from that
same node (writer affinity: a reader sees what it wrote; `wsrep_sync_wait` makes a node that has just taken
over apply what the cluster certified before it answers). A node is used only while the server itself says
it may be: `wsrep_ready` ON, `wsrep_local_state_comment` Synced, `wsrep_cluster_status` Primary (a node
without wsrep, i.e. a plain server, always may). When the writing node refuses connections, drops one,
answers ERROR 1047 (not in the Primary component) or fails its check, the next usable node takes over; the
preferred one takes back once its check finds it synced again. ERROR 1205 from a node is checked at once:
from a node that has left the Primary component it means the node, not a lock, and is handled like 1047.

A caller waits for a usable node up to `DB_FAILOVER_WAIT`: when a node dies, the others stall until the
cluster has declared it dead (Galera's `evs.suspect_timeout`, 5 s, plus the view change: about 6 s
measured), and a request should wait that out rather than fail. A single server keeps the old behaviour
exactly: its refusal is answered at once (`DB_RETRY_SECONDS`), with no wait.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import pymysql

from altus4.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from altus4.db.pool import Pool

log = logging.getLogger("altus4.db")

# what a node that loses its Primary component answers to everything waiting on the cluster, the causal
# reads of `wsrep_sync_wait` included (measured: a SELECT on the survivor of two SIGKILLed nodes, 6.3 s after
# the kill, and every one after it); on a node still in the cluster it is an ordinary lock wait timeout
LOCK_WAIT_TIMEOUT = 1205

_WSREP_STATUS = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_ready', 'wsrep_local_state_comment', 'wsrep_cluster_status')"
)


class Node:
    """One server of the list and what its last check found."""

    def __init__(self, pool: Pool):
        self.pool = pool
        self.usable = True  # until a check or a failure says otherwise
        self.galera = False
        self.state: str | None = None  # Synced, Donor/Desynced, Joining...; None: not a Galera node
        self.reason: str | None = None

    def mark_down(self, reason: str) -> None:
        if self.usable:
            log.warning("metadata node %s taken out: %s", self.pool.name, reason)
        self.usable, self.reason = False, reason

    def check(self) -> None:
        """Ask the server whether it may serve (a fresh connection: a pooled one may be the dead node's; no
        sync wait, which would hold the check for as long as the cluster stalls)."""
        try:
            conn = pymysql.connect(**{**self.pool.connect, "init_command": None, "read_timeout": 2})
        except pymysql.MySQLError as exc:
            self.mark_down(f"unreachable: {exc.args[-1] if exc.args else exc}")
            return
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW GLOBAL VARIABLES LIKE 'wsrep_on'")  # none on MySQL; OFF on a plain MariaDB
                on = (cur.fetchone() or {}).get("Value") == "ON"
                cur.execute(_WSREP_STATUS)
                status = {row["Variable_name"]: row["Value"] for row in cur.fetchall()} if on else {}
        except pymysql.MySQLError as exc:
            self.mark_down(f"status unreadable: {exc}")
            return
        finally:
            conn.close()
        self.galera = bool(status)
        self.state = status.get("wsrep_local_state_comment")
        ready = not status or (
            status.get("wsrep_ready") == "ON"
            and self.state == "Synced"
            and status.get("wsrep_cluster_status") == "Primary"
        )
        if not ready:
            self.mark_down(f"not synced ({', '.join(f'{k}={v}' for k, v in sorted(status.items()))})")
        elif not self.usable:
            log.info("metadata node %s back in (%s)", self.pool.name, self.state or "not Galera")
            self.usable, self.reason = True, None
            self.pool.down_until = 0.0  # the check has just found it answering


class Nodes:
    """The writing node, chosen in order of preference among the usable ones."""

    def __init__(self, pools: list[Pool], failover_wait: float):
        self.nodes = [Node(pool) for pool in pools]
        self.failover_wait = failover_wait
        self.checked = len(pools) == 1  # several: the first use checks them all before choosing
        self._none_since: float | None = None  # when no node was last found usable (None: one is)
        self._checking = threading.Lock()

    @property
    def clustered(self) -> bool:
        return len(self.nodes) > 1

    @property
    def writer(self) -> Pool:
        """The pool writes and reads go to now (the preferred usable node; the first one if none is)."""
        node = self._usable()
        return (node or self.nodes[0]).pool

    def _usable(self) -> Node | None:
        return next((n for n in self.nodes if n.usable and not n.pool.down_until), None) or next(
            (n for n in self.nodes if n.usable), None
        )

    def check_all(self) -> None:
        if not self.clustered or not self._checking.acquire(blocking=False):
            return
        try:
            for node in self.nodes:
                node.check()
            self.checked = True
        finally:
            self._checking.release()

    @contextmanager
    def connection(self) -> Iterator[pymysql.Connection]:
        """A connection on the writing node, failing over to the next usable one within `DB_FAILOVER_WAIT`.
        :raise DatabaseUnavailable: no node could serve in that time (or a pool was exhausted)."""
        if not self.clustered:
            with self.nodes[0].pool.connection() as conn:
                yield conn
            return
        if not self.checked:
            self.check_all()
        deadline = time.monotonic() + self.failover_wait
        node: Node | None = None
        try:
            with ExitStack() as stack:
                node, conn = self._connect(stack, deadline)
                try:
                    yield conn
                except pymysql.err.OperationalError as exc:
                    if exc.args and exc.args[0] == LOCK_WAIT_TIMEOUT:
                        node.check()  # a lock held too long, or a node that has just lost its Primary component?
                        if not node.usable:
                            raise DatabaseUnavailable(retry_after=2) from exc
                    raise
        except DatabaseUnavailable as exc:  # lost in use, or ERROR 1047: out until a check finds it synced
            if node is not None and exc.code != "POOL_EXHAUSTED":
                node.mark_down(str(exc.__cause__ or exc))
            raise

    def _connect(self, stack: ExitStack, deadline: float) -> tuple[Node, pymysql.Connection]:
        """The first usable node's connection, entered on `stack`, looking again until `deadline`."""
        last: DatabaseUnavailable | None = None
        while True:
            node = self._usable()
            if node is not None:
                try:
                    conn = stack.enter_context(node.pool.connection())
                    self._none_since = None
                    return node, conn
                except DatabaseUnavailable as exc:
                    if exc.code == "POOL_EXHAUSTED":
                        raise
                    node.mark_down(str(exc.__cause__ or exc))
                    last = exc
                    continue
            now = time.monotonic()
            self._none_since = self._none_since or now
            # wait out a failover, not an outage: once no node has served for a whole wait, answer at once
            if now >= deadline or now - self._none_since > self.failover_wait:
                raise DatabaseUnavailable("No metadata database node can take requests", retry_after=2) from last
            time.sleep(0.25)
            self.check_all()  # one caller checks at a time; the others look again after their pause

    def close(self) -> None:
        for node in self.nodes:
            node.pool.close()
