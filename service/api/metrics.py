"""``GET /metrics``: the process's Prometheus registry (``service.metrics``) as text."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.metrics import ServiceMetrics
from service.storage import Storage


def add_metrics_route(app: FastAPI, storage: Storage, metrics: ServiceMetrics | None) -> None:
    """Serve ``metrics`` (a fresh one when None: database gauges only). Outside /api, like
    the health checks, and open: it holds counts, never content or secrets."""
    registry = metrics or ServiceMetrics()
    registry.watch_database(storage.metric_counts)

    @app.get("/metrics", response_class=Response)
    def prometheus_metrics() -> Response:
        return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)
