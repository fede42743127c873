"""The gunicorn worker Altus 4 runs: gevent's, with a deadline on request heads and a bound on waiting
connections, so slow clients cannot take the service down when gunicorn is reached directly (`make run`,
`docker run`, a Kubernetes Service without an ingress).

Seen before: about 2,000 connections sending their headers slowly filled both workers' connection pools
(`WORKER_CONNECTIONS`); none was ever closed, and `/health` went unanswered for 40 s. gunicorn gives each
request head `keepalive` seconds (75 here, for nginx's idle upstream connections) and knows no other limit.
Now, per worker:
- a connection's first request head must arrive within GUNICORN_HEADER_TIMEOUT seconds (10) of its accept;
  a keep-alive connection may wait `keepalive` for its next request, as before;
- at most GUNICORN_MAX_WAITING connections (half of WORKER_CONNECTIONS) wait for a request head at once:
  one more closes the one that has waited longest, first among those that never sent a whole request, and
  only when there are none, among idle keep-alive ones (nginx closes idle keep-alive connections the same
  way). So the pool always has room to accept, a client that sends its request at once is served at once,
  and a keep-alive client is not cut off by slow ones (measured: oldest-first alone closed one between
  two requests 0.3 s apart, while the slow ones were closed and came back ~2,500 times a second).
"""

from __future__ import annotations

import contextlib
import socket
from collections import OrderedDict
from collections.abc import Iterator

import gevent
from gunicorn.workers.ggevent import GeventWorker


class GuardedGeventWorker(GeventWorker):
    header_timeout = 10  # seconds; set from GUNICORN_HEADER_TIMEOUT by config/gunicorn.conf.py
    max_waiting = 0  # GUNICORN_MAX_WAITING; 0: half of WORKER_CONNECTIONS

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_waiting = self.max_waiting or max(1, self.worker_connections // 2)
        # greenlet -> its socket, oldest first: connections that never sent a whole request, and idle ones
        self._fresh: OrderedDict[object, socket.socket] = OrderedDict()
        self._idle: OrderedDict[object, socket.socket] = OrderedDict()
        self._served: dict[object, tuple[socket.socket, bool]] = {}  # greenlet -> (socket, a request was read)

    def handle(self, listener, client, addr):
        me = gevent.getcurrent()
        self._served[me] = (client, False)
        try:
            super().handle(listener, client, addr)
        finally:
            self._served.pop(me, None)
            self._fresh.pop(me, None)
            self._idle.pop(me, None)

    def handle_request(self, listener_name, req, sock, addr):
        me = gevent.getcurrent()
        self._served[me] = (sock, True)
        return super().handle_request(listener_name, req, sock, addr)

    def timeout_ctx(self):
        return self._waiting_for_a_request()

    @contextlib.contextmanager
    def _waiting_for_a_request(self) -> Iterator[None]:
        """Around gunicorn's read of a request head: the deadline, and the place in the waiting line."""
        me = gevent.getcurrent()
        client, served = self._served.get(me, (None, False))
        limit = self.cfg.keepalive if served else self.header_timeout
        line = self._idle if served else self._fresh
        if client is not None:
            line[me] = client
            while len(self._fresh) + len(self._idle) > self.max_waiting:
                _, oldest = (self._fresh or self._idle).popitem(last=False)
                _close_for_reading(oldest)
        try:
            with gevent.Timeout(limit, False):  # on time-out, no request: gunicorn closes the connection
                yield
        finally:
            line.pop(me, None)


def _close_for_reading(sock: socket.socket) -> None:
    """Wake the greenlet reading `sock` with end-of-file: it closes the connection as if the client had."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
