"""`/openapi.json` documents the error bodies each path family really answers, and the
bodies of the routes that read theirs by hand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest


async def _openapi(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return dict(response.json())


def _documented_body(spec: dict[str, Any], path: str, method: str, status: int) -> Any:
    responses = spec["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} does not document {status}"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    # The whole document beside the schema, so that its $refs resolve.
    return {**spec, **schema}


@pytest.mark.parametrize(
    ("method", "path", "template", "body", "status"),
    [
        # seed 000: Joi's 400
        ("post", "/api/jobs", "/api/jobs", {"data": []}, 400),
        # seed 003: a missing key, 400 `{"error"}`
        ("post", "/api/hello/query", "/api/hello/query", {}, 400),
        # seed 003: express-validator's errors
        ("post", "/api/hello/register", "/api/hello/register", {"userId": "u"}, 400),
        # seed 002: FastAPI's 422 with `detail` as a list
        ("post", "/api/monitoring/alerts/rules", "/api/monitoring/alerts/rules", {}, 422),
        # seed 001: the envelope
        ("post", "/api/v1/users", "/api/v1/users", {"email": "x"}, 422),
    ],
)
async def test_a_refused_body_matches_the_documented_one(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    template: str,
    body: dict[str, Any],
    status: int,
) -> None:
    spec = await _openapi(client)
    response = await client.request(method, path, json=body, headers=admin_headers)
    assert response.status_code == status, response.text
    jsonschema_rs.validate(_documented_body(spec, template, method, status), response.json())


async def test_a_seed_002_refusal_in_words_matches_the_documented_body(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """`detail` is a sentence when the refusal is not FastAPI's own validation."""
    spec = await _openapi(client)
    response = await client.delete("/api/monitoring/alerts/rules/nope", headers=admin_headers)
    assert response.status_code == 404, response.text
    assert isinstance(response.json()["detail"], str)
    schema = {**spec, "$ref": "#/components/schemas/FastApiStyleError"}
    jsonschema_rs.validate(schema, response.json())


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            yield method.upper(), path, operation


async def test_no_path_documents_fastapis_own_422_body(client: httpx.AsyncClient) -> None:
    spec = await _openapi(client)
    fastapi_422 = [
        f"{method} {path}"
        for method, path, operation in _operations(spec)
        if "HTTPValidationError" in str(operation.get("responses", {}))
    ]
    assert fastapi_422 == []
    assert "HTTPValidationError" not in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/hello/confirm", "key"),
        ("/api/hello/query", "key"),
        ("/api/hello/register", "realDeviceId"),
        ("/api/auth/service-param", "deviceId"),
        ("/api/jobs", "processingType"),
    ],
)
async def test_bodies_read_by_hand_are_documented(
    client: httpx.AsyncClient, path: str, field: str
) -> None:
    spec = await _openapi(client)
    body = spec["paths"][path]["post"]["requestBody"]
    assert field in body["content"]["application/json"]["schema"]["properties"]


async def test_secured_routes_document_401_and_named_things_404(client: httpx.AsyncClient) -> None:
    spec = await _openapi(client)
    undocumented = [
        f"{method} {path} {status}"
        for method, path, operation in _operations(spec)
        for status, applies in (("401", bool(operation.get("security"))), ("404", "{" in path))
        if applies and status not in operation["responses"]
    ]
    assert undocumented == []
    one = spec["paths"]["/api/configs/{config_id}"]["get"]["responses"]
    assert one["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/FastApiStyleError"
    }
