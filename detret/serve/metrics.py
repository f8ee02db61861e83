"""Prometheus metrics of the service (``GET /metrics``): requests, errors, latency, queue, uploads.

Every label takes a bounded set of values, whatever clients send: the route is its template
(``/api/photos/{photo_id}``) or ``unmatched``, the method one of :data:`METHODS` or ``other`` (uvicorn
accepts any token as a method), the status an HTTP status code. Each app has its own registry (tests
build several). :class:`Observed` is the outermost ASGI middleware: it sees every answer, the gate's
refusals included, and turns an exception that escaped a handler into a logged 500.
"""
from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .limits import respond

logger = logging.getLogger(__name__)

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


def status_label(status: int) -> str:
    return str(status) if 100 <= status <= 599 else "other"


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
        status_text = status_label(status)
        self.requests.labels(route, method_label(method), status_text).inc()
        if status >= 400:
            self.errors.labels(route, status_text).inc()
        self.latency.labels(route).observe(seconds)


class Observed:
    """Counts and times every request (an ASGI middleware around the whole app)."""

    def __init__(self, app, metrics: ServiceMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), {"code": 500, "sent": False}

        async def observed_send(message):
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except Exception:  # noqa: BLE001 -- a bug: logged with its traceback, answered 500, the server goes on
            logger.exception("%s %s failed", method_label(scope["method"]), scope.get("path", "")[:200])
            if not status["sent"]:
                await respond(send, 500, "internal error (see the server's log)")
            status["code"] = 500
        route = scope.get("route")
        self.metrics.observe(getattr(route, "path", "unmatched"), scope["method"], status["code"],
                             time.perf_counter() - started)
