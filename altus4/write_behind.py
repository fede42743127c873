"""Writes that can wait a moment (API-key usage counts, analytics entries), sent to Redis in batches.

The first item of a sink after `interval` without one is sent at once, inside
its request, so at low load every write is in Redis before the response goes out
(a search is in the history another worker reads right after). Under load the
items that follow within `interval` wait in the process and a background
thread (a greenlet under gunicorn's gevent worker) sends them as one pipeline
per interval: profiled, the two per-request pipelines this replaces cost a
sixth of a worker's CPU on a cached search. Then the rule is "in Redis within
`interval`"; readers call `push()` first, so a process's own items are always
in what it reads, and wait for a flush another process has in flight (`settle`).

The background thread also takes each written-to sink's flush lock (SET NX
EX); the process that gets it moves the sink's Redis queue to MySQL in one
batch, never on the request path. A process keeps trying for a sink it wrote
to until it wins the lock once, so the last items before the load stops are
flushed within the lock's period, not left until someone reads. Without Redis items are written to MySQL
directly.

A flush takes a sink's queue by renaming it (`take`): the items stay in Redis,
listed in INFLIGHT, until the flush has written them (`done`) or handed back
what MySQL refused (`give_back`). A flush whose process died meanwhile is taken
over by the next flush `adopt_after` seconds later; writing items twice is
harmless because every sink's items carry ids that MySQL applies once.

Lost on a SIGKILL: the items of at most `interval` seconds not yet pushed (and
the requests being served), or, while neither Redis nor MySQL takes them, the
items held for the next push. A clean exit lets the background cycle finish and
sends what is left. Lost if Redis loses its data (restarts empty): nothing that
a process still runs for, since each keeps what it pushed until a flush has
taken it (`Sink.epoch`) and pushes it again into the new dataset.

Every key here is named by the deployment (`key`): its metadata database's id
(`Database.deployment_id`). Two deployments on one Redis database, each with
its own metadata database, once took each other's queues and dropped what they
could not apply (seen: 19 of 20 analytics entries lost, and a test suite whose
servers shared Redis losing usage counts). Items a flush cannot apply (their
user or key is gone) are counted and logged (`unapplied`), never dropped silently.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from altus4.errors import DatabaseUnavailable
from altus4.redis_store import RedisStore

log = logging.getLogger("altus4.write_behind")


@dataclass(frozen=True)
class Sink:
    """Where one service's buffered items go. Key names are the deployment's (`WriteBehind.key`)."""

    stage: Callable[[Any, list], None]  # the items as commands on a Redis pipeline
    write_direct: Callable[[list], None]  # Redis unreachable: the items straight to MySQL
    flush: Callable[[], object]  # Redis queue -> MySQL, run by the process that takes the lock
    lock: str  # the name of its flush lock
    lock_seconds: int
    # the name of the counter the sink's flush increments as it takes the queue (in the {pending} slot): with
    # it, the process keeps what it pushed until a flush has taken it, and pushes it again if Redis lost it
    epoch: str | None = None


GENERATION = "write-behind:{pending}:generation"  # in the queues' slot, so one MULTI reads it with the pushes
INFLIGHT = "write-behind:{pending}:inflight"  # taken queues (key -> when taken) until their flush is done
KEEP_MAX = 100_000  # items kept per sink for re-sending; past it the oldest go
ADOPT_AFTER = 10.0  # seconds after which a taken queue whose flush never finished is taken over (again: harmless)
SETTLE_WAIT = 2.0  # how long a reader waits for another process's flush still writing what it took

# KEYS: the queue, its epoch, INFLIGHT, the new taken key; ARGV: adopt_after. The queue (renamed, O(1)) and any
# taken queue of it older than adopt_after become the new taken key; the epoch moves; returns its items.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('RENAME', KEYS[1], KEYS[4]) end
local prefix = KEYS[1] .. ':taken:'
for _, old in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - tonumber(ARGV[1]))) do
  if string.sub(old, 1, #prefix) == prefix then
    local n = redis.call('LLEN', old)
    for i = 0, n - 1, 1000 do redis.call('RPUSH', KEYS[4], unpack(redis.call('LRANGE', old, i, i + 999))) end
    redis.call('DEL', old)
    redis.call('ZREM', KEYS[3], old)
  end
end
redis.call('INCR', KEYS[2])
if redis.call('EXISTS', KEYS[4]) == 0 then return {} end
redis.call('ZADD', KEYS[3], now, KEYS[4])
return redis.call('LRANGE', KEYS[4], 0, -1)
"""


