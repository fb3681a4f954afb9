from __future__ import annotations

import asyncio

import httpx
import psutil
import pytest


async def test_health_has_seed_fields(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert body["status"] == "healthy"
    assert body["timestamp"].endswith("Z")
    assert isinstance(body["uptime"], int | float)
    # Node's `process.memoryUsage()` fields, as seed 000 returns them.
    assert set(body["memory"]) == {"rss", "heapTotal", "heapUsed", "external", "arrayBuffers"}
    assert response.headers["x-request-id"]
    assert "x-ratelimit-limit" not in response.headers


async def test_live(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["status"] == "alive"


async def test_ready_reports_checks(client: httpx.AsyncClient, backend) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "success": True,
        "status": "ready",
        "checks": {
            "database": "healthy",
            "redis": "healthy" if backend.scaleout else "not_configured",
            "storage": "healthy",
            "memory": "healthy",
            "responseTime": "healthy",
        },
    }


async def test_ready_reports_memory_and_slowness_without_failing(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seed 004's checks (memory under 90 %, an average answer under a second) are reported
    only: the host's memory is a whole node's in a container, and a slow process taken out
    of rotation would slow the others."""
    for _ in range(3):
        client.app.state.response_times.add(2.5)  # type: ignore[attr-defined]
    full = psutil.virtual_memory()._replace(percent=93.0)
    monkeypatch.setattr("vpsapi.health.router.psutil.virtual_memory", lambda: full)
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert (body["checks"]["memory"], body["checks"]["responseTime"]) == ("high", "slow")


async def test_a_slow_spell_long_past_is_forgotten(client: httpx.AsyncClient) -> None:
    """The average covers the last one or two windows only: slowness two windows ago no
    longer counts."""
    times = client.app.state.response_times  # type: ignore[attr-defined]
    times.window_seconds = 0.05
    times.add(5.0)
    assert (await client.get("/health/ready")).json()["checks"]["responseTime"] == "slow"
    await asyncio.sleep(0.15)  # more than two windows
    assert (await client.get("/health/ready")).json()["checks"]["responseTime"] == "healthy"


async def test_ready_503_names_failing_database(client: httpx.AsyncClient) -> None:
    async def broken() -> None:
        raise ConnectionRefusedError("database down")

    client.app.state.db.ping = broken  # type: ignore[attr-defined]
    response = await client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == "unhealthy"
    assert "database" in body["errors"]


async def test_metrics_prometheus_text(client: httpx.AsyncClient) -> None:
    await client.get("/health")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'vpsapi_http_requests_total{method="GET",route="/health",status="200"}' in response.text
    assert "vpsapi_http_request_duration_seconds_bucket" in response.text
    assert "vpsapi_http_requests_in_flight" in response.text
