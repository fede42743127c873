"""How the WSGI app shares a gunicorn gevent worker: each request waits its turn.

A greenlet whose client sends its next request at once on a keep-alive connection can be served again and
again before greenlets that waited longer get the CPU: with wrk at 16 connections, GET /health had p50
0.6 ms but p99 116 ms. One `sleep(0)` (gevent's, once patched; a turn of the GIL under threads) sends each
request to the back of the run queue: p99 ~12 ms on a bare WSGI app with the same throughput, and 25 ms
instead of 116 ms for /health (README, Performance).
"""

from __future__ import annotations

import time


def take_turns(wsgi_app):
    def wsgi(environ, start_response):
        time.sleep(0)
        return wsgi_app(environ, start_response)

    return wsgi
