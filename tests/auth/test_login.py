"""Seed 001 login/refresh/logout/me and the seed-002 `/api/auth/*` login."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from support import ADMIN_EMAIL, ADMIN_PASSWORD, deleted_right_after, login, same_answer
from vpsapi.auth import service


async def test_v1_login_envelope(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["accessToken"] and data["refreshToken"]
    assert data["user"]["email"] == ADMIN_EMAIL
    assert data["user"]["role"] == "admin"
    assert "passwordHash" not in data["user"] and "password_hash" not in str(body)


@pytest.mark.parametrize(
    "payload",
    [
        {"email": ADMIN_EMAIL, "password": "wrong-password"},
        {"email": "nobody@example.com", "password": ADMIN_PASSWORD},
    ],
)
async def test_wrong_credentials_401_envelope(client: httpx.AsyncClient, payload: dict) -> None:
    response = await client.post("/api/v1/auth/login", json=payload)
    assert response.status_code == 401
    body = response.json()
    assert body["success"] is False
    assert body["error"] == "Unauthorized"
    assert body["statusCode"] == 401
    assert body["path"] == "/api/v1/auth/login"
    assert body["message"] == "Invalid email or password"


@pytest.mark.parametrize(
    ("payload", "field"),
    [({"email": ADMIN_EMAIL}, "password"), ({"password": "x"}, "email"), ({}, "email")],
)
async def test_login_validation_422(client: httpx.AsyncClient, payload: dict, field: str) -> None:
    response = await client.post("/api/v1/auth/login", json=payload)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "ValidationError"
    assert field in body["errors"]
    assert isinstance(body["errors"][field], list)


async def test_a_short_wrong_password_alone_is_a_wrong_password(
    client: httpx.AsyncClient,
) -> None:
    """No account holds a password under 8 characters: alone, one is refused as any wrong
    password is (a test or client trying "wrong" expects a 401)."""
    response = await client.post(
        "/api/v1/auth/login", json={"email": ADMIN_EMAIL, "password": "wrong"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


async def test_a_password_already_refused_is_named_once(client: httpx.AsyncClient) -> None:
    """The short-password message joins other errors, not another about the password."""
    response = await client.post(
        "/api/v1/auth/login",
        content=b'{"email": "bad", "password": "s\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert errors["email"] == ["Invalid email format"]
    assert len(errors["password"]) == 1
    assert "at least 8" not in errors["password"][0]


async def test_login_validation_is_the_seeds_example(client: httpx.AsyncClient) -> None:
    """Seed 001's validation example, word for word: its only body with both fields."""
    response = await client.post("/api/v1/auth/login", json={"email": "bad", "password": "short"})
    assert response.status_code == 422
    body = response.json()
    assert (body["success"], body["error"], body["message"]) == (
        False,
        "ValidationError",
        "Validation failed",
    )
    assert body["errors"] == {
        "email": ["Invalid email format"],
        "password": ["Password must be at least 8 characters"],
    }


