"""Tiered rate limits: headers on every /api answer, 429 with Retry-After per family."""

from __future__ import annotations

import time

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD, SHARED_API_KEY


@pytest.fixture
async def limited(make_client) -> httpx.AsyncClient:
    return await make_client(rate_limit_enabled=True, rate_limit_default="3/minute")


async def test_headers_on_every_api_response(limited: httpx.AsyncClient) -> None:
    response = await limited.get("/api/v1/info")
    assert response.headers["x-ratelimit-limit"] == "3"
    assert response.headers["x-ratelimit-remaining"] == "2"
    reset = int(response.headers["x-ratelimit-reset"])
    assert time.time() - 5 < reset <= time.time() + 61
    not_found = await limited.get("/api/v1/nothing")
    assert not_found.headers["x-ratelimit-remaining"] == "1"


async def test_v1_429_envelope_with_retry_after(limited: httpx.AsyncClient) -> None:
    for _ in range(3):
        assert (await limited.get("/api/v1/info")).status_code == 200
    response = await limited.get("/api/v1/info")
    assert response.status_code == 429
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-ratelimit-remaining"] == "0"
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "TooManyRequests"
    assert body["message"] == "Too many requests, please try again later"
    assert body["statusCode"] == 429


async def test_seed000_429_body(limited: httpx.AsyncClient) -> None:
    for _ in range(3):
        await limited.get("/api/jobs-nothing")
    response = await limited.get("/api/jobs-nothing")
    assert response.status_code == 429
    body = response.json()
    assert body["error"] == "Too many requests"
    assert body["retryAfter"] == int(response.headers["retry-after"])


async def test_health_and_metrics_never_limited(limited: httpx.AsyncClient) -> None:
    for _ in range(6):
        for path in ("/health", "/health/ready", "/health/live", "/metrics"):
            response = await limited.get(path)
            assert response.status_code == 200
            assert "x-ratelimit-limit" not in response.headers


async def test_limits_are_per_user_when_authenticated(make_client) -> None:
    client = await make_client(rate_limit_enabled=True, rate_limit_default="3/minute")
    token = (
        await client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
    ).json()["data"]["accessToken"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(3):
        assert (await client.get("/api/v1/info")).status_code == 200  # the IP's budget
    assert (await client.get("/api/v1/info")).status_code == 429
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200  # the user's own


async def test_auth_tier_counts_failed_attempts_per_ip(make_client) -> None:
    client = await make_client(rate_limit_enabled=True, rate_limit_auth="5/15minutes")
    for _ in range(3):  # successes do not count
        ok = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
        assert ok.status_code == 200
    for _ in range(5):
        bad = await client.post(
            "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong"}
        )
        assert bad.status_code == 401
    blocked = await client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) > 0
    token = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    assert token.status_code == 429
    assert token.json()["error"] == "Too many requests"


async def test_search_tier(make_client) -> None:
    client = await make_client(rate_limit_enabled=True, rate_limit_search="2/minute")
    token = (await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})).json()
    headers = {"Authorization": f"Bearer {token['token']}"}
    statuses = [
        (await client.get("/api/v1/search?q=a", headers=headers)).status_code for _ in range(3)
    ]
    assert statuses == [200, 200, 429]


def test_seed000_window_settings(settings_factory) -> None:
    settings = settings_factory(rate_limit_window_ms=900000, rate_limit_max_requests=100)
    assert settings.rate_limit_default == "100/900seconds"
