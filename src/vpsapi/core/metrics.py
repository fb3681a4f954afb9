"""Prometheus metrics. With several processes (`vpsapi serve --workers N`), the CLI sets
up prometheus-client's multiprocess mode so `/metrics` aggregates all of them."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as prom_multiprocess

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

REQUESTS = Counter(
    "vpsapi_http_requests_total",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "vpsapi_http_request_duration_seconds",
    "HTTP request latency by method and route template",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
IN_FLIGHT = Gauge(
    "vpsapi_http_requests_in_flight",
    "Requests being served",
    multiprocess_mode="livesum",
)


class ResponseTimes:
    """This process's average time to the start of an answer over the last one to two
    minutes, for the readiness report (seed 004: "Average Response Time < 1s"). Timed to
    the answer's start, so a stream's (SSE) lifetime is not taken for slowness."""

    def __init__(
        self, window_seconds: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_seconds = window_seconds
        self.clock = clock
        self.current = [0.0, 0]  # seconds in all, answers
        self.previous = [0.0, 0]
        self.window_start = clock()

    def _rotate(self) -> None:
        elapsed = self.clock() - self.window_start
        if elapsed >= self.window_seconds:
            recent = elapsed < 2 * self.window_seconds
            self.previous = self.current if recent else [0.0, 0]
            self.current = [0.0, 0]
            self.window_start = self.clock()

    def add(self, seconds: float) -> None:
        self._rotate()
        self.current[0] += seconds
        self.current[1] += 1

    def average(self) -> float | None:
        """Seconds, or None without an answer in the window."""
        self._rotate()
        answers = self.current[1] + self.previous[1]
        return (self.current[0] + self.previous[0]) / answers if answers else None


def render_metrics() -> tuple[bytes, str]:
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        prom_multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
