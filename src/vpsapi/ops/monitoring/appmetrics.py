"""This service's own request figures, read from its Prometheus metrics (vpsapi.core.metrics).

Each server process reads its local counters (in prometheus-client's multiprocess mode the
metric objects still hold this process's values) and reports what changed since its
previous read; the sampler adds the reports of all processes up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from vpsapi.core.metrics import LATENCY, REQUESTS


@dataclass
class RequestCounts:
    requests: int = 0
    errors: int = 0  # 5xx responses
    # Cumulative histogram counts, one per bound of LATENCY (the last is +Inf).
    latency_buckets: list[int] = field(default_factory=list)

    def minus(self, earlier: RequestCounts) -> RequestCounts:
        previous = earlier.latency_buckets or [0] * len(self.latency_buckets)
        return RequestCounts(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            [now - then for now, then in zip(self.latency_buckets, previous, strict=True)],
        )

    def plus(self, other: RequestCounts) -> RequestCounts:
        mine = self.latency_buckets or [0] * len(other.latency_buckets)
        theirs = other.latency_buckets or [0] * len(mine)
        if len(mine) != len(theirs):  # a process with other buckets: count, skip latency
            theirs = [0] * len(mine)
        return RequestCounts(
            self.requests + other.requests,
            self.errors + other.errors,
            [a + b for a, b in zip(mine, theirs, strict=True)],
        )


def latency_bounds() -> list[float]:
    return [float(bound) for bound in LATENCY._upper_bounds]


def read_counts() -> RequestCounts:
    """Totals since this process started."""
    requests = errors = 0
    for family in REQUESTS.collect():
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            requests += int(sample.value)
            if sample.labels.get("status", "").startswith("5"):
                errors += int(sample.value)
    bounds = latency_bounds()
    index = {bound: i for i, bound in enumerate(bounds)}
    buckets = [0] * len(bounds)
    for family in LATENCY.collect():
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                buckets[index[float(sample.labels["le"])]] += int(sample.value)
    return RequestCounts(requests, errors, buckets)


class RequestCounter:
    """Hands out what changed since the previous call."""

    def __init__(self) -> None:
        self._last = read_counts()

    def delta(self) -> RequestCounts:
        now = read_counts()
        change = now.minus(self._last)
        self._last = now
        return change


def quantile_ms(buckets: list[int], bounds: list[float], q: float) -> float | None:
    """The q-quantile (0-1) of a cumulative histogram, interpolated within its bucket as
    Prometheus' histogram_quantile does; None when there were no observations."""
    if not buckets or buckets[-1] <= 0:
        return None
    target = q * buckets[-1]
    lower_bound, lower_count = 0.0, 0
    for bound, count in zip(bounds, buckets, strict=True):
        if count >= target:
            if math.isinf(bound):
                return round(lower_bound * 1000, 3)
            share = (target - lower_count) / (count - lower_count) if count > lower_count else 1
            return round((lower_bound + (bound - lower_bound) * share) * 1000, 3)
        lower_bound, lower_count = bound, count
    return round(lower_bound * 1000, 3)
