"""Slow clients reaching gunicorn directly (no nginx in front): 3,000 connections that send their headers a
line at a time must not keep `/health` from answering, nor close a keep-alive client's connection."""

from __future__ import annotations

import contextlib
import errno
import http.client
import socket
import threading
import time

import pytest
from conftest import env_for_tests
from servers import call, start_gunicorn

SLOW = 3000
SECONDS = 20


class SlowClients:
    """`count` connections kept open, each sending one more header line every second and never finishing its
    request head; one the server closes is opened again at once (as an attacker would)."""

    def __init__(self, port: int, count: int):
        self.port, self.count = port, count
        self.sockets: list[socket.socket] = []
        self.reopened = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _open(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex(("127.0.0.1", self.port))
        return sock

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        """False when the server has closed the connection."""
        try:
            if sock.recv(1) == b"":
                return False
        except BlockingIOError:
            pass
        except OSError as exc:
            return exc.errno in (errno.ENOTCONN, errno.EAGAIN)  # still connecting
        try:
            sock.send(data)
        except BlockingIOError:
            pass
        except OSError as exc:
            return exc.errno in (errno.ENOTCONN, errno.EAGAIN)
        return True

    def _run(self) -> None:
        self.sockets = [self._open() for _ in range(self.count)]
        line = 0
        while not self._stop.is_set():
            head = b"GET /health HTTP/1.1\r\nHost: t\r\n" if line == 0 else b"X-Slow-%d: y\r\n" % line
            for i, sock in enumerate(self.sockets):
                if not self._send(sock, head):
                    sock.close()
                    self.sockets[i] = self._open()
                    self.reopened += 1
            line += 1
            self._stop.wait(1.0)

    def __enter__(self) -> SlowClients:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@pytest.mark.slow
def test_health_answers_within_a_second_while_3000_slow_connections_are_held_open(migrated, tmp_path):
    server = start_gunicorn(env_for_tests(), tmp_path, workers=2)
    keep_alive = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    probes: list[float | None] = []
    kept: list[int] = []
    try:
        with SlowClients(server.port, SLOW) as slow:
            time.sleep(3)  # every slow connection is open and has sent part of its head
            deadline = time.monotonic() + SECONDS
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    status = call(server.url + "/health", timeout=1)[0]
                    probes.append(time.monotonic() - started if status == 200 else None)
                except OSError:
                    probes.append(None)
                keep_alive.request("GET", "/health")  # one connection for the whole test
                response = keep_alive.getresponse()
                response.read()
                kept.append(response.status)
                time.sleep(0.25)
            reopened = slow.reopened
    finally:
        keep_alive.close()
        server.stop()
    answered = [p for p in probes if p is not None]
    print(
        f"{len(probes)} probes, slowest {max(answered, default=0):.3f} s; slow connections closed by the server"
        f" and opened again: {reopened}; keep-alive requests {len(kept)}"
    )
    assert len(answered) == len(probes) > 40 and max(answered) < 1.0, probes
    assert kept and set(kept) == {200}
    assert reopened > 0  # the server did close slow connections (their heads never completed)
