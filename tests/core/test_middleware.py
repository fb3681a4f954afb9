"""CORS, security headers and compression."""

from __future__ import annotations

import gzip

import httpx
import pytest


async def test_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    # The values seeds 001 and 004 list.
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert response.headers["x-xss-protection"] == "1; mode=block"
    assert response.headers["content-security-policy"] == "default-src 'self'"
    assert response.headers["referrer-policy"]
    # helmet()'s other defaults (seeds 000, 001 and 004 mount it)
    assert response.headers["x-dns-prefetch-control"] == "off"
    assert response.headers["x-download-options"] == "noopen"
    assert response.headers["x-permitted-cross-domain-policies"] == "none"
    assert response.headers["origin-agent-cluster"] == "?1"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_docs_pages_load_with_relaxed_csp(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] != "default-src 'self'"


async def test_openapi_lists_core_paths(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in ("/api/auth/token", "/api/v1/auth/login", "/api/v1/me", "/health/ready"):
        assert path in spec["paths"]


async def test_allowed_origin_gets_cors_headers(make_client) -> None:
    client = await make_client(allowed_origins=["https://app.example.com"])
    response = await client.get("/api/v1/info", headers={"Origin": "https://app.example.com"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize(
    ("method", "asked", "listed"),
    [
        # Seed 004's frontends name themselves in X-Frontend-Source.
        ("POST", "authorization,content-type,x-frontend-source", True),
        # An unlisted header: the lists are sent all the same, the browser refuses it.
        ("PATCH", "x-custom", False),
    ],
)
async def test_preflight_for_allowed_origin(
    make_client, method: str, asked: str, listed: bool
) -> None:
    client = await make_client(allowed_origins=["https://app.example.com"])
    response = await client.options(
        "/api/jobs",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": asked,
        },
    )
    assert response.status_code == 204  # as seed 000's `cors` package answers
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"
    allowed = response.headers["access-control-allow-headers"].lower()
    assert (asked.split(",")[-1] in allowed) is listed


@pytest.mark.parametrize("origin", [None, "https://app.example.com"])
@pytest.mark.parametrize("path", ["/api/jobs", "/health", "/api/v1/users"])
async def test_any_options_is_a_204_with_the_cors_headers(
    make_client, path: str, origin: str | None
) -> None:
    # Seed 000's cors() answers every OPTIONS, not only a browser's preflight.
    client = await make_client(allowed_origins=["https://app.example.com"])
    response = await client.options(path, headers={"Origin": origin} if origin else {})
    assert response.status_code == 204
    assert response.content == b""
    assert "GET" in response.headers["access-control-allow-methods"]
    assert response.headers.get("access-control-allow-origin") == origin
    assert "x-request-id" in response.headers


@pytest.mark.parametrize(
    ("path", "family"),
    [
        ("/api/v1/info", "envelope"),
        ("/api/auth/token", "legacy"),
        ("/health", "legacy"),
        ("/api/configs", "fastapi"),  # seed 002's clients read `detail`
    ],
)
async def test_foreign_origin_is_refused(make_client, path: str, family: str) -> None:
    client = await make_client(allowed_origins=["https://app.example.com"])
    response = await client.post(path, headers={"Origin": "https://evil.example.net"})
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers
    body = response.json()
    if family == "envelope":
        assert body["error"] == "Forbidden"
    else:
        assert body["error"] == "CORS policy violation"
        assert body.get("detail") == ("CORS policy violation" if family == "fastapi" else None)


async def test_foreign_preflight_is_refused(make_client) -> None:
    client = await make_client(allowed_origins=["https://app.example.com"])
    response = await client.options(
        "/api/jobs",
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 403
    assert "access-control-allow-origin" not in response.headers


async def test_same_origin_passes_without_allow_list(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/info", headers={"Origin": "http://testserver"})
    assert response.status_code == 200


async def test_gzip_for_large_responses(client: httpx.AsyncClient) -> None:
    async with client.stream(
        "GET", "/openapi.json", headers={"Accept-Encoding": "gzip"}
    ) as response:
        sent = b"".join([chunk async for chunk in response.aiter_raw()])
    assert response.headers.get("content-encoding") == "gzip"
    # Seed 004's level 6 (the balance of CPU and size), not zlib's 9.
    body = gzip.decompress(sent)
    assert len(sent) == len(gzip.compress(body, compresslevel=6))
    small = await client.get("/health/live", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in small.headers


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [
        ("gzip;q=0, identity", False),  # RFC 9110: q=0 is "not acceptable"
        ("GZIP; Q=0.0", False),
        ("*;q=0, identity", False),
        ("gzip;q=0.5, identity", True),
        ("*;q=0, gzip", True),  # named, so the wildcard does not speak for it
        ("deflate, gzip;q=0.1", True),
    ],
)
async def test_gzip_follows_the_quality_values(
    client: httpx.AsyncClient, accept: str, gzipped: bool
) -> None:
    async with client.stream("GET", "/openapi.json", headers={"Accept-Encoding": accept}) as answer:
        sent = b"".join([chunk async for chunk in answer.aiter_raw()])
    assert (answer.headers.get("content-encoding") == "gzip") is gzipped
    assert (sent[:2] == b"\x1f\x8b") is gzipped


@pytest.mark.parametrize("path", ["/health", "/health/live", "/api/v1/info"])
async def test_head_is_answered_wherever_get_is(client: httpx.AsyncClient, path: str) -> None:
    get = await client.get(path)
    head = await client.head(path)
    assert head.status_code == 200
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.headers["x-request-id"]


async def test_head_on_a_post_only_route_is_still_405(client: httpx.AsyncClient) -> None:
    response = await client.head("/api/auth/token")
    assert response.status_code == 405


async def test_socketio_polling_gets_one_cors_origin_header(make_client) -> None:
    """engine.io answers CORS itself; a doubled Allow-Origin makes browsers refuse it."""
    client = await make_client(allowed_origins=["https://flowmind.example.com"])
    response = await client.get(
        "/ws/?EIO=4&transport=polling", headers={"Origin": "https://flowmind.example.com"}
    )
    assert response.status_code == 200
    assert response.headers.get_list("access-control-allow-origin") == [
        "https://flowmind.example.com"
    ]
    assert len(response.headers.get_list("access-control-allow-credentials")) == 1


@pytest.mark.parametrize("path", ["/api/v1/info", "/api/v1/ai/providers"])
async def test_api_gets_carry_an_etag_and_answer_304(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str
) -> None:
    first = await client.get(path, headers=admin_headers)
    assert first.status_code == 200
    etag = first.headers["etag"]
    assert etag.startswith('W/"')
    assert first.headers["cache-control"] == "private, max-age=0, must-revalidate"
    again = await client.get(path, headers={**admin_headers, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    changed = await client.get(path, headers={**admin_headers, "If-None-Match": 'W/"other"'})
    assert changed.status_code == 200


async def test_a_304_varies_as_its_200_does(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    for number in range(12):  # a list over the compression threshold
        await client.post(
            "/api/v1/citypulse/buildings", json={"name": f"Depot {number}"}, headers=admin_headers
        )
    headers = {**admin_headers, "Accept-Encoding": "gzip"}
    first = await client.get("/api/v1/citypulse/buildings", headers=headers)
    assert first.headers["content-encoding"] == "gzip"
    assert first.headers["vary"] == "Accept-Encoding"
    again = await client.get(
        "/api/v1/citypulse/buildings", headers={**headers, "If-None-Match": first.headers["etag"]}
    )
    assert again.status_code == 304
    assert again.headers["vary"] == "Accept-Encoding"
    small = await client.get("/api/v1/me", headers=headers)  # never compressed: no Vary
    assert "vary" not in small.headers
    small_again = await client.get(
        "/api/v1/me", headers={**headers, "If-None-Match": small.headers["etag"]}
    )
    assert small_again.status_code == 304 and "vary" not in small_again.headers


async def test_streams_and_writes_are_not_tagged(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.post(
        "/api/v1/citypulse/buildings", json={"name": "Depot"}, headers=admin_headers
    )
    assert "etag" not in created.headers
    token = admin_headers["Authorization"].removeprefix("Bearer ")
    async with client.stream("GET", f"/api/sse/job-progress/nope?access_token={token}") as stream:
        assert "etag" not in stream.headers


async def test_a_trailing_slash_is_answered_as_express_does(
    client: httpx.AsyncClient, admin_headers: dict[str, str], api_token_headers: dict[str, str]
) -> None:
    """`/api/jobs/` is `/api/jobs` (Express's non-strict routing), not a 307 elsewhere."""
    health = await client.get("/health/")
    assert health.status_code == 200 and health.json()["status"] == "healthy"
    me = await client.get("/api/v1/me/", headers=admin_headers)
    assert me.status_code == 200, me.text
    job = await client.post(
        "/api/jobs/",
        json={"processingType": "type1", "data": [{"a": 1}]},
        headers=api_token_headers,
    )
    assert job.status_code == 202, job.text
    status = await client.get(f"/api/jobs/{job.json()['jobId']}/", headers=api_token_headers)
    assert status.status_code == 200, status.text
    # No route either way: a 404, not a redirect to one.
    missing = await client.get("/api/nothing-here/")
    assert (missing.status_code, missing.json()["error"]) == (404, "Endpoint not found")
    # A path taken with its slash keeps it (the console's index).
    assert (await client.get("/console/")).status_code == 200
