"""Prometheus metrics: request counts and latency per route, jobs by state and queue depth from the database."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.db import SessionFactory
from common.models import JobStatus, ProtectionJob


class JobCollector(Collector):
    """Reads job counts at scrape time, so every API replica reports the same truth."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self._session_factory = session_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._session_factory() as session:
            counts = dict(
                session.execute(select(ProtectionJob.status, func.count()).group_by(ProtectionJob.status)).all()
            )
        jobs = GaugeMetricFamily("persguard_jobs", "Protection jobs by state", labels=["state"])
        for state in JobStatus:
            jobs.add_metric([state.value], counts.get(state.value, 0))
        yield jobs
        yield GaugeMetricFamily("persguard_queue_depth", "Jobs waiting to run", value=counts.get("queued", 0))


class Metrics:
    """The app's own registry (one per app, so tests can build many apps)."""

    def __init__(self, session_factory: SessionFactory) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "persguard_http_requests", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "persguard_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
        )
        self.registry.register(JobCollector(session_factory))
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count and time one request. Each label set's children are looked up once: `labels()` validates the
        values and takes a lock on every call, which cost more than counting and timing."""
        children = self._children.get((method, route, status))
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            self._children[method, route, status] = children
        children[0].inc()
        children[1].observe(seconds)


class MetricsMiddleware:
    """Counts and times every HTTP request by its route template (not its raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.record(scope["method"], route, status, time.perf_counter() - start)
