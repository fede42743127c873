"""Work that should happen after the response has gone out (batch flushes), never on the latency path."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask, Response, g

log = logging.getLogger("altus4.api")


def defer(task: Callable[[], object]) -> None:
    """Run `task` once the response body has been sent; failures are logged, never raised."""
    g.setdefault("deferred", []).append(task)


def _attach(response: Response) -> Response:
    tasks = g.pop("deferred", None)
    if tasks:
        def run() -> None:
            for task in tasks:
                try:
                    task()
                except Exception:
                    log.exception("deferred task failed")

        response.call_on_close(run)
    return response


def init_app(app: Flask) -> None:
    app.after_request(_attach)
