"""/metrics through prometheus-flask-exporter, and the request-latency series every route feeds.

/metrics answers only the scrapers the operator allows: addresses in METRICS_ALLOWED (loopback and the
private ranges by default, as the shipped nginx does) or a request with `Authorization: Bearer
METRICS_TOKEN`. Anyone else gets 404, as if there were nothing: gunicorn may be reached directly (`make run`,
`docker run`, a Kubernetes Service without an ingress), and the series name routes, pools and limits.
"""

from __future__ import annotations

import hmac
import ipaddress
import time
from functools import wraps
from typing import Any, cast

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_flask_exporter import PrometheusMetrics

from altus4.config import Settings
from altus4.errors import NotFound
from altus4.metrics import CacheRatio, Metrics, Passthrough, merged


class _Exporter(PrometheusMetrics):
    """prometheus-flask-exporter's /metrics endpoint, with the derived cache ratio added to every scrape."""

    def generate_metrics(self, accept_header=None, names=None):
        registry = merged(self.registry)
        output = CollectorRegistry()
        output.register(Passthrough(registry))
        output.register(CacheRatio(registry))
        encoder, content_type = choose_encoder(accept_header)
        return encoder(output).decode("utf-8"), content_type


def _scraper_allowed(settings: Settings) -> bool:
    token = settings.metrics_token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address((request.remote_addr or "").split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(n, strict=False) for n in settings.metrics_allowed)


def init_app(app: Flask, metrics: Metrics, settings: Settings) -> None:
    _Exporter(app, registry=metrics.registry, export_defaults=False, path="/metrics")
    export = app.view_functions["prometheus_metrics"]

    @wraps(export)
    def guarded(*args, **kwargs):
        if not _scraper_allowed(settings):
            raise NotFound(f"No route for {request.method} {request.path}")
        return export(*args, **kwargs)

    cast(Any, guarded)._altus4_auth = "public"  # to the scrapers METRICS_ALLOWED and METRICS_TOKEN admit
    app.view_functions["prometheus_metrics"] = guarded

    @app.before_request
    def _start_timer() -> None:
        g.metrics_started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.pop("metrics_started", None)
        if started is not None:
            route = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
            metrics.request_duration.labels(request.method, route, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response
