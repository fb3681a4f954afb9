"""Seed 000: `POST /api/auth/token` exchanges an API key for a JWT."""

from __future__ import annotations

import logging
import time

import httpx
import jwt
import pytest

from support import JWT_SECRET, SHARED_API_KEY


async def test_shared_key_returns_token_and_expiry(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"token", "expiresIn"}
    assert body["expiresIn"] == 1800
    claims = jwt.decode(body["token"], JWT_SECRET, algorithms=["HS256"], issuer="vps-api")
    assert {"iss", "exp", "iat", "jti", "sub"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 1800


async def test_token_authenticates_requests(
    client: httpx.AsyncClient, api_token_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/search", params={"q": "x"}, headers=api_token_headers)
    assert response.status_code == 200


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
async def test_wrong_or_missing_key_is_401(
    client: httpx.AsyncClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        response = await client.post("/api/auth/token", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid API key"
    records = [r for r in caplog.records if "Invalid API key attempt" in r.getMessage()]
    assert records, "failed key attempts are logged for fail2ban"
    assert all("wrong" not in r.getMessage() for r in caplog.records)


async def test_personal_api_key_exchanges_for_token(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=admin_headers)
    key = created.json()["data"]["key"]
    response = await client.post("/api/auth/token", headers={"X-API-Key": key})
    assert response.status_code == 200
    token = response.json()["token"]
    me = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["data"]["user"]["email"] == "admin@example.com"


async def test_expired_token_is_401_token_expired(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"sub": "client:shared", "iss": "vps-api", "iat": now - 100, "exp": now - 60, "jti": "x"},
        JWT_SECRET,
        algorithm="HS256",
    )
    response = await client.get("/api/v1/search?q=a", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["message"] == "Token expired"


async def test_a_token_accepted_before_is_refused_once_it_expires(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Verified tokens are remembered per process; their expiry is still checked each time."""
    now = int(time.time())
    token = jwt.encode(
        {"sub": "client:shared", "iss": "vps-api", "iat": now, "exp": now + 60, "jti": "y"},
        JWT_SECRET,
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v1/search?q=a", headers=headers)).status_code == 200
    assert (await client.get("/api/v1/search?q=a", headers=headers)).status_code == 200
    monkeypatch.setattr("vpsapi.core.security.time.time", lambda: now + 60)  # to the second
    response = await client.get("/api/v1/search?q=a", headers=headers)
    assert response.status_code == 401
    assert response.json()["message"] == "Token expired"


def _seed_000_token(now: int, lifetime: int) -> str:
    """What seed 000's Node service signs: `{client, timestamp}`, issuer vps-api, no sub."""
    claims = {"client": "vercel-app", "timestamp": now * 1000, "iss": "vps-api"}
    return jwt.encode(
        {**claims, "iat": now - 120, "exp": now + lifetime}, JWT_SECRET, algorithm="HS256"
    )


async def test_seed_000_shaped_tokens_are_the_shared_client(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    headers = {"Authorization": f"Bearer {_seed_000_token(now, 60)}"}
    submitted = await client.post(
        "/api/jobs", json={"processingType": "type1", "data": [{"i": 1}]}, headers=headers
    )
    assert submitted.status_code == 202
    job_id = submitted.json()["jobId"]
    # The token this service issues for the shared API key sees the same jobs.
    issued = await client.post("/api/auth/token", headers={"X-API-Key": SHARED_API_KEY})
    shared = {"Authorization": f"Bearer {issued.json()['token']}"}
    assert (await client.get(f"/api/jobs/{job_id}", headers=shared)).status_code == 200

    expired = {"Authorization": f"Bearer {_seed_000_token(now, -1)}"}
    response = await client.get(f"/api/jobs/{job_id}", headers=expired)
    assert response.status_code == 401
    assert response.json()["error"] == "Token expired"


@pytest.mark.parametrize("left_out", [("iss",), ("iat",), ("iss", "iat")])
async def test_a_token_signed_with_the_secret_needs_no_issuer_nor_issue_time(
    client: httpx.AsyncClient, left_out: tuple[str, ...]
) -> None:
    """Seed 000 verifies with the secret alone (`jwt.verify(token, JWT_SECRET)`): a token a
    client signed without `iss` or `iat` is taken, and answers "Token expired" once it
    is."""
    now = int(time.time())

    def token(exp: int) -> dict[str, str]:
        claims = {"client": "test", "iss": "vps-api", "iat": now - 100, "exp": exp}
        for name in left_out:
            del claims[name]
        return {"Authorization": f"Bearer {jwt.encode(claims, JWT_SECRET, algorithm='HS256')}"}

    job = {"processingType": "type1", "data": [{"i": 1}]}
    accepted = await client.post("/api/jobs", json=job, headers=token(now + 60))
    assert accepted.status_code == 202, accepted.text
    expired = await client.post("/api/jobs", json=job, headers=token(now - 10))
    assert expired.status_code == 401
    assert expired.json()["error"] == "Token expired"


async def test_a_signed_token_naming_no_one_is_invalid(client: httpx.AsyncClient) -> None:
    now = int(time.time())
    token = jwt.encode(
        {"iss": "vps-api", "iat": now, "exp": now + 60}, JWT_SECRET, algorithm="HS256"
    )
    response = await client.get("/api/jobs/job_x", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "Invalid token"


def _unsigned(claims: dict[str, object]) -> str:
    import base64
    import json

    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(
            lambda now: _unsigned(
                {"sub": "client:shared", "iss": "vps-api", "iat": now, "exp": now + 60, "jti": "a"}
            ),
            id="alg-none",
        ),
        pytest.param(
            lambda now: jwt.encode(
                {"sub": "client:shared", "iss": "other", "iat": now, "exp": now + 60, "jti": "a"},
                JWT_SECRET,
                algorithm="HS256",
            ),
            id="wrong-issuer",
        ),
        pytest.param(
            lambda now: jwt.encode(
                {"sub": "client:shared", "iss": "vps-api", "iat": now, "exp": now + 60, "jti": "a"},
                "another-secret-of-sufficient-length-0123456789",
                algorithm="HS256",
            ),
            id="forged-signature",
        ),
        pytest.param(lambda now: "not.a.jwt", id="garbage"),
    ],
)
async def test_bad_tokens_are_401(client: httpx.AsyncClient, make_token) -> None:
    token = make_token(int(time.time()))
    response = await client.get("/api/v1/search?q=a", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


async def test_tampered_payload_is_401(
    client: httpx.AsyncClient, api_token_headers: dict[str, str]
) -> None:
    import base64
    import json

    header, payload, signature = api_token_headers["Authorization"].split()[1].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sub"] = "user:someone-else"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    response = await client.get(
        "/api/v1/search?q=a", headers={"Authorization": f"Bearer {header}.{forged}.{signature}"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("value", ["Basic abc", "Bearer", "Token xyz", "ApiKey not-a-key"])
async def test_malformed_authorization_header_is_401(client: httpx.AsyncClient, value: str) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": value})
    assert response.status_code == 401


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"])
async def test_anything_but_a_bearer_token_is_no_token_provided(
    client: httpx.AsyncClient, header: str
) -> None:
    response = await client.get("/api/jobs/job_x", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "No token provided"


async def test_openapi_declares_both_credentials_on_protected_routes(
    client: httpx.AsyncClient,
) -> None:
    """Swagger's Authorize dialog offers a bearer token and an `ApiKey` header, and every
    route that needs a caller asks for one of them; public routes ask for none."""
    spec = (await client.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "JWT access token or sk_live_ API key",
    }
    assert schemes["ApiKeyAuth"]["in"] == "header" and schemes["ApiKeyAuth"]["name"] == (
        "Authorization"
    )
    either = [{"HTTPBearer": []}, {"ApiKeyAuth": []}]
    for path, method in (("/api/jobs/{job_id}", "get"), ("/api/v1/me", "get")):
        assert spec["paths"][path][method]["security"] == either, path
    assert "security" not in spec["paths"]["/health/live"]["get"]
