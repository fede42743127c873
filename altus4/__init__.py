"""Altus 4: MySQL full-text search as an API, without moving the data."""

from __future__ import annotations

import time

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from altus4 import log
from altus4.config import Settings

__version__ = "1.0.0"


def take_turns(wsgi_app):
    """Yield once before each request, so a worker serves its waiting connections in turn.

    Under gunicorn's gevent worker a greenlet whose client sends its next request at once on a keep-alive
    connection can be served again and again before greenlets that waited longer get the CPU: with wrk at
    16 connections, GET /health had p50 0.6 ms but p99 116 ms. One `sleep(0)` (gevent's, once patched;
    a no-op turn of the GIL under threads) sends each request to the back of the run queue: p99 ~12 ms on a
    bare WSGI app with the same throughput (bench/run.py and the README have the numbers).
    """

    def wsgi(environ, start_response):
        time.sleep(0)
        return wsgi_app(environ, start_response)

    return wsgi


def create_app(settings: Settings | None = None) -> Flask:
    """Build an app from `settings` (default: the environment). No I/O happens until a request or CLI call."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    from altus4.api.json_codec import OrjsonProvider

    app.json = OrjsonProvider(app)
    app.config.update(
        ALTUS4_VERSION=__version__,
        ALTUS4_STARTED=time.monotonic(),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies,
                                x_host=settings.trusted_proxies)
    app.wsgi_app = take_turns(app.wsgi_app)
    log.configure(settings.log_level)

    from altus4 import api, cli
    from altus4.container import Services
    from altus4.metrics import Metrics

    metrics = Metrics()
    app.extensions["altus4"] = Services.build(settings, app.config["ALTUS4_STARTED"], metrics)
    metrics.init_app(app)
    api.init_app(app)
    cli.init_app(app)
    return app
