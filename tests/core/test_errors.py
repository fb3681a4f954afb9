"""One error hierarchy, two body families, X-Request-ID everywhere, no 500 leaks."""

from __future__ import annotations

import httpx
import pytest
from fastapi import APIRouter


async def test_unknown_v1_route_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/prospects/unknown-id")
    assert response.status_code == 404
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "NotFound"
    assert body["statusCode"] == 404
    assert body["path"] == "/api/v1/prospects/unknown-id"
    assert body["method"] == "GET"
    assert body["timestamp"].endswith("Z")
    assert body["requestId"] == response.headers["x-request-id"]
    assert body["message"]


async def test_unknown_legacy_route(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "Endpoint not found"


async def test_method_not_allowed(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/v1/me")
    assert response.status_code == 405
    assert response.json()["error"] == "MethodNotAllowed"


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/auth/login"])
async def test_invalid_json_is_400(client: httpx.AsyncClient, path: str) -> None:
    response = await client.post(
        path, content=b'{"email": ', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "JSON" in (response.json().get("message") or response.json()["error"])


async def test_request_id_echoed_when_sane(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Request-ID": "abc-123_x.y"})
    assert response.headers["x-request-id"] == "abc-123_x.y"


@pytest.mark.parametrize("value", ["has spaces", "x" * 300, "bad\u00e9"])
async def test_request_id_replaced_when_not_sane(client: httpx.AsyncClient, value: str) -> None:
    response = await client.get("/health", headers={"X-Request-ID": value.encode("utf-8")})
    assert response.headers["x-request-id"] != value
    assert response.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(("prefix", "envelope"), [("/api/v1", True), ("/api", False)])
async def test_unhandled_exception_is_a_clean_500(make_client, prefix: str, envelope: bool) -> None:
    client = await make_client()
    router = APIRouter()

    @router.get(f"{prefix}/boom-for-test")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    client.app.include_router(router)
    response = await client.get(f"{prefix}/boom-for-test")
    assert response.status_code == 500
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert response.headers["x-request-id"]
    assert response.headers["x-content-type-options"] == "nosniff"
    body = response.json()
    if envelope:
        assert body["error"] == "InternalServerError" and body["statusCode"] == 500
    else:
        assert body["error"] == "Internal server error"


@pytest.mark.parametrize(
    ("path", "envelope"), [("/api/v1/auth/login", True), ("/api/auth/login", False)]
)
async def test_oversized_body_is_413(make_client, path: str, envelope: bool) -> None:
    client = await make_client(max_body_size=1024)
    response = await client.post(
        path, content=b"{" + b" " * 2048 + b"}", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
    body = response.json()
    assert (body["error"] == "PayloadTooLarge") if envelope else ("too large" in body["error"])


async def test_oversized_chunked_body_is_413(make_client) -> None:
    client = await make_client(max_body_size=1024)

    async def chunks():
        for _ in range(4):
            yield b" " * 512

    response = await client.post(
        "/api/v1/auth/login", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413
