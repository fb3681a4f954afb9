"""CityPulse Prometheus metrics (served by the core /metrics endpoint)."""

from __future__ import annotations

import structlog
from fastapi import Request
from prometheus_client import Counter, Gauge

# Seed 004 names the frontends it serves; anything else is counted as "other" so a client
# cannot grow the label set.
KNOWN_FRONTENDS = {"flowmind", "citypulse", "quantum", "velocity"}

READINGS_INGESTED = Counter(
    "vpsapi_citypulse_readings_ingested_total",
    "Sensor readings stored by CityPulse, by transport (http, mqtt)",
    ["transport"],
)
READINGS_PURGED = Counter(
    "vpsapi_citypulse_readings_purged_total",
    "Readings deleted by CITYPULSE_READINGS_RETENTION_DAYS",
)
MQTT_MESSAGES = Counter(
    "vpsapi_citypulse_mqtt_messages_total",
    "MQTT messages received by the CityPulse subscriber, by outcome",
    ["outcome"],
)
ANALYTICS_CACHE = Counter(
    "vpsapi_citypulse_analytics_cache_total",
    "CityPulse analytics cache lookups, by result (hit, miss)",
    ["result"],
)
SOCKET_CONNECTIONS = Gauge(
    "vpsapi_citypulse_socketio_connections", "Socket.IO clients connected to this process"
)
MQTT_CONNECTED = Gauge(
    "vpsapi_citypulse_mqtt_connected", "1 while the CityPulse MQTT subscriber is connected"
)
ALERTS_OPENED = Counter(
    "vpsapi_citypulse_alerts_opened_total", "CityPulse alerts opened", ["severity"]
)
FRONTEND_REQUESTS = Counter(
    "vpsapi_citypulse_frontend_requests_total",
    "CityPulse requests by X-Frontend-Source header",
    ["source"],
)


def frontend_label(header: str | None) -> str:
    if not header:
        return "none"
    value = header.strip().lower()
    return value if value in KNOWN_FRONTENDS else "other"


async def record_frontend_source(request: Request) -> None:
    """Router dependency: count the calling frontend and put it in the request's logs."""
    source = frontend_label(request.headers.get("x-frontend-source"))
    FRONTEND_REQUESTS.labels(source=source).inc()
    structlog.contextvars.bind_contextvars(frontend_source=source)
