"""AUTH_RETENTION_DAYS: logins and API keys ended longer ago than the window are deleted
by the auth module's hourly task; what is still live, or ended within it, stays, and a
token of a deleted login or key is refused as a revoked one's."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy import func, select, update

from support import ADMIN_EMAIL, ADMIN_PASSWORD, login
from vpsapi.auth import module, service
from vpsapi.auth.models import ApiKey, AuthSession
from vpsapi.config import Settings
from vpsapi.core import tasks
from vpsapi.core.db import new_id, utcnow


def _app(client: httpx.AsyncClient) -> Any:
    return client.app  # type: ignore[attr-defined]


async def _purge(client: httpx.AsyncClient) -> service.Purged:
    app = _app(client)
    return await service.purge_ended(app.state.db, app.state.settings)


async def _age(client: httpx.AsyncClient, model: Any, row_id: str, **days_ago: int) -> None:
    """Move the row's given timestamps that many days into the past."""
    values = {column: utcnow() - timedelta(days=days) for column, days in days_ago.items()}
    async with _app(client).state.db.session() as session:
        await session.execute(update(model).where(model.id == row_id).values(**values))


def _sid(client: httpx.AsyncClient, access_token: str) -> str:
    return str(_app(client).state.codec.decode(access_token)["sid"])


async def _login_ids(client: httpx.AsyncClient) -> set[str]:
    async with _app(client).state.db.session() as session:
        return set((await session.scalars(select(AuthSession.id))).all())


