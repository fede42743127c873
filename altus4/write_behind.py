"""Writes that can wait a moment (API-key usage counts, analytics entries), sent to Redis in batches.

The first item of a sink after a quiet `interval` is sent at once, inside its
request, so at low load every write is in Redis before the response goes out
(a search is in the history another worker reads right after). Under load the
items that follow within `interval` wait in the process and a background
thread (a greenlet under gunicorn's gevent worker) sends them as one pipeline
per interval: profiled, the two per-request pipelines this replaces cost a
sixth of a worker's CPU on a cached search. Then the rule is "in Redis within
`interval`"; readers call `push()` first, so a process's own items are always
in what it reads.

The background thread also takes each written-to sink's flush lock (SET NX
EX); the process that gets it moves the sink's Redis queue to MySQL in one
batch, never on the request path. A process keeps trying for a sink it wrote
to until it wins the lock once, so the last items before the load stops are
flushed within the lock's period, not left until someone reads. Without Redis items are written to MySQL
directly. Lost on a SIGKILL: at most `interval` seconds of items; a clean exit
sends what is left.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from altus4.redis_store import RedisStore

log = logging.getLogger("altus4.write_behind")


@dataclass(frozen=True)
class Sink:
    """Where one service's buffered items go."""

    stage: Callable[[Any, list], None]  # the items as commands on a Redis pipeline
    write_direct: Callable[[list], None]  # Redis unreachable: the items straight to MySQL
    flush: Callable[[], object]  # Redis queue -> MySQL, run by the process that takes the lock
    lock_key: str
    lock_seconds: int


class WriteBehind:
    def __init__(self, store: RedisStore, interval: float):
        self.store = store
        self.interval = interval
        self._sinks: dict[str, Sink] = {}
        self._items: dict[str, list] = {}
        self._lock = threading.Lock()  # guards the buffer
        self._pushing = threading.Lock()  # one push at a time: a reader's push waits for one in flight
        self._owner: int | None = None  # pid whose background thread runs (a forked child starts its own)
        self._closed = threading.Event()
        self._last_sent: dict[str, float] = {}  # per sink: when an item last went at once
        self._unflushed: set[str] = set()  # sinks written to Redis since their last flush-lock attempt

    def register(self, name: str, sink: Sink) -> None:
        self._sinks[name] = sink
        self._last_sent[name] = 0.0

    def add(self, name: str, item: Any) -> None:
        now = time.monotonic()
        with self._lock:
            self._items.setdefault(name, []).append(item)
            quiet = now - self._last_sent[name] >= self.interval
            if quiet:
                self._last_sent[name] = now
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
            if not taken and not lock:
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
            with self.store.guard() as client:
                pipe = client.pipeline(transaction=False)
                for name, items in taken.items():
                    self._sinks[name].stage(pipe, items)
                first_lock = len(pipe)
                for name in lock:
                    sink = self._sinks[name]
                    pipe.set(sink.lock_key, "1", nx=True, ex=sink.lock_seconds)
                replies = pipe.execute()
            return [name for name, reply in zip(lock, replies[first_lock:], strict=True) if reply]
        except redis.RedisError:
            for name, items in taken.items():
                try:
                    self._sinks[name].write_direct(items)
                except Exception:
                    log.exception("%s: %d buffered items lost (no Redis, and MySQL refused them)", name, len(items))
            return []

    def retry_later(self, name: str) -> None:
        """Keep `name` due: the background thread tries its flush lock again next interval (a flush that found
        MySQL unavailable)."""
        with self._lock:
            self._unflushed.add(name)
        if self._owner != os.getpid():
            self._start()

    def _start(self) -> None:
        with self._lock:
            if self._owner == os.getpid():
                return
            self._owner = os.getpid()
            self._unflushed.update(self._sinks)  # a new process also takes over what a dead one left queued
        threading.Thread(target=self._run, name="altus4-write-behind", daemon=True).start()
        atexit.register(self.push, False)

    def close(self) -> None:
        """Stop the background thread and send what is left (no flush: the app is going away)."""
        self._closed.set()
        self.push(flush=False)

    def _run(self) -> None:
        while not self._closed.wait(self.interval):
            try:
                self.push()
            except Exception:
                log.exception("write-behind push failed")
