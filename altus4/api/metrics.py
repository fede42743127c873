"""/metrics through prometheus-flask-exporter, and the request-latency series every route feeds."""

from __future__ import annotations

import time
from typing import Any, cast

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_flask_exporter import PrometheusMetrics

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


def init_app(app: Flask, metrics: Metrics) -> None:
    _Exporter(app, registry=metrics.registry, export_defaults=False, path="/metrics")
    cast(Any, app.view_functions["prometheus_metrics"])._altus4_auth = "public"  # nginx/HAProxy keep it internal

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
