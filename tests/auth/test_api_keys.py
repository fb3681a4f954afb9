"""API keys: shown once, stored hashed, accepted as `ApiKey` and `Bearer`, revocable."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from support import deleted_right_after, same_answer
from vpsapi.auth import service
from vpsapi.auth.models import ApiKey


async def _create(client: httpx.AsyncClient, headers: dict[str, str], **body) -> dict:
    response = await client.post("/api/v1/api-keys", json={"name": "ci", **body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_create_returns_key_once_and_stores_hash(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await _create(client, admin_headers)
    assert created["key"].startswith("sk_live_")
    assert created["prefix"] == created["key"][: len(created["prefix"])]
    listed = await client.get("/api/v1/api-keys", headers=admin_headers)
    assert listed.status_code == 200
    assert created["key"] not in listed.text
    assert [k["id"] for k in listed.json()["data"]] == [created["id"]]
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        row = (await session.execute(select(ApiKey).where(ApiKey.id == created["id"]))).scalar_one()
    assert created["key"] not in (row.key_hash, row.prefix)
    assert len(row.key_hash) == 64


@pytest.mark.parametrize("scheme", ["ApiKey", "Bearer"])
async def test_key_authenticates(
    client: httpx.AsyncClient, admin_headers: dict[str, str], scheme: str
) -> None:
    key = (await _create(client, admin_headers))["key"]
    response = await client.get("/api/v1/me", headers={"Authorization": f"{scheme} {key}"})
    assert response.status_code == 200
    assert response.json()["data"]["user"]["role"] == "admin"


async def test_revoked_key_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await _create(client, admin_headers)
    response = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["data"]["revokedAt"]
    for headers in ({"Authorization": f"ApiKey {created['key']}"}, {"X-API-Key": created["key"]}):
        path = "/api/v1/me" if "Authorization" in headers else "/api/auth/token"
        method = client.get if path == "/api/v1/me" else client.post
        assert (await method(path, headers=headers)).status_code == 401


async def test_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me", headers={"Authorization": "ApiKey sk_live_nope"})
    assert response.status_code == 401
    assert response.json()["message"] == "Invalid API key"


async def test_other_users_keys_are_invisible(
    client: httpx.AsyncClient, admin_headers: dict[str, str], create_user
) -> None:
    admin_key = await _create(client, admin_headers)
    _user, user_headers = await create_user()
    listed = await client.get("/api/v1/api-keys", headers=user_headers)
    assert listed.json()["data"] == []
    response = await client.delete(f"/api/v1/api-keys/{admin_key['id']}", headers=user_headers)
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "ok", "expiresInDays": 0},
        {"name": "ok", "expiresInDays": True},  # lax mode read it as 1
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict
) -> None:
    response = await client.post("/api/v1/api-keys", json=body, headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["errors"]
    listed = await client.get("/api/v1/api-keys", headers=admin_headers)
    assert listed.json()["data"] == []


async def test_expired_key_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    from datetime import timedelta

    from vpsapi.core.db import utcnow

    created = await _create(client, admin_headers, expiresInDays=1)
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        row = await session.get(ApiKey, created["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
    response = await client.get("/api/v1/me", headers={"Authorization": f"ApiKey {created['key']}"})
    assert response.status_code == 401


async def test_tokens_of_a_key_end_with_the_key(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    """A JWT exchanged for a key (POST /api/auth/token) works as long as the key does."""
    from datetime import timedelta

    from vpsapi.core.db import utcnow

    revoked, expired = (
        await _create(client, admin_headers),
        await _create(client, admin_headers, expiresInDays=1),
    )
    bearers = []
    for created in (revoked, expired):
        exchanged = await client.post("/api/auth/token", headers={"X-API-Key": created["key"]})
        assert exchanged.status_code == 200, exchanged.text
        bearers.append({"Authorization": f"Bearer {exchanged.json()['token']}"})
        assert (await client.get("/api/v1/me", headers=bearers[-1])).status_code == 200
    await client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=admin_headers)
    async with client.app.state.db.session() as session:  # type: ignore[attr-defined]
        row = await session.get(ApiKey, expired["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
    for bearer, message in zip(bearers, ("Token revoked", "API key expired"), strict=True):
        response = await client.get("/api/v1/me", headers=bearer)
        assert response.status_code == 401
        assert response.json()["message"] == message


async def test_a_key_for_a_user_deleted_meanwhile_is_refused_as_their_token_is(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    create_user,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The caller deleted by a concurrent request after their token was checked: the key
    is refused as the token is from then on (was a 500)."""
    user, headers = await create_user()
    deleted_right_after(
        monkeypatch, service, "principal_from_token", "users", lambda caller: caller.user_id
    )
    raced = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=headers)
    monkeypatch.undo()
    # Rolled back with the failed request: now deleted for good, as the concurrent
    # request did.
    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert deleted.is_success
    after = await client.get("/api/v1/api-keys", headers=headers)
    assert after.status_code == 401 and same_answer(raced, after), raced.text


@pytest.mark.parametrize("credential", ["token", "key"])
async def test_me_for_a_user_deleted_meanwhile_is_refused_as_their_credential_is(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    create_user,
    monkeypatch: pytest.MonkeyPatch,
    credential: str,
) -> None:
    """The caller deleted by a concurrent request after their credential was checked: the
    answer is what the credential gets from then on, 401 (was a 409 for a key, whose
    last-use stamp met no row at the flush, and a 404 "User not found" for a token)."""
    user, headers = await create_user()
    if credential == "key":
        headers = {"Authorization": f"ApiKey {(await _create(client, headers))['key']}"}
        deleted_right_after(monkeypatch, service, "_active_api_key", "users", lambda f: f[1].id)
    else:
        deleted_right_after(
            monkeypatch, service, "principal_from_token", "users", lambda caller: caller.user_id
        )
    raced = await client.get("/api/v1/me", headers=headers)
    monkeypatch.undo()
    # The concurrent request's delete, made for good now unless it already stuck (a GET
    # runs without a transaction on PostgreSQL, so nothing rolled it back).
    deleted = await client.delete(f"/api/v1/users/{user['id']}", headers=admin_headers)
    assert deleted.is_success or deleted.status_code == 404
    after = await client.get("/api/v1/me", headers=headers)
    assert after.status_code == 401 and same_answer(raced, after), raced.text