async def _me(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/api/v1/auth/refresh", json={"refreshToken": token})


async def test_logins_ended_before_the_window_are_deleted(client: httpx.AsyncClient) -> None:
    logins = {
        name: await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
        for name in ("out_long_ago", "out_lately", "expired_long_ago", "live", "rotated")
    }
    sids = {name: _sid(client, tokens["accessToken"]) for name, tokens in logins.items()}
    for name in ("out_long_ago", "out_lately"):
        headers = {"Authorization": f"Bearer {logins[name]['accessToken']}"}
        assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 200
    await _age(client, AuthSession, sids["out_long_ago"], revoked_at=31)
    await _age(client, AuthSession, sids["out_lately"], revoked_at=29)
    # Never logged out: its refresh token expired 31 days ago (its tokens in this test
    # are younger than the row says, which shows they are refused once it is gone).
    await _age(client, AuthSession, sids["expired_long_ago"], expires_at=31)
    # In use for months: each rotation moves the row's expiry on.
    rotated = await _refresh(client, logins["rotated"]["refreshToken"])
    assert rotated.status_code == 200
    await _age(client, AuthSession, sids["rotated"], created_at=90, refreshed_at=1)

    assert (await _purge(client)).logins == 2
    assert await _login_ids(client) == {sids["out_lately"], sids["live"], sids["rotated"]}
    assert (await _purge(client)).logins == 0  # another process's sweep finds nothing left

    for name in ("out_long_ago", "expired_long_ago"):
        refused = await _refresh(client, logins[name]["refreshToken"])
        assert refused.status_code == 401
        assert refused.json()["message"] == "Refresh token revoked"
        assert (await _me(client, logins[name]["accessToken"])).status_code == 401
    assert (await _me(client, logins["live"]["accessToken"])).status_code == 200
    assert (await _refresh(client, logins["live"]["refreshToken"])).status_code == 200
    new_access = rotated.json()["data"]["accessToken"]
    assert (await _me(client, new_access)).status_code == 200
    # The rotated login's first refresh token, used again: still taken as stolen.
    reused = await _refresh(client, logins["rotated"]["refreshToken"])
    assert reused.status_code == 401
    assert "already used" in reused.json()["message"]
    assert (await _me(client, new_access)).status_code == 401


async def test_a_rotation_moves_the_logins_expiry(client: httpx.AsyncClient) -> None:
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    sid = _sid(client, tokens["accessToken"])
    await _age(client, AuthSession, sid, created_at=60, expires_at=53)
    assert (await _refresh(client, tokens["refreshToken"])).status_code == 200
    async with _app(client).state.db.session() as session:
        row = await session.get(AuthSession, sid)
        assert row is not None
        assert row.expires_at > utcnow() + timedelta(days=6)
    assert (await _purge(client)).logins == 0


async def test_rows_rotated_before_expiry_moved_on_stay_while_in_use(
    client: httpx.AsyncClient,
) -> None:
    """A login rotated (by an older release) without its expiry moved on."""
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    rotated = await _refresh(client, tokens["refreshToken"])
    sid = _sid(client, tokens["accessToken"])
    await _age(client, AuthSession, sid, created_at=60, expires_at=53)
    assert (await _purge(client)).logins == 0
    assert (await _refresh(client, rotated.json()["data"]["refreshToken"])).status_code == 200


async def test_ended_api_keys_are_deleted_and_their_tokens_stay_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    async def create(**body: Any) -> dict[str, Any]:
        response = await client.post(
            "/api/v1/api-keys", json={"name": "k", **body}, headers=admin_headers
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    old, recent, expired, live = [await create() for _ in range(3)] + [
        await create(expiresInDays=1)
    ]
    exchanged = await client.post("/api/auth/token", headers={"X-API-Key": old["key"]})
    assert exchanged.status_code == 200
    jwt = exchanged.json()["token"]
    for key in (old, recent):
        revoked = await client.delete(f"/api/v1/api-keys/{key['id']}", headers=admin_headers)
        assert revoked.status_code == 200
    await _age(client, ApiKey, old["id"], revoked_at=31)
    await _age(client, ApiKey, recent["id"], revoked_at=29)
    await _age(client, ApiKey, expired["id"], expires_at=31)

    assert (await _purge(client)).api_keys == 2
    listed = (await client.get("/api/v1/api-keys", headers=admin_headers)).json()["data"]
    # Revoked lately: still listed, so its owner sees what they revoked.
    assert {key["id"]: bool(key["revokedAt"]) for key in listed} == {
        recent["id"]: True,
        live["id"]: False,
    }
    for credential in (jwt, old["key"], expired["key"]):
        assert (await _me(client, credential)).status_code == 401
    assert (
        await client.post("/api/auth/token", headers={"X-API-Key": old["key"]})
    ).status_code == 401
    gone = await client.delete(f"/api/v1/api-keys/{old['id']}", headers=admin_headers)
    assert gone.status_code == 404
    assert (await _me(client, live["key"])).status_code == 200


async def test_processes_sweeping_at_once_delete_each_row_once(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "PURGE_BATCH", 3)
    user_id = (await login(client, ADMIN_EMAIL, ADMIN_PASSWORD))["user"]["id"]
    long_ago = utcnow() - timedelta(days=40)
    async with _app(client).state.db.session() as session:
        session.add_all(
            AuthSession(id=new_id(), user_id=user_id, refresh_jti=new_id(), expires_at=long_ago)
            for _ in range(10)
        )
    purged = await asyncio.gather(_purge(client), _purge(client))
    assert sum(result.logins for result in purged) == 10
    async with _app(client).state.db.session() as session:
        left = await session.scalar(select(func.count()).select_from(AuthSession))
    assert left == 1  # the login above


async def test_the_app_sweeps_on_its_own(make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "FIRST_RUN_DELAY", 0.0)
    monkeypatch.setattr(module, "RETENTION_INTERVAL", 0.05)
    client = await make_client()
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 200
    await _age(client, AuthSession, _sid(client, tokens["accessToken"]), revoked_at=31)
    deadline = time.monotonic() + 30  # a bound on a sweep that never comes, not a timing
    while await _login_ids(client):
        assert time.monotonic() < deadline, "the ended login was never swept"
        await asyncio.sleep(0.05)


async def test_zero_keeps_ended_logins_and_keys(make_client: Any) -> None:
    client = await make_client(auth_retention_days=0)
    tokens = await login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {tokens['accessToken']}"}
    assert (await client.post("/api/v1/auth/logout", headers=headers)).status_code == 200
    await _age(client, AuthSession, _sid(client, tokens["accessToken"]), revoked_at=3650)
    assert await _purge(client) == service.Purged()
    assert len(await _login_ids(client)) == 1


@pytest.mark.parametrize("value", ["-1", "36501", "a month"])
def test_retention_days_are_checked(value: str) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, auth_retention_days=value)  # type: ignore[call-arg]
