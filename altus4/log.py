"""Application logging: one line per record, each carrying the request id of the request it belongs to."""

from __future__ import annotations

import logging

from flask import g, has_request_context

FORMAT = "%(asctime)s %(levelname)s %(name)s rid=%(request_id)s %(message)s"


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


def configure(level: str) -> None:
    """Give the `altus4` loggers a handler once per process (gunicorn keeps its own for access logs)."""
    logger = logging.getLogger("altus4")
    logger.setLevel(level)
    if not any(isinstance(f, RequestIdFilter) for h in logger.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler.addFilter(RequestIdFilter())
        logger.addHandler(handler)
        logger.propagate = False