@dataclass
class Taken:
    """A sink's queue as a flush took it: `items` stay in Redis under `key` until `done` or `give_back`."""

    queue: str
    key: str
    items: list
    extras: list  # the replies to what `also` added


class WriteBehind:
    def __init__(
        self,
        store: RedisStore,
        interval: float,
        deployment: Callable[[], str],
        adopt_after: float = ADOPT_AFTER,
    ):
        """`deployment()`: the id that names this deployment's keys (read once; it may raise
        DatabaseUnavailable, and the items then wait in the process)."""
        self.store = store
        self.interval = interval
        self.adopt_after = adopt_after
        self._deployment = deployment
        self._keys: dict[str, str] = {}
        self._take_script: Script | None = None  # EVALSHA after the first call: a read-path flush runs it often
        self._sinks: dict[str, Sink] = {}
        self._items: dict[str, list] = {}
        self._lock = threading.Lock()  # guards the buffer
        self._pushing = threading.Lock()  # one push at a time: a reader's push waits for one in flight
        self._cycle = threading.Lock()  # held by the background thread's push and flushes: an exit waits for it
        self._owner: int | None = None  # pid whose background thread runs (a forked child starts its own)
        self._closed = threading.Event()
        self._last_added: dict[str, float] = {}  # per sink: when its last item came
        self._unflushed: set[str] = set()  # sinks written to Redis since their last flush-lock attempt
        self._kept: dict[str, list[tuple[int, list]]] = {}  # sink -> (its epoch when pushed, items) not yet taken
        self._generation: str | None = None  # the Redis dataset the kept items were pushed to
        self._resend: dict[str, list[list]] = {}  # batches Redis lost, to go again with the next push
        self._returned: dict[str, list] = {}  # queue -> items a flush could not give back, for the next push
        self._holding: set[str] = set()  # sinks whose items neither Redis nor MySQL took (`_hold`)

    def key(self, name: str) -> str:
        """The Redis key of `name` in this deployment's namespace.
        :raise DatabaseUnavailable: the deployment's id is not known yet and no metadata server answers."""
        key = self._keys.get(name)
        if key is None:
            key = self._keys[name] = self.store.key(f"deployment:{self._deployment()}:{name}")
        return key

    def unapplied(self, name: str, count: int, why: str) -> None:
        """A flush left out `count` items it could not apply (`why`): counted and logged, never silent."""
        if count:
            self.store.metrics.write_behind_unapplied.labels(name).inc(count)
            log.warning("%s: %d queued items not applied: %s", name, count, why)

    def register(self, name: str, sink: Sink) -> None:
        self._sinks[name] = sink
        self._last_added[name] = float("-inf")

    def add(self, name: str, item: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._items.setdefault(name, []).append(item)
            # quiet: no item for `interval`. Not "none sent at once for `interval`": under a steady flow that
            # sent one at once every interval, a pipeline per item at 30 searches/s per worker (py-spy: 8 % of
            # an uncached search's CPU), on top of the background push that carries the rest anyway
            quiet = now - self._last_added[name] >= self.interval
            self._last_added[name] = now
        if self._owner != os.getpid():
            self._start()
        if quiet:
            self.push(flush=False)

    def push(self, flush: bool = True) -> None:
        """Send everything buffered now; with `flush` (the background thread), also take the flush lock of
        every sink written to since, and run the flushes this process won."""
        with self._pushing:
            with self._lock:
                taken, self._items = self._items, {}
                self._unflushed.update(taken)
                lock = list(self._unflushed) if flush else []
            if not taken and not lock and not any(self._kept.values()) and not self._resend and not self._returned:
                return
            won = self._send(taken, lock)
            with self._lock:  # a sink stays due until this process wins its lock: an idle tail gets flushed too
                self._unflushed.difference_update(won)
        for name in won:
            try:
                self._sinks[name].flush()
            except Exception:
                log.exception("%s flush failed", name)

    def _send(self, taken: dict[str, list], lock: list[str]) -> list[str]:
        try:
            self.key(GENERATION)  # the deployment's id, read from MySQL by a process's first push
        except DatabaseUnavailable as exc:  # then MySQL takes nothing either: kept for the next push
            for name, items in taken.items():
                self._hold(name, items, exc)
            return []
        pushed = False
        try:
            with self.store.guard() as client:
                self._push(client, taken)
                self._holding = set()
                pushed = True  # kept from here on: pushed again if Redis loses them, never written directly
                if not lock:
                    return []
                pipe = client.pipeline(transaction=False)
                for name in lock:
                    sink = self._sinks[name]
                    pipe.set(self.key(sink.lock), "1", nx=True, ex=sink.lock_seconds)
                replies = pipe.execute()
            return [name for name, reply in zip(lock, replies, strict=True) if reply]
        except redis.RedisError:
            for name, items in ({} if pushed else taken).items():
                try:
                    self._sinks[name].write_direct(items)
                except Exception as exc:
                    self._hold(name, items, exc)
            return []

    def _hold(self, name: str, items: list, exc: Exception) -> None:
        """Neither Redis nor MySQL took `items`: back at the head of the buffer for the next push (at most
        KEEP_MAX per sink; past it the oldest go, logged). Once dropped here (seen: one usage count lost while
        the primary was down and a Redis call timed out), now lost only if the process exits meanwhile."""
        with self._lock:
            held = items + self._items.get(name, [])
            dropped, self._items[name] = held[:-KEEP_MAX], held[-KEEP_MAX:]
            first, self._holding = name not in self._holding, self._holding | {name}
        if first:  # then once per outage, not once per interval
            log.warning("%s: items kept for the next push (no Redis, and MySQL refused them: %s)", name, exc)
        if dropped:
            log.error("%s: %d buffered items lost (no Redis and no MySQL for too long)", name, len(dropped))

    def retry_later(self, name: str) -> None:
        """Keep `name` due: the background thread tries its flush lock again next interval (a flush that found
        MySQL unavailable)."""
        with self._lock:
            self._unflushed.add(name)
        if self._owner != os.getpid():
            self._start()

    def take(self, queue: str, epoch: str, also: Callable[[Any], object] | None = None) -> Taken:
        """For a sink's flush: push this process's buffer, then take the sink's Redis queue, with any taken
        queue of it that a dead flush left, and move its epoch (how buffers learn that a flush has taken what
        they pushed), in one script. `also` adds commands to a MULTI run right after (their replies in
        `extras`). Call `done` or `give_back` once the items are written or refused. `queue` and `epoch` are
        names (`key`).
        :raise redis.RedisError: Redis is unavailable.
        :raise DatabaseUnavailable: the deployment's id is not known and MySQL does not answer."""
        self.push(flush=False)
        queue, epoch, inflight = self.key(queue), self.key(epoch), self.key(INFLIGHT)
        key = f"{queue}:taken:{uuid.uuid4().hex}"
        with self.store.guard() as client:
            script = self._take_script or client.register_script(_TAKE)
            self._take_script = script
            items = script(keys=[queue, epoch, inflight, key], args=[self.adopt_after])
            extras: list = []
            if also is not None:
                pipe = client.pipeline(transaction=True)
                also(pipe)
                extras = pipe.execute()
        return Taken(queue, key, list(items), extras)

    def settle(self, queue: str, wait: float = SETTLE_WAIT) -> None:
        """For a reader, after its own flush: wait (at most `wait` seconds) until no other flush of `queue` is
        still writing what it took, so that what the reader then reads from MySQL holds every item pushed
        before it asked. Without it, a read in one worker found the queue just taken by a read in another
        and read MySQL before that flush's INSERT (seen: the console's usage chart one request short)."""
        prefix, inflight = f"{self.key(queue)}:taken:", self.key(INFLIGHT)
        deadline = time.monotonic() + wait
        none: list[Any] = []
        while True:
            members: list[Any] = self.store.safe(lambda r: list(r.zrange(inflight, 0, -1)), none)
            busy = any((m.decode() if isinstance(m, bytes) else m).startswith(prefix) for m in members)
            if not busy or time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def done(self, taken: Taken) -> None:
        """The flush wrote what it took. If Redis cannot be told, a later flush writes the items again, which
        their ids make harmless."""
        if taken.items:
            self.store.safe(lambda r: self._release(r, taken, []), None)

    def give_back(self, taken: Taken, items: list) -> None:
        """MySQL refused `items` (what the flush had not written): back to the head of the queue, in order;
        kept in this process for the next push when Redis cannot take them now."""
        try:
            with self.store.guard() as client:
                self._release(client, taken, items)
        except redis.RedisError:
            with self._lock:
                self._returned.setdefault(taken.queue, []).extend(items)

    def _release(self, client, taken: Taken, items: list) -> None:
        pipe = client.pipeline(transaction=True)
        if items:
            pipe.lpush(taken.queue, *reversed(items))
        pipe.delete(taken.key)
        pipe.zrem(self.key(INFLIGHT), taken.key)
        pipe.execute()

    def _push(self, client, taken: dict[str, list]) -> None:
        """One MULTI: the items, plus the dataset's generation and each kept sink's epoch as of this push.
        Batches a flush has taken since (epoch moved on) are dropped from what is kept; if the generation
        changed, Redis lost its data (restarted empty, failed over without it) and what is kept goes again,
        batch by batch as first staged (a sink may recognise a batch it has already written)."""
        batches = {name: [items] for name, items in taken.items()}
        for name, lost in self._resend.items():
            batches[name] = lost + batches.get(name, [])
        epoch_sinks = [name for name, sink in self._sinks.items() if sink.epoch]
        with self._lock:
            returned = {queue: items for queue, items in self._returned.items() if items}
            self._returned = {}
        pipe = client.pipeline(transaction=True)
        for queue, items in returned.items():
            pipe.rpush(queue, *items)
        generation_key = self.key(GENERATION)
        pipe.set(generation_key, uuid.uuid4().hex, nx=True)
        pipe.get(generation_key)
        for name in epoch_sinks:
            pipe.get(self.key(self._sinks[name].epoch or ""))
        for name, staged in batches.items():
            for batch in staged:
                self._sinks[name].stage(pipe, batch)
        try:
            replies = pipe.execute()[len(returned) :]
        except redis.RedisError:
            with self._lock:
                for queue, items in returned.items():
                    self._returned[queue] = items + self._returned.get(queue, [])
            raise
        self._resend = {}  # sent (if Redis lost its data again meanwhile, the generation tells below)
        generation, epochs = replies[1], dict(zip(epoch_sinks, replies[2 : 2 + len(epoch_sinks)], strict=True))
        if self._generation is not None and generation != self._generation:
            self._resend = {name: [batch for _, batch in kept] for name, kept in self._kept.items() if kept}
            self._kept = {}
        self._generation = generation
        for name, epoch in epochs.items():
            now = int(epoch or 0)
            kept = [(at, batch) for at, batch in self._kept.get(name, []) if at >= now]
            kept += [(now, batch) for batch in batches.get(name, [])]
            while sum(len(batch) for _, batch in kept) > KEEP_MAX and len(kept) > 1:
                kept.pop(0)
            self._kept[name] = kept
        if self._resend:
            count = sum(len(batch) for lost in self._resend.values() for batch in lost)
            log.warning("Redis lost its queues: sending again %d items no flush had taken", count)
            self._push(client, {})  # if this fails, they stay in _resend for the next push

    def _start(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                return
            self._owner = os.getpid()
            self._unflushed.update(self._sinks)  # a new process also takes over what a dead one left queued
        threading.Thread(target=self._run, name="altus4-write-behind", daemon=True).start()
        atexit.register(self.close)

    def close(self, wait: float = 10.0) -> None:
        """Stop the background thread, let its cycle in progress finish (a flush it runs writes what it took)
        and send what is left (no new flush: the process is going away)."""
        self._closed.set()
        if self._cycle.acquire(timeout=wait):
            self._cycle.release()
        with self._lock:
            left = any(self._items.values()) or self._resend or self._returned
        if left:
            self.push(flush=False)
        with self._lock:
            lost = {name: len(items) for name, items in self._items.items() if items}
        if lost:
            log.error("exiting with buffered items neither Redis nor MySQL took: %s", lost)

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            with self._cycle:
                if self._closed.is_set():
                    return
                try:
                    self.push()
                except Exception:
                    log.exception("write-behind push failed")