@pytest.mark.parametrize("email", ["notanemail", "admin", "two@at@signs", "with space@x.org"])
async def test_login_email_must_look_like_one(client: httpx.AsyncClient, email: str) -> None:
    """Seed 001's validateEmail: a 422 naming the field, before any password check."""
    response = await client.post(
        "/api/v1/auth/login", json={"email": email, "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 422
    assert response.json()["errors"] == {"email": ["Invalid email format"]}


async def test_me_returns_user(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    response = await client.get("/api/v1/me", headers=admin_headers)
    assert response.status_code == 200
    user = response.json()["data"]["user"]
    assert user["email"] == ADMIN_EMAIL
    assert {"id", "email", "role", "organizationId"} <= set(user)


async def test_me_without_token_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert response.json()["success"] is False


async def test_me_with_client_token_403(
    client: httpx.AsyncClient, api_token_headers: dict[str, str]
) -> None:
    response = await client.get("/api/v1/me", headers=api_token_headers)
    assert response.status_code == 403


async def test_refresh_rotates_and_reuse_revokes_family(make_client: Any) -> None:
    # No leeway: any reuse, however soon, is theft (test_refresh_reuse.py has the window).
    client = await make_client(jwt_refresh_reuse_seconds=0)
    first = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refreshToken": first["refreshToken"]}
    )
    assert rotated.status_code == 200
    second = rotated.json()["data"]
    assert second["refreshToken"] != first["refreshToken"]
    new_headers = {"Authorization": f"Bearer {second['accessToken']}"}
    assert (await client.get("/api/v1/me", headers=new_headers)).status_code == 200

    reuse = await client.post("/api/v1/auth/refresh", json={"refreshToken": first["refreshToken"]})
    assert reuse.status_code == 401
    # The whole family is revoked: the newer refresh token and its access token too.
    again = await client.post("/api/v1/auth/refresh", json={"refreshToken": second["refreshToken"]})
    assert again.status_code == 401
    assert (await client.get("/api/v1/me", headers=new_headers)).status_code == 401


async def test_other_logins_survive_a_revoked_family(make_client: Any) -> None:
    client = await make_client(jwt_refresh_reuse_seconds=0)
    stolen = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    other = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    await client.post("/api/v1/auth/refresh", json={"refreshToken": stolen["refreshToken"]})
    reuse = await client.post("/api/v1/auth/refresh", json={"refreshToken": stolen["refreshToken"]})
    assert reuse.status_code == 401  # the stolen family is revoked, the other lives on
    headers = {"Authorization": f"Bearer {other['accessToken']}"}
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 200


@pytest.mark.parametrize("token", ["", "garbage", "a.b.c"])
async def test_refresh_with_bad_token(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post("/api/v1/auth/refresh", json={"refreshToken": token})
    assert response.status_code in (401, 422)
    assert response.json()["success"] is False


async def test_access_token_is_not_a_refresh_token(client: httpx.AsyncClient) -> None:
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    response = await client.post(
        "/api/v1/auth/refresh", json={"refreshToken": tokens["accessToken"]}
    )
    assert response.status_code == 401


async def test_refresh_token_is_not_an_access_token(client: httpx.AsyncClient) -> None:
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['refreshToken']}"}
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401


@pytest.mark.parametrize("by", ["access token", "refresh token only"])
async def test_logout_revokes_access_and_refresh(client: httpx.AsyncClient, by: str) -> None:
    """Either token ends the login: a client whose access token expired can still sign out."""
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    if by == "access token":
        response = await client.post("/api/v1/auth/logout", headers=headers)
    else:
        response = await client.post(
            "/api/v1/auth/logout", json={"refreshToken": tokens["refreshToken"]}
        )
    assert response.status_code == 200
    assert response.json()["success"] is True
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refreshToken": tokens["refreshToken"]}
    )
    assert refresh.status_code == 401


async def test_logging_out_twice_is_fine(client: httpx.AsyncClient) -> None:
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    for _ in range(2):
        assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 200


@pytest.mark.parametrize(
    ("headers", "body", "message"),
    [
        ({}, None, "No token provided"),
        ({"Authorization": "Bearer not.a.token"}, None, "Invalid token"),
        ({}, {"refreshToken": "not.a.token"}, "Invalid token"),
    ],
)
async def test_logout_without_a_valid_token_is_401(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict | None, message: str
) -> None:
    response = await client.post("/api/v1/auth/logout", headers=headers, json=body)
    assert response.status_code == 401
    assert response.json()["message"] == message


@pytest.mark.parametrize("path", ["/api/v1/auth/logout", "/api/auth/logout"])
async def test_a_logout_refusing_a_bad_token_is_in_the_security_log(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str
) -> None:
    """As any route refusing a bad token (the same token on /me is logged so): a refused
    logout is one more attempt with a forged or stale token."""

    async def rejections() -> list[dict]:
        response = await client.get(
            "/api/logs/security", params={"q": "token_rejected"}, headers=admin_headers
        )
        assert response.status_code == 200
        return [e for e in response.json()["entries"] if e["event"] == "token_rejected"]

    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    # Not refusals: no token at all (as on /me), and an ended login ended again.
    assert (await client.post(path)).status_code == 401
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    for _ in range(2):
        assert (await client.post(path, headers=headers)).status_code == 200
    assert await rejections() == []

    bad = {"Authorization": "Bearer not.a.token"}
    assert (await client.post(path, headers=bad)).status_code == 401
    assert (await client.post(path, json={"refreshToken": "not.a.token"})).status_code == 401
    assert (await client.get("/api/v1/me", headers=bad)).status_code == 401
    logged = await rejections()
    assert [(e["method"], e["path"], e["reason"]) for e in reversed(logged)] == [
        ("POST", path, "Invalid token"),
        ("POST", path, "Invalid token"),
        ("GET", "/api/v1/me", "Invalid token"),
    ]
    assert {e["ip"] for e in logged} == {logged[0]["ip"]}


async def test_seed002_login_json_with_username(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1800
    assert body["access_token"] and body["refresh_token"]
    assert body["token"] == body["access_token"]  # what the seed-002 frontend reads
    assert body["user"]["email"] == ADMIN_EMAIL


async def test_seed002_login_oauth2_form(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login",
        data={"grant_type": "password", "username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
    )
    assert response.status_code == 200
    token = response.json()["access_token"]
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200
    assert me.json()["email"] == ADMIN_EMAIL
    out = await client.post("/api/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert out.status_code == 200
    me = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401
    assert me.json()["error"] == "Token revoked"


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"username": "admin", "password": "nope"}}, 401),
        ({"json": {"password": "x"}}, 422),
        ({"json": ["not", "an", "object"]}, 422),
        ({"content": b"{bad json", "headers": {"Content-Type": "application/json"}}, 422),
        ({"data": {"username": "admin"}}, 422),
    ],
)
async def test_seed002_login_bad_input(
    client: httpx.AsyncClient, kwargs: dict, status: int
) -> None:
    """Seed 002 is a FastAPI app: its clients read `detail`, and validation is 422."""
    response = await client.post("/api/auth/login", **kwargs)
    assert response.status_code == status
    body = response.json()
    assert "error" in body and "detail" in body


