"""What the sampler measures on the host: psutil figures, network rates, nginx stub_status."""

from __future__ import annotations

import asyncio
import re
import time

import httpx
import psutil
import structlog

from vpsapi.ops.system.service import host_figures

log = structlog.get_logger("vpsapi.ops.monitoring")

_ACTIVE = re.compile(rb"Active connections:\s*(\d+)")
_COUNTERS = re.compile(rb"\n\s*(\d+)\s+(\d+)\s+(\d+)\s*\n")


def parse_stub_status(body: bytes) -> tuple[int, int] | None:
    """(active connections, total requests) from nginx's stub_status page."""
    active, counters = _ACTIVE.search(body), _COUNTERS.search(body)
    if active is None or counters is None:
        return None
    return int(active.group(1)), int(counters.group(3))


class Rate:
    """Per-second rate of a growing counter between two readings."""

    def __init__(self) -> None:
        self._last: tuple[float, float] | None = None

    def update(self, value: float, at: float) -> float | None:
        previous, self._last = self._last, (value, at)
        if previous is None or at <= previous[1] or value < previous[0]:
            return None  # first reading, or the counter was reset (restart)
        return round((value - previous[0]) / (at - previous[1]), 3)


class SystemProbe:
    def __init__(self, nginx_status_url: str) -> None:
        self.nginx_status_url = nginx_status_url
        self._net_in, self._net_out, self._nginx_requests = Rate(), Rate(), Rate()
        psutil.cpu_percent(interval=None)  # the first reading only sets the baseline

    async def read(self, http: httpx.AsyncClient) -> dict[str, float | None]:
        figures = await asyncio.to_thread(host_figures)
        counters = psutil.net_io_counters()
        now = time.monotonic()
        values: dict[str, float | None] = {
            "cpu_usage": figures["cpu_usage"],
            "memory_usage": figures["memory_usage"],
            "disk_usage": figures["disk_usage"],
            "load_average": round(figures["load_average"], 3),
            "network_in": self._net_in.update(counters.bytes_recv, now),
            "network_out": self._net_out.update(counters.bytes_sent, now),
            "nginx_connections": None,
            "nginx_requests_per_second": None,
        }
        if self.nginx_status_url:
            status = await self._stub_status(http)
            if status is not None:
                values["nginx_connections"] = status[0]
                values["nginx_requests_per_second"] = self._nginx_requests.update(status[1], now)
        return values

    async def _stub_status(self, http: httpx.AsyncClient) -> tuple[int, int] | None:
        try:
            response = await http.get(self.nginx_status_url, timeout=3)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("ops.monitoring.stub_status_failed", error=str(exc))
            return None
        return parse_stub_status(response.content)
