"""The app factory: one Flask app from one `Settings`, with every service built and every route declared.

Kept out of `altus4/__init__.py` so that importing `altus4.config` (gunicorn's master does, for its settings)
pulls in neither Flask nor `ssl` before gevent patches the workers.
"""

from __future__ import annotations

import time

from flask import Flask, Response
from werkzeug.middleware.proxy_fix import ProxyFix

from altus4 import log
from altus4.config import VERSION, Settings
from altus4.serving import take_turns


class Altus4(Flask):
    def make_default_options_response(self) -> Response:
        """`OPTIONS` on any route: 204 with `Allow` (Flask's default is a 200 with an empty HTML body)."""
        response = super().make_default_options_response()
        response.status_code = 204
        response.set_data(b"")
        del response.headers["Content-Type"]
        return response


def create_app(settings: Settings | None = None) -> Flask:
    """Build an app from `settings` (default: the environment). No I/O happens until a request or CLI call."""
    settings = settings or Settings.from_env()
    app = Altus4("altus4", static_folder=None)  # the console serves its own files (altus4.api.console)
    app.url_map.strict_slashes = False  # `/api/v1/keys/` is `/api/v1/keys`, as Express matched it
    from altus4.api.json_codec import OrjsonProvider

    app.json = OrjsonProvider(app)
    app.config.update(
        ALTUS4_VERSION=VERSION,
        ALTUS4_STARTED=time.monotonic(),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
    )
    if settings.trusted_proxies:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app,
            x_for=settings.trusted_proxies,
            x_proto=settings.trusted_proxies,
            x_host=settings.trusted_proxies,
        )
    app.wsgi_app = take_turns(app.wsgi_app)  # type: ignore[method-assign]
    log.configure(settings.log_level)

    from altus4 import api, cli
    from altus4.api import metrics as api_metrics
    from altus4.container import Services
    from altus4.metrics import Metrics

    metrics = Metrics()
    app.extensions["altus4"] = Services.build(settings, app.config["ALTUS4_STARTED"], metrics)
    api_metrics.init_app(app, metrics, settings)
    api.init_app(app)
    cli.init_app(app)
    return app