@pytest.mark.parametrize(
    ("login_name", "said"),
    [("admin", "Invalid username or password"), (ADMIN_EMAIL, "Invalid email or password")],
)
async def test_seed002_wrong_password_is_named_in_the_words_sent(
    client: httpx.AsyncClient, login_name: str, said: str
) -> None:
    response = await client.post(
        "/api/auth/login", json={"username": login_name, "password": "wrong-password"}
    )
    assert response.status_code == 401
    assert response.json()["detail"] == said


async def test_seed002_login_empty_body_names_everything_missing(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/auth/login", json={})
    assert response.status_code == 422
    detail = response.json()["detail"]
    said = {(tuple(error["loc"]), error["msg"]) for error in detail}
    assert said == {
        (("body", "username"), "username or email is required"),
        (("body", "password"), "Field required"),
    }


async def test_disabled_user_cannot_log_in(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user
) -> None:
    user, headers = await create_user()
    patch = await client.patch(
        f"/api/v1/users/{user['id']}", json={"isActive": False}, headers=admin_headers
    )
    assert patch.status_code == 200
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    response = await client.post(
        "/api/v1/auth/login", json={"email": user["email"], "password": "user-password-123"}
    )
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/auth/login"])
async def test_a_user_deleted_while_logging_in_is_a_wrong_login(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    create_user,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    """The user deleted by a concurrent request after their password was checked: answered
    as the same login is from then on (was a 500)."""
    user, _ = await create_user()
    credentials = {"email": user["email"], "password": "user-password-123"}
    deleted_right_after(monkeypatch, service, "find_user_by_login", "users", lambda found: found.id)
    raced = await client.post(path, json=credentials)
    monkeypatch.undo()
    # Rolled back with the failed request: now deleted for good, as the concurrent
    # request did.
    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert deleted.is_success
    after = await client.post(path, json=credentials)
    assert after.status_code == 401 and same_answer(raced, after), raced.text
