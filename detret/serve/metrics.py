"""Prometheus metrics of the service (``GET /metrics``): requests, errors, latency, queue.

Labelled by route template (``/api/photos/{photo_id}``), never by the raw path, so the number of
series stays bounded whatever clients send. Each app has its own registry (tests build several).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("detret_requests_total", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.errors = Counter("detret_request_errors_total", "Requests answered with a 4xx or 5xx status",
                              ["route", "status"], registry=self.registry)
        self.latency = Histogram("detret_request_latency_seconds", "Time to answer a request", ["route"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.queue = Gauge("detret_search_queue_waiting", "Search requests waiting for the models",
                           registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
