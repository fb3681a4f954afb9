"""`/openapi.json` documents the error bodies each path family really answers, and the
bodies of the routes that read theirs by hand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema_rs
import pytest

from vpsapi.core.errors import is_fastapi_style, is_v1


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


_JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "url", "template", "request_kwargs", "status"),
    [
        # A NUL anywhere is a validation failure on every route, in each family's body.
        ("get", "/health?q=%00", "/health", {}, 400),
        ("get", "/api/configs?q=%00", "/api/configs", {}, 422),
        ("get", "/api/v1/info?q=%00", "/api/v1/info", {}, 422),
        # /api/v1 refuses a body that is no JSON with a 400 envelope.
        ("post", "/api/v1/citypulse/buildings", None, {"content": b"{", "headers": _JSON}, 400),
        ("post", "/api/v1/users", None, {"content": b"{", "headers": _JSON}, 400),
        ("get", "/api/v1/jobs?cursor=zz", "/api/v1/jobs", {}, 400),
        ("get", "/api/v1/citypulse/energy?building=nope", "/api/v1/citypulse/energy", {}, 404),
        ("post", "/api/auth/login", None, {"json": {}}, 422),
        (
            "post",
            "/api/auth/login",
            None,
            {"json": {"username": "admin", "password": "x" * 9}},
            401,
        ),
        ("post", "/api/auth/refresh", None, {"json": {"refreshToken": "nope"}}, 401),
        (
            "post",
            "/api/ssl/upload",
            None,
            {"json": {"domain": "a.example.com", "cert_content": "0", "key_content": "0"}},
            422,
        ),
        (
            "get",
            "/api/ssl/certificate/a%20b/content",
            "/api/ssl/certificate/{domain}/content",
            {},
            400,
        ),
        ("post", "/api/ssl/renew/a%20b", "/api/ssl/renew/{domain}", {}, 400),
        ("get", "/api/backup/download/0", "/api/backup/download/{filename}", {}, 400),
        ("delete", "/api/backup/delete/0", "/api/backup/delete/{filename}", {}, 400),
        ("get", "/api/health/backend/ftp://x", "/api/health/backend/{backend_url}", {}, 400),
        ("delete", "/api/push/tokens", None, {"json": {"token": "nope"}}, 404),
    ],
)
async def test_what_a_route_answers_is_documented(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    method: str,
    url: str,
    template: str | None,
    request_kwargs: dict[str, Any],
    status: int,
) -> None:
    """A client generated from the document, or schemathesis's status_code_conformance,
    must know every code the service answers, and its body."""
    spec = await _openapi(client)
    headers = {**admin_headers, **request_kwargs.pop("headers", {})}
    response = await client.request(method, url, headers=headers, **request_kwargs)
    assert response.status_code == status, response.text
    body = _documented_body(spec, template or url, method, status)
    jsonschema_rs.validate(body, response.json())


async def test_user_conflicts_are_documented(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    spec = await _openapi(client)
    user = {"email": "twice@example.com", "password": "password-123"}
    first = await client.post("/api/v1/users", json=user, headers=admin_headers)
    assert first.status_code == 201, first.text
    again = await client.post("/api/v1/users", json=user, headers=admin_headers)
    me = (await client.get("/api/v1/me", headers=admin_headers)).json()["data"]["user"]
    own = await client.delete(f"/api/v1/users/{me['id']}", headers=admin_headers)
    demoted = await client.patch(
        f"/api/v1/users/{me['id']}", json={"role": "user"}, headers=admin_headers
    )
    for response, template, method in (
        (again, "/api/v1/users", "post"),
        (own, "/api/v1/users/{user_id}", "delete"),
        (demoted, "/api/v1/users/{user_id}", "patch"),
    ):
        assert response.status_code == 409, response.text
        jsonschema_rs.validate(_documented_body(spec, template, method, 409), response.json())


async def test_the_middlewares_refusals_are_documented(make_client: Any) -> None:
    """413 (MAX_BODY_SIZE), 403 (a foreign browser origin) and 429 (the limiter), which
    any route may answer."""
    client = await make_client(max_body_size=64, rate_limit_enabled=True)
    spec = await _openapi(client)
    too_large = await client.post("/api/hello/query", content=b"{" + b" " * 100 + b"}")
    foreign = await client.get("/api/jobs/types", headers={"Origin": "https://elsewhere.example"})
    limited = await make_client(rate_limit_enabled=True, rate_limit_default="1/minute")
    await limited.get("/api/configs")
    refused = await limited.get("/api/configs")
    statuses = (too_large.status_code, foreign.status_code, refused.status_code)
    assert statuses == (413, 403, 429)
    for response, path, method in (
        (too_large, "/api/hello/query", "post"),
        (foreign, "/api/jobs/types", "get"),
        (refused, "/api/configs", "get"),
    ):
        schema = _documented_body(spec, path, method, response.status_code)
        jsonschema_rs.validate(schema, response.json())


async def test_every_route_documents_the_refusals_any_route_may_answer(
    client: httpx.AsyncClient,
) -> None:
    spec = await _openapi(client)
    undocumented = []
    for method, path, operation in _operations(spec):
        validation = "422" if is_v1(path) or is_fastapi_style(path) else "400"
        expected = {validation, "403"}
        if "requestBody" in operation:
            expected |= {"413", "422" if is_fastapi_style(path) else "400"}
        if path.startswith("/api/"):
            expected.add("429")
        undocumented += [f"{method} {path} {s}" for s in expected - set(operation["responses"])]
    assert undocumented == []
    # The rule as the server answers it: a foreign origin is refused off /api as well.
    for path in ("/health", "/health/live", "/metrics"):
        refused = await client.get(path, headers={"Origin": "https://elsewhere.example"})
        assert refused.status_code == 403
        assert "403" in spec["paths"][path]["get"]["responses"], path
